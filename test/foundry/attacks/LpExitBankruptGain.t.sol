// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Console} from "../utils/Console.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Attack 6: an LP exits while a bankrupt trader's loss is still counted in full as the pool's
/// gain. Two LPs of 500,000; alice's long of 200 ETH (fee 300: 240 to the pool) on 30,300 falls to 2,400,
/// a loss of 120,000 of which the fund (2,458) covers 1,229 and 88,771 becomes bad debt, later socialised
/// (the keeper is paid nothing: the account has nothing left).
/// Before the fix the LP who left took 560,120 instead of 515,732 and the one who stayed kept 471,345.
contract LpExitBankruptGainTest is AttackBase {
    address internal lp2 = address(0x1005);

    function setUp() public {
        deployProtocol();
        seedPool(lp, 500_000 * USDC);
        seedPool(lp2, 500_000 * USDC);
        stake(staker, 2_398 * USDC); // 2,458 with the fee share: half of it is the window cap
        vm.warp(block.timestamp + POOL_COOLDOWN);
        refreshPrices();
        fundAccount(alice, 30_300 * USDC);
        openPosition(alice, ETH, 200e18); // 600,000 at 20x
        setPrice(ETH, 2400); // alice: 30,000 - 120,000, bankrupt
        assertEq(ch.poolEquityWad(), int256(1_120_240 * WAD), "pool equity counts the whole loss");
    }

    /// @dev Liquidates alice and socialises the bad debt after its grace period.
    function _settle() internal {
        liquidateAs(keeper, alice, ETH);
        assertEq(ch.totalBadDebtWad(), 88_771 * WAD, "bad debt");
        vm.warp(block.timestamp + GRACE);
        refreshPrices();
        ch.socializeBadDebt(ETH, IClearingHouse.Side.Long);
    }

    /// @notice The LP who exits before the liquidation gets no more than an LP who waits, and the LP who
    /// stays keeps no less than what waiting would have left both of them.
    function test_redeem_beforeBankruptcySettles_capturesNoUncollectableGain() public {
        uint256 snap = vm.snapshotState();
        _settle();
        uint256 fairValue = pool.convertToAssets(pool.balanceOf(lp));
        assertEq(fairValue, pool.convertToAssets(pool.balanceOf(lp2)), "equal LPs");

        vm.revertToState(snap);
        uint256 shares = pool.balanceOf(lp);
        vm.prank(lp);
        uint256 paid = pool.redeem(shares, lp, lp);
        _settle();
        uint256 stayerValue = pool.convertToAssets(pool.balanceOf(lp2));

        Console.log("fair value of each LP", fairValue);
        Console.log("exiting LP paid", paid);
        Console.log("remaining LP value", stayerValue);
        assertLe(paid, fairValue, "the exit captured the uncollectable gain");
        assertGe(stayerValue, fairValue, "the remaining LP paid for the exit");
        assertConserved(actors());
    }
}
