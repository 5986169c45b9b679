// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Socialising bad debt to the LPs too early.
/// @notice Two ways the pool was charged before it had to be: while the insurance fund could still pay
/// (socialisation looked only at the grace period), and for a debt recorded moments before (the grace ran
/// from when the total last rose from zero, so a new debt recorded while an older one was outstanding could
/// be socialised at once). Must hold: no socialisation while the fund can pay; each debt its own grace.
contract SocialiseEarlyAttackTest is AttackBase {
    address internal dave = address(0x2004);

    /// @dev alice (short 100 ETH on 20k) and dave (short 10 ETH on 2k) both go bankrupt at 3,600; the fund
    /// (10k staked, half of it leaving) covers one window's worth of alice's shortfall.
    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 10_000 * USDC);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(dave, 2_000 * USDC);
        fundAccount(bob, 40_000 * USDC);
        openPosition(alice, ETH, -100e18);
        openPosition(dave, ETH, -10e18);
        openPosition(bob, ETH, 110e18);
        setPrice(ETH, 3600);
        liquidateAs(keeper, alice, ETH);
        assertGt(shortDebt(ETH), 0, "bad debt recorded");
    }

    /// @notice A day later the fund has a new window: socialising must take the fund's part from the fund
    /// and charge the pool only for the rest.
    function test_socialiseEarly_whileTheFundCanPay_poolChargedOnlyTheRest() public {
        vm.warp(block.timestamp + GRACE);
        setPrice(ETH, 3600);
        uint256 debt = shortDebt(ETH);
        uint256 available = fund.availableWad();
        assertGt(available, 0, "the fund can pay part");
        int256 poolBefore = ch.marginOf(address(pool));
        ch.socializeBadDebt(ETH, IClearingHouse.Side.Short);
        assertEq(ch.marginOf(address(pool)), poolBefore - int256(debt - available), "the pool paid the fund's part");
        assertEq(shortDebt(ETH), 0, "the debt is settled");
    }

    /// @notice A second debt on the same side, 23 hours after the first, gets its own full grace period.
    function test_socialiseEarly_newDebtRestartsTheGrace() public {
        uint256 firstAt = block.timestamp;
        vm.warp(firstAt + 23 hours);
        setPrice(ETH, 3600);
        liquidateAs(keeper, dave, ETH);
        uint256 secondAt = block.timestamp;

        vm.warp(firstAt + GRACE);
        setPrice(ETH, 3600);
        int256 poolBefore = ch.marginOf(address(pool));
        try ch.socializeBadDebt(ETH, IClearingHouse.Side.Short) {} catch {}
        assertEq(ch.marginOf(address(pool)), poolBefore, "the new debt was socialised inside its grace");

        vm.warp(secondAt + GRACE);
        setPrice(ETH, 3600);
        ch.socializeBadDebt(ETH, IClearingHouse.Side.Short);
        assertEq(shortDebt(ETH), 0, "socialised once its grace passed");
    }
}
