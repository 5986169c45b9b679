// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {AggregatorV3Interface} from "../../../contracts/interfaces/AggregatorV3Interface.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title The Mango Markets attack (October 2022) against Bulwark.
/// @notice The attacker holds both sides of one market from two accounts, then pushes that market's
/// oracle price up 50%. The short account goes bankrupt; the long account shows the mirror profit and
/// tries to take it out through the insurance fund. Bulwark bounds the damage twice: the fund pays at most
/// its per-window cap (half its assets a day with the default parameters), the rest of the shortfall
/// becomes bad debt that the attacker's own profitable close pays back first, and no withdrawal happens
/// while debt is outstanding. With a secondary feed, a spike on the primary alone moves nothing at all.
contract OracleSpikeAttackTest is AttackBase {
    uint256 internal constant DEPOSIT = 100_000 * USDC;
    int256 internal constant SIZE = 500e18; // 1.5M notional at 3000: 15x on each account

    function setUp() public {
        setUpProtocol(2_000_000 * USDC, 100_000 * USDC);
        fundAccount(attacker, DEPOSIT);
        fundAccount(attacker2, DEPOSIT);
        openPosition(attacker, ETH, SIZE);
        openPosition(attacker2, ETH, -SIZE);
    }

    function test_oracleSpike_fundPayoutBoundedByWindowCap() public {
        uint256 fundBefore = fundMargin();
        uint256 windowCap = fundBefore * FUND_WINDOW_CAP / WAD;
        setPrice(ETH, 4500); // the manipulated print

        liquidateAs(keeper, attacker2, ETH);
        uint256 paid = fundBefore - fundMargin();
        assertLe(paid, windowCap, "fund paid beyond its window cap");
        assertGt(shortDebt(ETH), 500_000 * WAD, "the rest became bad debt");
        assertEq(fund.availableWad(), 0, "window exhausted");

        // The profit cannot leave while the debt is outstanding...
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.VaultBadDebtOutstanding.selector, ch.totalBadDebtWad()));
        ch.withdraw(1 * USDC, attacker);
        // ...and realising it pays the debt first, exactly as ADL would.
        closeAll(attacker, ETH);
        assertEq(ch.totalBadDebtWad(), 0, "the attacker's own profit paid the debt");

        uint256 out = uint256(ch.marginOf(attacker)) / SCALE;
        vm.prank(attacker);
        ch.withdraw(out, attacker);
        int256 gain = int256(out) - int256(2 * DEPOSIT);
        assertLe(gain, int256(windowCap / SCALE), "attacker gained more than one window of the fund");
        assertConserved(actors());
    }

    function test_oracleSpike_nextWindowPaysAtMostHalfOfWhatIsLeft() public {
        setPrice(ETH, 4500);
        liquidateAs(keeper, attacker2, ETH);
        uint256 left = fundMargin();
        // A second bankrupt account a day later: the new window is half of what is left, not all of it.
        fundAccount(alice, 50_000 * USDC);
        openPosition(alice, BTC, -10e18);
        vm.warp(block.timestamp + FUND_WINDOW);
        setPrice(ETH, 4500);
        setPrice(BTC, 100_000);
        uint256 fundBefore = fundMargin();
        liquidateAs(keeper, alice, BTC);
        assertEq(fundBefore - fundMargin(), fundBefore * FUND_WINDOW_CAP / WAD, "second window pays its cap, no more");
        assertGe(fundMargin(), fundBefore / 2, "one window never takes more than half");
        assertGe(fundBefore, left, "fund only grew between the windows");
    }

    function test_oracleSpike_secondaryFeedDeviationGuardRefusesThePrint() public {
        MockAggregator secondary = new MockAggregator(8, "ETH / USD secondary", 3000e8, admin);
        oracle.setFeed(ETH, ethFeed, HEARTBEAT, AggregatorV3Interface(address(secondary)), HEARTBEAT, 0.05e18);
        uint256 fundBefore = fundMargin();
        setPrice(ETH, 4500); // only the primary moves

        bytes memory deviation = abi.encodeWithSelector(
            IOracleAdapter.OracleDeviationTooLarge.selector, 4500e18, 3000e18, uint256(1500e18) * WAD / 4500e18, 0.05e18
        );
        vm.prank(keeper);
        vm.expectRevert(deviation);
        ch.liquidate(attacker2, ETH);
        vm.prank(attacker);
        vm.expectRevert(deviation);
        ch.trade(ETH, -SIZE, 0);
        assertEq(fundMargin(), fundBefore, "fund untouched");
        assertEq(ch.totalBadDebtWad(), 0, "no bad debt");

        // When the secondary agrees (a real move within 5%), the market works again.
        secondary.updateAnswer(4400e8);
        setPrice(ETH, 4500);
        liquidateAs(keeper, attacker2, ETH);
        assertEq(ch.positionOf(attacker2, ETH).sizeWad, int256(0), "liquidated at a confirmed price");
    }
}
