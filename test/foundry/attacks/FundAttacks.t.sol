// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IInsuranceFund} from "../../../contracts/interfaces/IInsuranceFund.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {ILiquidityPool} from "../../../contracts/interfaces/ILiquidityPool.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Attacks on the insurance fund's and the pool's shares: just-in-time staking and ERC-4626
/// donation (inflation) of the first depositor.
contract FundAttacksTest is AttackBase {
    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 0);
    }

    /// @dev alice holds 100 ETH long (300k notional) on 20k: a drop to 2820 puts her under maintenance
    /// margin but above the reward floor, so her liquidation is partial and pays padding to the fund.
    function _aliceAtRisk() internal {
        fundAccount(alice, 20_000 * USDC);
        openPosition(alice, ETH, 100e18);
        setPrice(ETH, 2820);
        assertTrue(ch.healthOf(alice).liquidatable, "alice liquidatable");
    }

    /// @notice Attack: stake right before a liquidation pays padding into the fund and leave right after.
    /// Bounded: the attacker's request locks at most its pro-rata share of the padding, it cannot claim
    /// before the cooldown (7 days), and it bears any shortfall in the meantime.
    function test_jitStake_aroundPadding_cannotLeaveBeforeCooldown() public {
        stake(staker, 100_000 * USDC);
        _aliceAtRisk();
        uint256 shares = stake(attacker, 100_000 * USDC); // just in time
        uint256 fundBefore = fundMargin();
        liquidateAs(keeper, alice, ETH);
        uint256 padding = fundMargin() - fundBefore;
        assertGt(padding, 0, "the liquidation paid padding");

        vm.prank(attacker);
        uint256 id = fund.requestUnstake(shares);
        IInsuranceFund.UnstakeRequest memory r = fund.unstakeRequest(id);
        uint256 proRata = padding * shares / fund.totalSupply() / SCALE;
        assertLe(r.assetsAtRequest, 100_000 * USDC + proRata, "locked more than its pro-rata share");

        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(IInsuranceFund.FundCooldownActive.selector, id, r.readyAt));
        fund.claim(id);
        vm.warp(block.timestamp + FUND_COOLDOWN - 1);
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(IInsuranceFund.FundCooldownActive.selector, id, r.readyAt));
        fund.claim(id);
    }

    /// @notice Attack: stake before padding, then let a shortfall hit during the cooldown. The claim pays
    /// min(value at request, value now): the just-in-time staker bears its share of the loss.
    function test_jitStake_shortfallDuringCooldown_stakerBearsIt() public {
        stake(staker, 100_000 * USDC);
        uint256 shares = stake(attacker, 100_000 * USDC);
        vm.prank(attacker);
        uint256 id = fund.requestUnstake(shares);
        uint256 atRequest = fund.unstakeRequest(id).assetsAtRequest;

        fundAccount(bob, 10_000 * USDC);
        openPosition(bob, ETH, -50e18);
        setPrice(ETH, 3600); // bob: -30k on 10k
        liquidateAs(keeper, bob, ETH);
        vm.warp(block.timestamp + FUND_COOLDOWN);
        refreshPrices();

        uint256 valueNow = fund.convertToAssets(shares);
        assertLt(valueNow, atRequest, "the shortfall lowered the escrowed shares' value");
        uint256 before = usdc.balanceOf(attacker);
        vm.prank(attacker);
        uint256 paid = fund.claim(id);
        assertEq(paid, valueNow, "claim pays the lower value now");
        assertEq(usdc.balanceOf(attacker) - before, paid, "tokens paid");
        // The one who stayed bore exactly the same share of the loss, not more.
        assertApproxEq(fund.convertToAssets(fund.balanceOf(staker)), valueNow, 2, "losses shared pro rata");
    }

    /// @notice Attack: see a bankruptcy coming and request an unstake before the keeper settles it. The
    /// request does not freeze the value: the shortfall still reaches the escrowed shares.
    function test_jitUnstake_requestBeforeShortfall_stillBearsIt() public {
        uint256 shares = stake(staker, 100_000 * USDC);
        fundAccount(bob, 10_000 * USDC);
        openPosition(bob, ETH, -50e18);
        setPrice(ETH, 3600);
        vm.prank(staker);
        uint256 id = fund.requestUnstake(shares); // front-runs the liquidation
        uint256 atRequest = fund.unstakeRequest(id).assetsAtRequest;
        liquidateAs(keeper, bob, ETH);
        vm.warp(block.timestamp + FUND_COOLDOWN);
        vm.prank(staker);
        uint256 paid = fund.claim(id);
        assertLt(paid, atRequest - 10_000 * USDC, "the early request still bore the shortfall");
    }

    /// @notice ERC-4626 inflation on the fund: the first staker mints from 1 unit, then donates 1M to
    /// inflate the share price so the victim's deposit rounds to few or no shares. The virtual offset
    /// (10^6 shares) keeps the victim's rounding loss under a basis point while the attacker loses half of
    /// what it donated.
    function test_inflation_fundFirstDepositorDonation_fails() public {
        uint256 attackerShares = stake(attacker, 1);
        usdc.mint(attacker, 1_000_000 * USDC);
        vm.startPrank(attacker);
        usdc.approve(address(fund), type(uint256).max);
        fund.donate(1_000_000 * USDC);
        vm.stopPrank();
        usdc.mint(address(fund), 1_000_000 * USDC); // a direct transfer is not an asset at all
        assertEq(fund.totalAssets(), 1_000_000 * USDC + 1, "only margin counts as fund assets");

        uint256 victimShares = stake(alice, 10_000 * USDC);
        assertGt(victimShares, 0, "victim got shares");
        uint256 victimLoss = 10_000 * USDC - fund.convertToAssets(victimShares);
        uint256 attackerLoss = 1_000_000 * USDC + 1 - fund.convertToAssets(attackerShares);
        assertLe(victimLoss, 10_000 * USDC / 10_000, "victim lost more than a basis point");
        assertGe(attackerLoss, 1000 * victimLoss, "the attack costs the attacker 1000x what it costs the victim");
    }

    /// @notice ERC-4626 inflation on the pool: the donation goes in as clearing-house margin credited to
    /// the pool's account (anyone may deposit for any account). Same outcome: the victim stays whole.
    function test_inflation_poolFirstDepositorDonation_fails() public {
        deployProtocol(); // a fresh pool with no LP yet
        usdc.mint(attacker, 1_000_001 * USDC);
        vm.startPrank(attacker);
        usdc.approve(address(pool), 1);
        uint256 attackerShares = pool.deposit(1, attacker);
        usdc.approve(address(ch), 1_000_000 * USDC);
        ch.deposit(address(pool), 1_000_000 * USDC);
        vm.stopPrank();

        usdc.mint(alice, 10_000 * USDC);
        vm.startPrank(alice);
        usdc.approve(address(pool), 10_000 * USDC);
        uint256 victimShares = pool.deposit(10_000 * USDC, alice);
        vm.stopPrank();
        assertGt(victimShares, 0, "victim got shares");
        uint256 victimLoss = 10_000 * USDC - pool.convertToAssets(victimShares);
        uint256 attackerLoss = 1_000_000 * USDC + 1 - pool.convertToAssets(attackerShares);
        assertLe(victimLoss, 10_000 * USDC / 10_000, "victim lost more than a basis point");
        assertGe(attackerLoss, 1000 * victimLoss, "the attack costs the attacker 1000x what it costs the victim");
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ILiquidityPool.PoolSharesLocked.selector, alice, block.timestamp + POOL_COOLDOWN));
        pool.redeem(victimShares, alice, alice);
    }

    /// @notice Attack on LPs: when trader profits exceed the pool's margin its equity is negative and its
    /// shares are worth nothing; a deposit then would mint at a zero price and fill the deficit for the
    /// traders. Such a deposit is refused.
    function test_lpDeposit_intoInsolventPool_refused() public {
        deployProtocol();
        seedPool(lp, 100_000 * USDC);
        fundAccount(alice, 20_000 * USDC);
        openPosition(alice, ETH, 100e18); // the pool takes 100 ETH short: 300k, its exposure cap
        setPrice(ETH, 4500); // alice +150k: more than the pool has
        int256 equity = ch.poolEquityWad();
        assertLt(equity, int256(0), "pool under water");
        assertEq(pool.maxDeposit(bob), 0, "maxDeposit says no");

        usdc.mint(bob, 10_000 * USDC);
        vm.startPrank(bob);
        usdc.approve(address(pool), 10_000 * USDC);
        vm.expectRevert(abi.encodeWithSelector(ILiquidityPool.PoolInsolvent.selector, equity));
        pool.deposit(10_000 * USDC, bob);
        vm.stopPrank();
    }
}
