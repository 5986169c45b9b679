// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {ClearingHouse} from "../../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {OracleAdapter} from "../../../contracts/OracleAdapter.sol";
import {AggregatorV3Interface} from "../../../contracts/interfaces/AggregatorV3Interface.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {Fixture} from "../utils/Fixture.sol";
import {ReentrantAttacker, ReentrantToken} from "../mocks/ReentrantToken.sol";

/// @title Reentrancy through a malicious collateral token.
/// @notice The protocol is deployed over a token that calls the attacker in the middle of each transfer.
/// The attacker re-enters the clearing house, the fund or the pool from inside a deposit, a withdrawal, a
/// donation or a claim, hoping to withdraw twice or act on half-updated state. Every such call meets the
/// reentrancy guard, and the books still balance.
contract ReentrancyAttackTest is Fixture {
    ReentrantToken internal token;
    ReentrantAttacker internal evil;
    ClearingHouse internal rch;
    InsuranceFund internal rfund;
    LiquidityPool internal rpool;

    function setUp() public {
        deployProtocol(); // for the feeds and the parameters
        token = new ReentrantToken();
        OracleAdapter o = new OracleAdapter(admin);
        o.grantRole(o.RISK_ADMIN_ROLE(), admin);
        o.setFeed(ETH, ethFeed, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        o.setFeed(BTC, btcFeed, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        (rch, rpool, rfund) = deployAccounts(IERC20(address(token)), IOracleAdapter(address(o)));
        rch.grantRole(rch.RISK_ADMIN_ROLE(), admin);
        rch.listMarket("ETH-USD", marketConfig(10_000 * WAD, 100_000 * WAD));
        rch.listMarket("BTC-USD", marketConfig(500 * WAD, 5_000 * WAD));

        evil = new ReentrantAttacker();
        token.setHook(address(evil));
        token.mint(address(evil), 1_000_000 * USDC);
        _as(address(token), abi.encodeCall(IERC20.approve, (address(rch), type(uint256).max)));
        _as(address(token), abi.encodeCall(IERC20.approve, (address(rfund), type(uint256).max)));
        _as(address(token), abi.encodeCall(IERC20.approve, (address(rpool), type(uint256).max)));
    }

    function test_reentrancy_withdrawInsideWithdraw_refused() public {
        _as(address(rch), abi.encodeCall(ClearingHouse.deposit, (address(evil), 10_000 * USDC)));
        evil.arm(address(rch), abi.encodeCall(ClearingHouse.withdraw, (10_000 * USDC, address(evil))));
        _as(address(rch), abi.encodeCall(ClearingHouse.withdraw, (10_000 * USDC, address(evil))));
        _assertRefused();
        assertEq(rch.marginOf(address(evil)), 0, "withdrawn once");
        assertEq(token.balanceOf(address(rch)), 0, "nothing left, nothing paid twice");
        assertEq(token.balanceOf(address(evil)), 1_000_000 * USDC, "attacker got back exactly its deposit");
    }

    function test_reentrancy_withdrawInsideDeposit_refused() public {
        _as(address(rch), abi.encodeCall(ClearingHouse.deposit, (address(evil), 10_000 * USDC)));
        evil.arm(address(rch), abi.encodeCall(ClearingHouse.withdraw, (10_000 * USDC, address(evil))));
        _as(address(rch), abi.encodeCall(ClearingHouse.deposit, (address(evil), 5_000 * USDC)));
        _assertRefused();
        assertEq(rch.marginOf(address(evil)), int256(15_000 * USDC * SCALE), "both deposits credited once");
        assertEq(token.balanceOf(address(rch)), 15_000 * USDC, "vault holds both deposits");
    }

    function test_reentrancy_tradeInsideWithdraw_refused() public {
        _seedPool();
        _as(address(rch), abi.encodeCall(ClearingHouse.deposit, (address(evil), 10_000 * USDC)));
        evil.arm(address(rch), abi.encodeCall(ClearingHouse.trade, (ETH, 60e18, type(uint256).max)));
        _as(address(rch), abi.encodeCall(ClearingHouse.withdraw, (9_000 * USDC, address(evil))));
        _assertRefused();
        assertEq(rch.positionOf(address(evil), ETH).sizeWad, int256(0), "no position opened mid-withdrawal");
    }

    function test_reentrancy_stakeInsideDonate_refused() public {
        evil.arm(address(rfund), abi.encodeCall(rfund.deposit, (1_000 * USDC, address(evil))));
        _as(address(rfund), abi.encodeCall(InsuranceFund.donate, (1_000 * USDC)));
        _assertRefused();
        assertEq(rfund.balanceOf(address(evil)), 0, "no shares minted mid-donation");
        assertEq(rfund.totalAssets(), 1_000 * USDC, "the donation arrived once");
    }

    function test_reentrancy_claimInsideClaim_refused() public {
        _as(address(rfund), abi.encodeCall(rfund.deposit, (10_000 * USDC, address(evil))));
        uint256 shares = rfund.balanceOf(address(evil));
        _as(address(rfund), abi.encodeCall(InsuranceFund.requestUnstake, (shares)));
        vm.warp(block.timestamp + FUND_COOLDOWN);
        evil.arm(address(rfund), abi.encodeCall(InsuranceFund.claim, (0)));
        _as(address(rfund), abi.encodeCall(InsuranceFund.claim, (0)));
        _assertRefused();
        assertEq(token.balanceOf(address(evil)), 1_000_000 * USDC, "claimed once");
        assertEq(rfund.totalAssets(), 0, "fund emptied once");
    }

    function test_reentrancy_lpDepositInsideLpDeposit_refused() public {
        evil.arm(address(rpool), abi.encodeCall(rpool.deposit, (1_000 * USDC, address(evil))));
        _as(address(rpool), abi.encodeCall(rpool.deposit, (10_000 * USDC, address(evil))));
        _assertRefused();
        assertEq(rpool.totalAssets(), 10_000 * USDC, "one deposit");
    }

    // ---------------------------------------------------------------- helpers

    function _seedPool() internal {
        token.mint(admin, 1_000_000 * USDC);
        token.approve(address(rpool), type(uint256).max);
        rpool.deposit(1_000_000 * USDC, admin);
    }

    function _as(address to, bytes memory data) internal {
        evil.exec(to, data);
    }

    function _assertRefused() internal view {
        assertTrue(evil.reentered(), "the token handed control to the attacker");
        assertTrue(!evil.reentrySucceeded(), "the re-entrant call went through");
        assertRevertSelector(
            evil.reentryRevert(), ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector, "refused by the guard"
        );
    }
}
