// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Dodging auto-deleveraging: a trader whose profit ADL would take tries to get it out first by
/// closing, reducing, flipping or withdrawing while bad debt is outstanding and the fund has nothing left.
contract AdlDodgeAttackTest is AttackBase {
    uint256 internal debt;

    /// @dev alice (short 100 ETH on 20k) goes bankrupt at 3600; the fund (10k staked) covers one window,
    /// the rest is bad debt on the short side, which bob's and carol's profitable longs would absorb.
    function setUp() public {
        debt = bankruptShortBook(address(this)); // this test is the ADL keeper
        assertGt(debt, 30_000 * WAD, "bad debt outstanding");
        assertEq(fund.availableWad(), 0, "fund window exhausted");
    }

    function test_adlDodge_closeWhileDebtOutstanding_profitPaysDebtFirst() public {
        int256 marginBefore = ch.marginOf(bob);
        closeAll(bob, ETH);
        assertEq(shortDebt(ETH), 0, "bob's close paid the whole debt");
        // 100 ETH x +600 = 60k realised; the debt came out of it; the fee on 360k notional too.
        int256 fee = int256(360_000 * WAD * 5 / 10_000);
        assertEq(ch.marginOf(bob), marginBefore + 60_000e18 - int256(debt) - fee, "haircut == debt, from profit");
    }

    function test_adlDodge_partialReduce_paysUpToItsProfit() public {
        closeAll(carol, ETH); // carol: 30k profit pays 30k of the debt first
        uint256 left = shortDebt(ETH);
        assertEq(left, debt - 30_000e18, "reduce paid exactly its realised profit");
        openPosition(bob, ETH, -5e18); // 3k profit
        assertEq(shortDebt(ETH), left - 3_000e18, "a partial reduce pays its realised profit");
    }

    function test_adlDodge_flipThroughZero_paysDebtFirst() public {
        openPosition(bob, ETH, -150e18); // close 100 long (60k profit) and open 50 short in one trade
        assertEq(ch.positionOf(bob, ETH).sizeWad, int256(-50e18), "flipped");
        assertEq(shortDebt(ETH), 0, "the flip's realised profit paid the debt");
    }

    function test_adlDodge_withdrawalsWaitWhileDebtOutstanding() public {
        bytes memory outstanding =
            abi.encodeWithSelector(IClearingHouse.VaultBadDebtOutstanding.selector, ch.totalBadDebtWad());
        vm.prank(bob);
        vm.expectRevert(outstanding);
        ch.withdraw(1 * USDC, bob);

        vm.warp(block.timestamp + POOL_COOLDOWN); // past the LP lock, not past the fund's cooldown
        refreshPrices();
        vm.warp(block.timestamp + FUND_COOLDOWN);
        refreshPrices();
        uint256 lpShares = pool.balanceOf(lp);
        vm.prank(lp);
        vm.expectRevert(outstanding); // LP exits wait too
        pool.redeem(lpShares, lp, lp);
        vm.prank(staker);
        vm.expectRevert(outstanding); // and so do fund claims
        fund.claim(0);
        assertEq(pool.maxRedeem(lp), 0, "no LP exit while bad debt is outstanding");

        // After a new fund window the fund pays the debt down; then exits reopen.
        ch.coverBadDebt(ETH, IClearingHouse.Side.Short);
        uint256 rest = shortDebt(ETH);
        if (rest != 0) {
            address[] memory targets = new address[](2);
            (targets[0], targets[1]) = (bob, carol);
            if (fund.availableWad() == 0) ch.autoDeleverage(ETH, _ranked(targets));
        }
        assertEq(ch.totalBadDebtWad(), 0, "debt cleared");
        vm.prank(bob);
        ch.withdraw(1 * USDC, bob);
    }

    function test_adl_outOfOrderRefused_andOnlyWhatTheFundCannotPay() public {
        address[] memory targets = new address[](2);
        (targets[0], targets[1]) = (bob, carol);
        address[] memory ranked = _ranked(targets);
        uint256[] memory scores = ch.adlScoresOf(ETH, ranked);
        assertGt(scores[0], scores[1], "distinct scores");

        address[] memory wrong = new address[](2);
        (wrong[0], wrong[1]) = (ranked[1], ranked[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.AdlOutOfOrder.selector, wrong[1], scores[0], scores[1])
        );
        ch.autoDeleverage(ETH, wrong);

        vm.warp(block.timestamp + FUND_WINDOW); // new window: the fund can pay part of the debt again
        refreshPrices();
        uint256 available = fund.availableWad();
        assertGt(available, 0, "fund available");
        assertLt(available, debt, "but less than the debt");
        assertEq(ch.autoDeleverage(ETH, ranked), debt - available, "ADL takes only what the fund cannot pay");
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlNotRequired.selector, available, available));
        ch.autoDeleverage(ETH, ranked);
    }

    function test_adl_stalePriceRefused() public {
        address[] memory targets = new address[](1);
        targets[0] = bob;
        vm.warp(block.timestamp + HEARTBEAT + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                IOracleAdapter.OracleStalePrice.selector, address(ethFeed), block.timestamp - HEARTBEAT - 1, HEARTBEAT
            )
        );
        ch.autoDeleverage(ETH, targets);
    }

    /// @dev Orders `accounts` by the contract's own ADL score, highest first.
    function _ranked(address[] memory accounts) internal view returns (address[] memory) {
        uint256[] memory s = ch.adlScoresOf(ETH, accounts);
        if (accounts.length == 2 && s[1] > s[0]) (accounts[0], accounts[1]) = (accounts[1], accounts[0]);
        return accounts;
    }
}
