// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Vm} from "../utils/Vm.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Shifting a pro-rata ADL share onto someone else.
/// @notice Under the ProRata policy every presented target pays debtTaken x its profit / the presented
/// profit, rounded down or up (the shares add up to debtTaken). Must hold: nobody pays more than its
/// share of the set presented, the total never exceeds the debt the fund cannot pay, a target listed
/// twice, out of order or ineligible is refused, only the ADL keeper may present a set, and a set that
/// leaves out part of the winning side shows it in `AdlProRataApplied` (presented size below the side's
/// open interest).
contract ProRataShiftAttackTest is AttackBase {
    address internal dave = address(0x2004);
    uint256 internal debt;
    uint256 internal debtTaken;

    /// @dev The queue's setting (AdlOutOfOrder): alice short 100 ETH from 3,000 goes bankrupt at 3,600;
    /// bob (long 100) and carol (long 50) are the winning side; dave is short 1 (a loser).
    function setUp() public {
        crash(IClearingHouse.AdlPolicy.ProRata);
    }

    function crash(IClearingHouse.AdlPolicy policy) internal {
        setUpProtocol(1_000_000 * USDC, 10_000 * USDC);
        ch.grantRole(keccak256("ADL_KEEPER_ROLE"), keeper);
        ch.setAdlPolicy(ETH, policy);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 20_000 * USDC);
        fundAccount(carol, 20_000 * USDC);
        fundAccount(dave, 20_000 * USDC);
        openPosition(alice, ETH, -100e18);
        openPosition(bob, ETH, 100e18);
        openPosition(carol, ETH, 50e18);
        openPosition(dave, ETH, -1e18);
        uint256 half = fund.balanceOf(staker) / 2;
        vm.prank(staker);
        fund.requestUnstake(half);
        setPrice(ETH, 3600);
        liquidateAs(keeper, alice, ETH);
        debt = shortDebt(ETH);
        debtTaken = debt - fund.availableWad();
    }

    function list(address a, address b) internal pure returns (address[] memory l) {
        l = new address[](2);
        (l[0], l[1]) = (a, b);
    }

    function one(address a) internal pure returns (address[] memory l) {
        l = new address[](1);
        l[0] = a;
    }

    function pnlOf(address who) internal view returns (uint256) {
        IClearingHouse.Position memory p = ch.positionOf(who, ETH);
        return uint256(int256(p.sizeWad) * 3600 - p.openNotionalWad);
    }

    /// @dev Runs the keeper's call and returns each target's haircut from `AutoDeleveraged`, in order.
    function adl(address[] memory targets) internal returns (uint256[] memory haircuts, uint256[] memory applied) {
        vm.recordLogs();
        vm.prank(keeper);
        ch.autoDeleverage(ETH, targets);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        haircuts = new uint256[](targets.length);
        bytes32 stepSig = keccak256("AutoDeleveraged(address,uint256,uint256,int256,uint256,uint256,uint256)");
        bytes32 setSig = keccak256("AdlProRataApplied(uint256,uint8,uint256,uint256,uint256,uint256,uint256,uint256)");
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == stepSig) {
                address who = address(uint160(uint256(logs[i].topics[1])));
                (,,, uint256 haircut,) = abi.decode(logs[i].data, (uint256, int256, uint256, uint256, uint256));
                for (uint256 k; k < targets.length; ++k) {
                    if (targets[k] == who) haircuts[k] = haircut;
                }
            } else if (logs[i].topics[0] == setSig) {
                // side, targets, presented profit, presented size, side open interest, debt taken, absorbed
                uint256[7] memory fields = abi.decode(logs[i].data, (uint256[7]));
                applied = new uint256[](7);
                for (uint256 k; k < 7; ++k) applied[k] = fields[k];
            }
        }
    }

    /// @notice Worked example C of docs/protocol.md (pro rata): bob's profit is 60,000, carol's
    /// 30,000; the fund's window is spent, so the whole debt is taken: bob pays two thirds, carol one third.
    function test_autoDeleverage_proRata_workedExample() public {
        assertEq(fund.availableWad(), 0, "the fund's window is spent");
        assertEq(debt, 35_112_35e16, "the debt left by alice");
        (uint256 bobPnl, uint256 carolPnl) = (pnlOf(bob), pnlOf(carol));
        assertEq(bobPnl, 60_000 * WAD, "bob's profit");
        assertEq(carolPnl, 30_000 * WAD, "carol's profit");
        (uint256[] memory cut, uint256[] memory applied) = adl(list(bob, carol));
        assertEq(cut[0], debtTaken * 2 / 3 + 1, "bob pays two thirds, and the rounding wei (first in order)");
        assertEq(cut[1], debtTaken / 3, "carol pays one third, rounded down");
        assertEq(cut[0], 23_408_233_333_333_333_333_334, "bob's figure in docs/protocol.md");
        assertEq(cut[1], 11_704_116_666_666_666_666_666, "carol's figure in docs/protocol.md");
        assertEq(shortDebt(ETH), 0, "the debt falls by exactly the haircuts, to zero");
        assertEq(applied[2], 90_000 * WAD, "presented profit");
        assertEq(applied[3], 150e18, "presented size");
        assertEq(applied[4], 150e18, "the long side's open interest: the set covers it");
        assertEq(
            ch.positionOf(bob, ETH).sizeWad,
            100e18 - int256((100e18 * (cut[0] + 1) + bobPnl - 1) / bobPnl),
            "bob closed ceil(100 x (haircut + 1) / profit)"
        );
        address[] memory all = actors();
        all[6] = dave; // the attackers hold nothing here
        assertConserved(all);
    }

    /// @notice The queue's side of worked example C: on the same crash bob pays it all, carol nothing.
    function test_autoDeleverage_queue_workedExampleC() public {
        crash(IClearingHouse.AdlPolicy.Queue);
        assertEq(debtTaken, 35_112_35e16, "the debt taken, as under pro rata");
        int256 carolBefore = equityOf(carol);
        (uint256[] memory cut, uint256[] memory applied) = adl(list(bob, carol));
        assertEq(cut[0], debtTaken, "bob pays the whole debt");
        assertEq(cut[1], 0, "carol is not reached");
        assertEq(equityOf(carol), carolBefore, "carol untouched");
        assertEq(applied.length, 0, "no pro-rata report under the queue");
        assertEq(ch.positionOf(bob, ETH).sizeWad, 100e18 - 58_520_583_333_333_333_334, "bob closed 58.52 ETH");
        assertEq(shortDebt(ETH), 0, "no debt left");
    }

    /// @notice Listing a target twice would double its weight in the sum and lower everyone else's share:
    /// refused, as is any order but strictly ascending addresses.
    function test_autoDeleverage_proRata_duplicateRefused() public {
        address[] memory twice = new address[](3);
        (twice[0], twice[1], twice[2]) = (bob, carol, carol);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlTargetsNotAscending.selector, carol, carol));
        ch.autoDeleverage(ETH, twice);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlTargetsNotAscending.selector, bob, carol));
        ch.autoDeleverage(ETH, list(carol, bob));
    }

    /// @notice A loser (dave, short), the pool or an empty account cannot be listed to dilute the sum.
    function test_autoDeleverage_proRata_ineligibleRefused() public {
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlTargetIneligible.selector, dave, -1e18, 0, 0));
        ch.autoDeleverage(ETH, list(bob, dave));
        address[] memory withPool = new address[](3);
        (withPool[0], withPool[1], withPool[2]) = (bob, carol, address(pool));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlTargetIneligible.selector, address(pool), 0, 0, 0));
        ch.autoDeleverage(ETH, withPool);
        assertEq(shortDebt(ETH), debt, "nothing was taken");
    }

    /// @notice bob, a target, presents a set without himself: refused, only the ADL keeper presents sets.
    function test_autoDeleverage_proRata_targetCannotPresent() public {
        int256 carolBefore = equityOf(carol);
        vm.prank(bob);
        vm.expectRevert(); // AccessControlUnauthorizedAccount(bob, ADL_KEEPER_ROLE)
        ch.autoDeleverage(ETH, one(carol));
        assertEq(equityOf(carol), carolBefore, "carol untouched");
        assertEq(shortDebt(ETH), debt, "nothing was taken");
    }

    /// @notice Completeness rests on the keeper role: a set without carol makes bob pay min(debt, his
    /// profit), and the chain cannot refuse it, but the call publishes that it covered 100 of the side's 150.
    function test_autoDeleverage_proRata_omissionShowsInCoverage() public {
        (uint256[] memory cut, uint256[] memory applied) = adl(one(bob));
        assertEq(cut[0], debtTaken, "bob alone pays the whole debt taken (within his profit)");
        assertEq(applied[3], 100e18, "presented size");
        assertEq(applied[4], 150e18, "side open interest: 50 of it was left out");
    }

    /// @notice An attacker opens a fresh long at the crash price to join the set and dilute the others'
    /// shares (or to sit in it with nothing to lose): a position without profit is refused.
    function test_autoDeleverage_proRata_freshEntryCannotDilute() public {
        fundAccount(attacker2, 20_000 * USDC);
        openPosition(attacker2, ETH, 25e18);
        address[] memory set = new address[](3);
        (set[0], set[1], set[2]) = (bob, carol, attacker2);
        vm.prank(keeper);
        vm.expectRevert(); // AdlTargetIneligible(attacker2, 25e18, pnl <= 0, equity)
        ch.autoDeleverage(ETH, set);
        (uint256[] memory cut,) = adl(list(bob, carol));
        assertEq(cut[0] + cut[1], debtTaken, "the honest set pays exactly the debt taken");
    }

    /// @notice Fuzzed sizes and crash: nobody pays more than its share, the total never exceeds the debt.
    function testFuzz_autoDeleverage_proRata_nobodyPaysMoreThanItsShare(uint256 bobSize, uint256 carolSize, uint256 px)
        public
    {
        deployProtocol();
        seedPool(lp, 1_000_000 * USDC);
        ch.grantRole(keccak256("ADL_KEEPER_ROLE"), keeper);
        ch.setAdlPolicy(ETH, IClearingHouse.AdlPolicy.ProRata);
        bobSize = bound(bobSize, 1, 150) * 1e18;
        carolSize = bound(carolSize, 1, 150) * 1e18;
        px = bound(px, 3200, 4000);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 30_000 * USDC);
        fundAccount(carol, 30_000 * USDC);
        openPosition(alice, ETH, -100e18);
        openPosition(bob, ETH, int256(bobSize));
        openPosition(carol, ETH, int256(carolSize));
        setPrice(ETH, px);
        liquidateAs(keeper, alice, ETH);
        uint256 d = shortDebt(ETH);
        vm.assume(d > fund.availableWad());
        uint256 taken = d - fund.availableWad();
        uint256 bp = uint256(int256(bobSize) * int256(px) - ch.positionOf(bob, ETH).openNotionalWad);
        uint256 cp = uint256(int256(carolSize) * int256(px) - ch.positionOf(carol, ETH).openNotionalWad);
        uint256 sum = bp + cp;
        if (taken > sum) taken = sum;
        (uint256[] memory cut,) = adl(list(bob, carol));
        assertLe(cut[0], (taken * bp + sum - 1) / sum, "bob pays at most his share, rounded up");
        assertLe(cut[1], (taken * cp + sum - 1) / sum, "carol pays at most her share, rounded up");
        assertLe(cut[0] + cut[1], d, "never more than the debt");
        assertEq(shortDebt(ETH), d - cut[0] - cut[1], "the debt falls by exactly the haircuts");
        assertConserved(actors());
    }

    /// @notice The policy is the risk admin's, and it cannot change while the market carries bad debt.
    function test_setAdlPolicy_lockedWhileBadDebt() public {
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AdlPolicyLocked.selector, ETH, debt));
        ch.setAdlPolicy(ETH, IClearingHouse.AdlPolicy.Queue);
        vm.prank(bob);
        vm.expectRevert(); // AccessControlUnauthorizedAccount(bob, RISK_ADMIN_ROLE)
        ch.setAdlPolicy(BTC, IClearingHouse.AdlPolicy.ProRata);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.MarketUnknown.selector, 7));
        ch.setAdlPolicy(7, IClearingHouse.AdlPolicy.ProRata);
        ch.setAdlPolicy(BTC, IClearingHouse.AdlPolicy.ProRata);
        assertEq(uint256(ch.adlPolicyOf(BTC)), 1, "BTC is pro rata");
        assertEq(uint256(ch.adlPolicyOf(ETH)), 1, "ETH is still pro rata");
    }
}
