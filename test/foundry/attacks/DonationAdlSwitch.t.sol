// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Vm} from "../utils/Vm.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title A 1 micro-USDC donation switching ADL and the close haircut off.
/// @notice ADL and the haircut on a profitable close applied only while the fund had nothing available,
/// `min(fund margin, window remaining) == 0`. Once the fund's margin ran out, a donation of 1 micro-USDC made
/// that non-zero: bob closed his 100 ETH long and kept 59,820 while 30,099 of debt stayed, and
/// `autoDeleverage` reverted `AdlNotRequired`. Must hold: no donation smaller than the outstanding debt
/// changes whether ADL and the close haircut apply.
contract DonationAdlSwitchAttackTest is AttackBase {
    uint256 internal debt;

    /// @dev The fund may pay all it holds in one window; alice (short 100 ETH on 20k) goes bankrupt at
    /// 3,600 and empties it; a day later (a new window) the fund has nothing: ADL conditions hold.
    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 10_000 * USDC);
        ch.grantRole(keccak256("ADL_KEEPER_ROLE"), keeper);
        fund.setParams(FUND_COOLDOWN, FUND_WINDOW, 1e18, FUND_CAP_TOKENS, admin);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 20_000 * USDC);
        fundAccount(carol, 20_000 * USDC);
        openPosition(alice, ETH, -100e18);
        openPosition(bob, ETH, 100e18);
        openPosition(carol, ETH, 50e18);
        setPrice(ETH, 3600);
        liquidateAs(keeper, alice, ETH);
        assertEq(fundMargin(), 0, "the fund paid all it had");
        vm.warp(block.timestamp + FUND_WINDOW);
        setPrice(ETH, 3600);
        debt = shortDebt(ETH);
        assertApproxEq(debt, 30_099 * WAD, 50 * WAD, "about the issue's debt");
        assertEq(fund.availableWad(), 0, "the fund has nothing");
    }

    function haircutOf(Vm.Log[] memory logs) internal view returns (uint256 haircut) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.ProfitHaircutOnClose.selector) {
                (haircut,) = abi.decode(logs[i].data, (uint256, uint256));
            }
        }
    }

    function donateOneMicro() internal {
        usdc.mint(attacker, 1);
        vm.startPrank(attacker);
        usdc.approve(address(fund), 1);
        fund.donate(1);
        vm.stopPrank();
    }

    /// @notice After the donation bob closes 100 ETH (+60,000, fee 180): the profit still pays every part of
    /// the debt the fund cannot pay now.
    function test_donationAdlSwitch_oneMicroDonation_closeStillPaysTheDebt() public {
        donateOneMicro();
        uint256 available = fund.availableWad();
        assertLt(available, debt, "the donation is far below the debt");
        vm.recordLogs();
        closeAll(bob, ETH);
        assertEq(shortDebt(ETH), available, "bob's profit paid all the fund cannot pay");
        assertEq(haircutOf(vm.getRecordedLogs()), debt - available, "bob kept profit the debt needed");
        ch.coverBadDebt(ETH, IClearingHouse.Side.Short); // the fund pays the micro-USDC it can
        assertEq(ch.totalBadDebtWad(), 0, "the debt is paid");
    }

    /// @notice After the donation the ADL keeper can still deleverage.
    function test_donationAdlSwitch_oneMicroDonation_adlStillRuns() public {
        donateOneMicro();
        address[] memory targets = new address[](2);
        (targets[0], targets[1]) = (bob, carol);
        vm.prank(keeper);
        uint256 absorbed = ch.autoDeleverage(ETH, targets);
        assertEq(absorbed, debt - fund.availableWad(), "ADL absorbed what the fund cannot pay");
    }

    /// @notice Whatever the donation below the debt, the close still pays what the fund cannot.
    function testFuzz_donationAdlSwitch_anyDonationBelowTheDebt_closeStillPays(uint256 seed) public {
        uint256 tokens = bound(seed, 1, debt / SCALE - 1);
        usdc.mint(attacker, tokens);
        vm.startPrank(attacker);
        usdc.approve(address(fund), tokens);
        fund.donate(tokens);
        vm.stopPrank();
        uint256 available = fund.availableWad();
        closeAll(bob, ETH);
        assertLe(shortDebt(ETH), available, "a donation let profit skip the debt the fund cannot pay");
    }

    /// @notice A donation at least as large as the debt does switch ADL off: the fund can pay it all.
    function test_donationAdlSwitch_donationCoveringTheDebt_fundPaysInstead() public {
        uint256 tokens = 2 * debt / SCALE + 1; // the window lets the fund pay all it holds
        usdc.mint(attacker, tokens);
        vm.startPrank(attacker);
        usdc.approve(address(fund), tokens);
        fund.donate(tokens);
        vm.stopPrank();
        uint256 available = fund.availableWad();
        assertGe(available, debt, "the fund can pay the debt");
        address[] memory targets = new address[](1);
        targets[0] = bob;
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlNotRequired.selector, debt, available));
        ch.autoDeleverage(ETH, targets);
        ch.coverBadDebt(ETH, IClearingHouse.Side.Short);
        assertEq(ch.totalBadDebtWad(), 0, "the fund paid the debt");
    }
}
