// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title ADL out of rank order across calls.
/// @notice The order check compares the targets of one call only, so before the fix the top-ranked trader
/// could call `autoDeleverage` on a lower-ranked one first. With 35,117 of debt the honest order takes all
/// of it from the top trader (bob) and nothing from the second (carol); called the other way round carol
/// lost 30,000 and bob 5,117. Must hold: nobody can make a lower-ranked target absorb debt while a
/// higher-ranked eligible one exists.
contract AdlOutOfOrderAttackTest is AttackBase {
    uint256 internal debt;

    /// @dev alice (short 100 ETH on 20k) goes bankrupt at 3,600; the fund (10k staked, half of it leaving)
    /// covers one window; the rest is bad debt on the short side. bob (long 100 on 20k) ranks above carol
    /// (long 50 on 20k).
    function setUp() public {
        debt = bankruptShortBook(keeper);
        // 35,117 before the fix; 4.5 less now that the fund no longer pays the keeper's floor for alice
        assertApproxEq(debt, 35_117 * WAD, 5 * WAD, "the issue's debt");
        address[] memory pair = new address[](2);
        (pair[0], pair[1]) = (bob, carol);
        uint256[] memory scores = ch.adlScoresOf(ETH, pair);
        assertGt(scores[0], scores[1], "bob ranks above carol");
    }

    function one(address a) internal pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = a;
    }

    function tryAdl(address caller, address[] memory targets) internal returns (bool ok) {
        vm.prank(caller);
        try ch.autoDeleverage(ETH, targets) {
            ok = true;
        } catch {}
    }

    /// @notice bob, the top-ranked trader, tries to put the debt on carol before anyone deleverages him.
    function test_adlOutOfOrder_topTraderTargetsTheSecond_secondLosesNothing() public {
        int256 carolBefore = equityOf(carol);
        int256 bobBefore = equityOf(bob);
        tryAdl(bob, one(carol)); // the attack
        tryAdl(bob, one(bob)); // and only then himself

        // the ADL keeper then finishes in rank order
        address[] memory ranked = new address[](2);
        (ranked[0], ranked[1]) = (bob, carol);
        if (shortDebt(ETH) != 0) tryAdl(keeper, ranked);

        assertEq(shortDebt(ETH), 0, "the debt was absorbed");
        assertEq(equityOf(carol), carolBefore, "the lower-ranked trader absorbed debt before the top one");
        assertApproxEq(uint256(bobBefore - equityOf(bob)), debt, 4, "the top-ranked trader absorbs the debt");
    }

    /// @notice Any account other than an ADL keeper is refused, however long the debt has been outstanding;
    /// the keeper's own call keeps the in-call order check.
    function test_adlOutOfOrder_nonKeeperRefused_keeperKeepsTheInCallOrder() public {
        vm.prank(bob);
        vm.expectRevert(); // AccessControlUnauthorizedAccount(bob, ADL_KEEPER_ROLE)
        ch.autoDeleverage(ETH, one(carol));

        address[] memory wrong = new address[](2);
        (wrong[0], wrong[1]) = (carol, bob);
        vm.prank(keeper);
        vm.expectRevert(); // AdlOutOfOrder(bob, ...)
        ch.autoDeleverage(ETH, wrong);

        vm.warp(block.timestamp + 30 days);
        refreshPrices();
        vm.prank(bob);
        vm.expectRevert();
        ch.autoDeleverage(ETH, one(carol));
    }
}
