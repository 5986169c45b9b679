// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Vm} from "../utils/Vm.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title The open finding of docs/security.md, pinned: an account under maintenance whose largest
/// position is a profit the pool's margin cannot pay, and whose equity is still above half its
/// maintenance margin, cannot be liquidated as the rule is built.
/// @notice Carol's 300 ETH long loses 300,000 when ETH falls from 3,000 to 2,000; that loss, owed to the
/// pool but not yet realised, lets the LP redeem all of the pool's margin but a rounding remainder. Alice
/// holds a hedged pair: a 60 ETH short (a 60,000 profit, 120,000 notional) and 3 BTC long (73,800 lost at
/// 35,400, 106,200 notional) on 18,500, so her equity (about 4,520) lies between half her maintenance
/// margin and all of it (5,655). A liquidation must take her largest position, the ETH short, and at her
/// equity it takes half of it: the 30,000 that half realises finds no margin in the pool, is forfeited, and
/// the deficit grows, so the clearing house refuses it (`LiquidationNotImproving`); the BTC leg is not the
/// largest (`LiquidationNotLargestPosition`). The rule is left as built for a design decision
/// (docs/security.md, "Open finding"); this test changes with it.
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

    function test_liquidation_largestLegUnpayable_isRefusedBothWays() public {
        _lpLeaves();
        IClearingHouse.Health memory h = ch.healthOf(alice);
        assertTrue(h.liquidatable, "alice is under maintenance");
        assertGe(2 * h.equityWad, int256(h.maintenanceMarginWad), "at or above half of it: a partial liquidation");
        int256 profit = -ch.positionOf(alice, ETH).openNotionalWad - int256(60 * 2_000 * WAD);
        assertLt(ch.marginOf(address(pool)), profit / 2, "the pool's margin is below half the ETH profit");

        // Before: maintenance 5,655 - equity 4,520. After: maintenance 4,155 (30 ETH at 2,000 and the BTC
        // leg) less equity 4,520 - 600 (penalty) - 30,000 (the profit, of which the pool paid what its
        // margin held, 1e12 wei here: what the redemption left).
        uint256 paid = uint256(ch.marginOf(address(pool)));
        int256 after_ = int256(4_155 * WAD) - (int256(4_520 * WAD) - int256(600 * WAD) - int256(30_000 * WAD))
            - int256(paid);
        vm.expectRevert(
            abi.encodeWithSelector(
                IClearingHouse.LiquidationNotImproving.selector, alice, int256(1_135 * WAD), after_
            )
        );
        liquidateAs(keeper, alice, ETH);
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.LiquidationNotLargestPosition.selector, alice, BTC, ETH)
        );
        liquidateAs(keeper, alice, BTC);
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

    function _shortfallSettled(Vm.Log[] memory logs) private view returns (uint256, uint256, uint256) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.ShortfallSettled.selector) {
                return abi.decode(logs[i].data, (uint256, uint256, uint256));
            }
        }
        fail("no ShortfallSettled");
    }
}
