// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Fixture} from "../utils/Fixture.sol";

/// @title A deployed protocol with a seeded pool, a staked fund, a keeper and named actors.
abstract contract AttackBase is Fixture {
    address internal lp = address(0x1001);
    address internal staker = address(0x1002);
    address internal keeper = address(0x1003);
    address internal stayer = address(0x1004);
    address internal alice = address(0x2001);
    address internal bob = address(0x2002);
    address internal carol = address(0x2003);
    address internal attacker = address(0xBAD);
    address internal attacker2 = address(0xBAD2);

    function setUpProtocol(uint256 poolTokens, uint256 fundTokens) internal {
        deployProtocol();
        if (poolTokens != 0) seedPool(lp, poolTokens);
        if (fundTokens != 0) stake(staker, fundTokens);
    }

    function liquidateAs(address who, address account, uint256 marketId) internal {
        vm.prank(who);
        ch.liquidate(account, marketId);
    }

    function closeAll(address who, uint256 marketId) internal {
        int256 size = ch.positionOf(who, marketId).sizeWad;
        openPosition(who, marketId, -size);
    }

    /// @dev `who` asks to leave the fund with all its shares.
    function requestAll(address who) internal returns (uint256 requestId) {
        uint256 shares = fund.balanceOf(who);
        vm.prank(who);
        requestId = fund.requestUnstake(shares);
    }

    /// @dev `staker` and `stayer` stake 10,000 each, `staker` asks to leave with all its shares, and the
    /// cooldown passes (prices refreshed): the request has matured.
    function maturedRequestBesideAStayer() internal returns (uint256 requestId) {
        stake(staker, 10_000 * USDC);
        stake(stayer, 10_000 * USDC);
        requestId = requestAll(staker);
        vm.warp(block.timestamp + FUND_COOLDOWN);
        refreshPrices();
    }

    function fundMargin() internal view returns (uint256) {
        return uint256(ch.marginOf(address(fund)));
    }

    function assertConserved(address[] memory accounts) internal view {
        assertEq(vaultGap(accounts), int256(0), "token balance + bad debt != sum of margins");
    }

    function actors() internal view returns (address[] memory a) {
        a = new address[](8);
        (a[0], a[1], a[2], a[3]) = (lp, staker, keeper, alice);
        (a[4], a[5], a[6], a[7]) = (bob, carol, attacker, attacker2);
    }

    /// @dev The ADL attacks' book: a 1M pool and a 10k fund (half of it leaving); alice shorts 100 ETH,
    /// bob longs 100 and carol 50, each on 20k; alice goes bankrupt at 3,600 and the fund covers one
    /// window, leaving bad debt on the short side. `adlKeeper` holds ADL_KEEPER_ROLE.
    function bankruptShortBook(address adlKeeper) internal returns (uint256 debt) {
        setUpProtocol(1_000_000 * USDC, 10_000 * USDC);
        ch.grantRole(ch.ADL_KEEPER_ROLE(), adlKeeper);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 20_000 * USDC);
        fundAccount(carol, 20_000 * USDC);
        openPosition(alice, ETH, -100e18);
        openPosition(bob, ETH, 100e18);
        openPosition(carol, ETH, 50e18);
        uint256 half = fund.balanceOf(staker) / 2;
        vm.prank(staker);
        fund.requestUnstake(half);
        setPrice(ETH, 3600);
        liquidateAs(keeper, alice, ETH);
        debt = shortDebt(ETH);
    }

    function shortDebt(uint256 marketId) internal view returns (uint256) {
        return ch.badDebtOf(marketId, IClearingHouse.Side.Short);
    }

    function longDebt(uint256 marketId) internal view returns (uint256) {
        return ch.badDebtOf(marketId, IClearingHouse.Side.Long);
    }
}
