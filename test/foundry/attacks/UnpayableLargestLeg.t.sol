// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Vm} from "../utils/Vm.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title An account under maintenance whose largest position is a profit the pool's margin cannot pay.
/// @notice Carol's 300 ETH long loses 300,000 when ETH falls from 3,000 to 2,000; that loss, owed to the
/// pool but not yet realised, lets the LP redeem all of the pool's margin but a rounding remainder. Alice
/// holds a hedged pair: a 60 ETH short (a 60,000 profit, 120,000 notional) and 3 BTC long (73,800 lost at
/// 35,400, 106,200 notional) on 18,500, so her equity (about 4,520) lies between half her maintenance
/// margin and all of it (5,655). Closing half the ETH short would realise 30,000 that the pool's margin
/// cannot pay: forfeited, it would grow the deficit. So a liquidation takes the positions the pool's
/// margin can pay first (docs/protocol.md, section 3): the BTC leg, whose loss pays the pool, before the
/// larger ETH short; and a position the pool cannot pay closes in full, never in part.
contract UnpayableLargestLegTest is AttackBase {
    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 0);
        vm.warp(block.timestamp + POOL_COOLDOWN); // the LP may exit; no position yet, so no funding
        refreshPrices();
        fundAccount(carol, 330_000 * USDC);
        openPosition(carol, ETH, 300e18);
        fundAccount(alice, 18_500 * USDC);
        openPosition(alice, ETH, -60e18);
        openPosition(alice, BTC, 3e18);

        setPrice(ETH, 2_000);
        setPrice(BTC, 35_400);
    }

    /// @dev The LP redeems as much as the pool lets it: all of the pool's margin but a rounding remainder,
    /// the traders' unrealised losses standing in for it in the pool's equity.
    function _lpLeaves() private {
        vm.startPrank(lp);
        pool.redeem(pool.maxRedeem(lp), lp, lp);
        vm.stopPrank();
    }

    function test_liquidation_largestLegUnpayable_takesThePayableLegFirst() public {
        _lpLeaves();
        IClearingHouse.Health memory h = ch.healthOf(alice);
        assertTrue(h.liquidatable, "alice is under maintenance");
        assertGe(2 * h.equityWad, int256(h.maintenanceMarginWad), "at or above half of it: a partial liquidation");
        int256 profit = -ch.positionOf(alice, ETH).openNotionalWad - int256(60 * 2_000 * WAD);
        assertLt(ch.marginOf(address(pool)), profit / 2, "the pool's margin is below half the ETH profit");

        // The ETH short is the larger position, but its close cannot be paid: the BTC leg goes first.
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.LiquidationNotFirstPosition.selector, alice, ETH, BTC)
        );
        liquidateAs(keeper, alice, ETH);

        // Half the BTC leg closes: its 36,900 loss (1.5 BTC at 60,000 - 35,400) moves to the pool in
        // full, and the deficit shrinks from 1,135 (5,655 - 4,520) to 338.5: maintenance 4,327.5 (3,000 on
        // the ETH short, 1,327.5 on 1.5 BTC) less equity 3,989 (4,520 less the 531 penalty).
        int256 poolBefore = ch.marginOf(address(pool));
        vm.recordLogs();
        liquidateAs(keeper, alice, BTC);
        assertEq(_payoutsCapped(vm.getRecordedLogs()), 0, "nothing forfeited");
        assertEq(ch.positionOf(alice, BTC).sizeWad, 1.5e18, "half the BTC leg closed");
        assertEq(ch.marginOf(address(pool)) - poolBefore, int256(36_900 * WAD), "the loss paid the pool");
        IClearingHouse.Health memory a = ch.healthOf(alice);
        assertEq(a.equityWad, int256(3_989 * WAD), "equity less the penalty");
        assertEq(int256(a.maintenanceMarginWad) - a.equityWad, int256(338.5e18), "the deficit shrank");

        // Still under maintenance, and the ETH profit (60,000) still above the pool's margin (36,900): the
        // rest of the BTC leg goes next, in part, then in full, until the account is healthy.
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.LiquidationNotFirstPosition.selector, alice, ETH, BTC)
        );
        liquidateAs(keeper, alice, ETH);
        for (uint256 i; ch.healthOf(alice).liquidatable; ++i) {
            assertLt(i, 4, "a few steps");
            IClearingHouse.Health memory before = ch.healthOf(alice);
            vm.recordLogs();
            liquidateAs(keeper, alice, BTC);
            assertEq(_payoutsCapped(vm.getRecordedLogs()), 0, "nothing forfeited");
            IClearingHouse.Health memory next = ch.healthOf(alice);
            assertLt(
                int256(next.maintenanceMarginWad) - next.equityWad,
                int256(before.maintenanceMarginWad) - before.equityWad,
                "each step shrinks the deficit"
            );
        }
        assertEq(ch.positionOf(alice, ETH).sizeWad, -60e18, "the ETH short is whole");
        assertConserved(actors());
    }

    /// @notice The same book after alice closes her BTC leg (its 73,800 loss goes to the pool, her margin
    /// to -55,533.1) and the LP redeems the pool's margin, with ETH at 2,030: her equity (2,666.9: margin
    /// plus the 58,200 ETH profit) lies between half her maintenance margin (3,045) and all of it, and her
    /// only position is a profit the pool cannot pay. It closes in full, not in part: half of it would
    /// forfeit 29,100 and grow the deficit. The profit is forfeited but for what the pool held (1e12
    /// wei), she pays the 1,218 penalty, and the account is left flat owing 56,751.1, settled as a
    /// bankrupt account's shortfall is.
    function test_liquidation_singleUnpayableLeg_closesInFull() public {
        stake(staker, 10_000 * USDC);
        closeAll(alice, BTC);
        _lpLeaves();
        setPrice(ETH, 2_030);
        IClearingHouse.Health memory h = ch.healthOf(alice);
        assertTrue(h.liquidatable, "under maintenance");
        assertGe(2 * h.equityWad, int256(h.maintenanceMarginWad), "at or above half of it");
        uint256 held = uint256(ch.marginOf(address(pool)));
        assertLt(held, 58_200 * WAD, "the pool's margin cannot pay the profit");

        vm.recordLogs();
        liquidateAs(keeper, alice, ETH);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_payoutsCapped(logs), 1, "the profit beyond the pool's margin is forfeited");
        (uint256 shortfall, uint256 covered, uint256 debt) = _shortfallSettled(logs);
        assertEq(shortfall, 56_751.1e18 - held, "owed: the margin, less the penalty, plus what the pool paid");
        assertEq(covered + debt, shortfall, "the fund and bad debt settle it");
        assertEq(ch.openMarketsOf(alice).length, 0, "closed in full");
        assertEq(ch.marginOf(alice), int256(0), "the account no longer owes");
        assertConserved(actors());
    }

    /// @notice The same book, one step on: alice closes her BTC leg (its 73,800 loss goes to the pool,
    /// her margin to -55,533), then the LP redeems the pool's margin, and ETH rises to 2,060. Her equity
    /// (867: margin plus the 56,400 ETH profit) is below half her maintenance margin, so the liquidation
    /// closes the ETH short in full; the pool pays nothing of the profit, and the account is left flat
    /// owing 56,400. That shortfall is settled as a bankrupt account's is: the fund pays what its window
    /// allows and the rest is bad debt of ETH's short side, so withdrawals wait for it.
    function test_liquidation_fullCloseLeavingTheAccountOwing_settlesTheShortfall() public {
        stake(staker, 10_000 * USDC);
        closeAll(alice, BTC);
        _lpLeaves();
        setPrice(ETH, 2_060);
        int256 margin = ch.marginOf(alice);
        int256 equity = ch.healthOf(alice).equityWad;
        assertLt(margin, int256(0), "the BTC loss left her margin negative");
        assertLt(2 * equity, int256(ch.healthOf(alice).maintenanceMarginWad), "a full close");
        // She pays her whole equity (the penalty is above it); the pool pays what its margin holds.
        uint256 owed = uint256(equity - margin - ch.marginOf(address(pool)));

        vm.recordLogs();
        liquidateAs(keeper, alice, ETH);
        (uint256 shortfall, uint256 covered, uint256 debt) = _shortfallSettled(vm.getRecordedLogs());
        assertEq(shortfall, owed, "shortfall");
        assertGt(covered, 0, "the fund pays its window");
        assertEq(covered + debt, shortfall, "the rest is bad debt");
        assertEq(ch.marginOf(alice), int256(0), "the account no longer owes");
        assertEq(ch.openMarketsOf(alice).length, 0, "flat");
        assertEq(ch.badDebtOf(ETH, IClearingHouse.Side.Short), debt, "on the side she held");
        assertEq(ch.totalBadDebtWad(), debt, "recorded");
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.VaultBadDebtOutstanding.selector, debt));
        ch.withdraw(1, carol);
        assertConserved(actors());
    }

    function _payoutsCapped(Vm.Log[] memory logs) private view returns (uint256 n) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.PoolPayoutCapped.selector) ++n;
        }
    }

    function _shortfallSettled(Vm.Log[] memory logs) private view returns (uint256, uint256, uint256) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.ShortfallSettled.selector) {
                return abi.decode(logs[i].data, (uint256, uint256, uint256));
            }
        }
        fail("no ShortfallSettled");
    }
}
