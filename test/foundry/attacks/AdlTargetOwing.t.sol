// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title ADL refuses a target whose close would leave it flat and owing.
/// @notice Alice's 60 ETH short carries a realised loss: she closed her BTC long at a 73,800 loss, her
/// margin is -55,533 and her ETH profit (60,000) keeps her equity positive. The LP redeems what the
/// pool lets it, dave's long goes bankrupt (80,052 of bad debt on ETH's long side, the fund nearly
/// empty) and erin's BTC short takes most of the pool's margin as profit. ADL on alice would close her
/// short against a pool that can pay 26,737 of her 60,000: the haircut takes nothing (it keeps her at
/// maintenance margin), the debt stays, and she would be left flat owing 28,796 that nobody records.
/// The clearing house refuses (`AdlTargetLeftOwing`), and nothing moves.
contract AdlTargetOwingTest is AttackBase {
    address internal dave = address(0x2004);
    address internal erin = address(0x2005);

    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 0);
        ch.grantRole(ch.ADL_KEEPER_ROLE(), keeper);
        vm.warp(block.timestamp + POOL_COOLDOWN); // the LP may exit; no position yet, so no funding
        refreshPrices();
        fundAccount(carol, 330_000 * USDC);
        openPosition(carol, ETH, 300e18);
        fundAccount(dave, 20_000 * USDC);
        openPosition(dave, ETH, 100e18);
        fundAccount(alice, 18_500 * USDC);
        openPosition(alice, ETH, -60e18);
        openPosition(alice, BTC, 3e18);
        fundAccount(erin, 50_000 * USDC);
        openPosition(erin, BTC, -5e18);

        setPrice(ETH, 2_000);
        setPrice(BTC, 35_400);
        closeAll(alice, BTC);
        vm.startPrank(lp);
        pool.redeem(pool.maxRedeem(lp), lp, lp);
        vm.stopPrank();
        liquidateAs(keeper, dave, ETH);
        closeAll(erin, BTC);
    }

    function test_adl_targetLeftOwing_reverts() public {
        int256 margin = ch.marginOf(alice);
        int256 paid = ch.marginOf(address(pool)); // all the pool can pay of alice's 60,000
        uint256 debt = ch.badDebtOf(ETH, IClearingHouse.Side.Long);
        assertLt(margin, int256(0), "a realised loss carried by the ETH profit");
        assertLt(int256(0), ch.healthOf(alice).equityWad, "solvent: an ADL target");
        assertGt(debt, fund.availableWad(), "ADL is required");
        assertLt(paid, int256(60_000 * WAD), "the pool cannot pay her profit");

        address[] memory targets = new address[](1);
        targets[0] = alice;
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.AdlTargetLeftOwing.selector, alice, margin + paid)
        );
        ch.autoDeleverage(ETH, targets);
        assertEq(ch.positionOf(alice, ETH).sizeWad, int256(-60e18), "nothing moved");
        assertEq(ch.badDebtOf(ETH, IClearingHouse.Side.Long), debt, "the debt waits");
        address[] memory everyone = new address[](10);
        address[] memory base = actors();
        for (uint256 i; i < base.length; ++i) everyone[i] = base[i];
        (everyone[8], everyone[9]) = (dave, erin);
        assertConserved(everyone);
    }
}
