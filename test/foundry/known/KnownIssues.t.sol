// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AttackBase} from "../attacks/AttackBase.sol";

/// @title Open findings: each test states the behaviour the protocol should have and fails until the
/// contracts have it. The default run leaves this contract out; tests/test_forge.py runs each test
/// on its own as an expected failure (strict: once fixed, it passes and the marker must go).
contract KnownIssuesTest is AttackBase {
    function setUp() public {
        setUpProtocol(100_000 * USDC, 10_000 * USDC);
    }

    /// @notice When trader profits exceed the pool's margin, pool equity is negative and totalAssets()
    /// is zero while shares exist. A deposit then mints shares at a near-zero price and its assets fill
    /// the deficit: the depositor loses everything at once (and repeated deposits overflow the share
    /// supply with Panic(0x11)). A deposit into an insolvent pool should be refused.
    function test_lpDeposit_intoInsolventPool_isRefused() public {
        fundAccount(alice, 20_000 * USDC);
        openPosition(alice, ETH, 100e18); // the pool takes 100 ETH short: 300k, its exposure cap
        setPrice(ETH, 4500); // alice +150k: more than the pool has
        assertLt(ch.poolEquityWad(), int256(0), "pool under water");

        usdc.mint(bob, 10_000 * USDC);
        vm.startPrank(bob);
        usdc.approve(address(pool), 10_000 * USDC);
        try pool.deposit(10_000 * USDC, bob) returns (uint256 shares) {
            vm.stopPrank();
            assertEq(pool.convertToAssets(shares), 10_000 * USDC, "the deposit vanished into the deficit");
        } catch {
            vm.stopPrank();
        }
    }
}
