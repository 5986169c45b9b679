// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {Vm} from "../utils/Vm.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Abusing liquidation: liquidating the healthy, oneself or the protocol's own accounts, on a
/// stale, zero, negative or future-dated price; griefing a batch; a keeper reward beyond its ceiling or
/// paid twice.
contract LiquidationAttacksTest is AttackBase {
    function setUp() public {
        setUpProtocol(5_000_000 * USDC, 100_000 * USDC);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 20_000 * USDC);
        openPosition(alice, ETH, 100e18); // 15x
        openPosition(bob, ETH, 20e18); // 3x: stays healthy
    }

    // ---------------------------------------------------------------- who may be liquidated

    function test_liquidate_healthyAccount_reverts() public {
        IClearingHouse.Health memory h = ch.healthOf(bob);
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(
                IClearingHouse.LiquidationAccountHealthy.selector, bob, h.equityWad, h.maintenanceMarginWad
            )
        );
        ch.liquidate(bob, ETH);
    }

    function test_liquidate_selfAndProtectedAccounts_revert() public {
        setPrice(ETH, 2820);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.LiquidationSelf.selector, alice));
        ch.liquidate(alice, ETH);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AccountProtected.selector, address(pool)));
        ch.liquidate(address(pool), ETH);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AccountProtected.selector, address(fund)));
        ch.liquidate(address(fund), ETH);
    }

    // ---------------------------------------------------------------- prices that cannot be trusted

    function test_liquidate_stalePrice_reverts() public {
        setPrice(ETH, 2820); // liquidatable at this price...
        vm.warp(block.timestamp + HEARTBEAT + 1); // ...which is now older than the heartbeat
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(
                IOracleAdapter.OracleStalePrice.selector, address(ethFeed), block.timestamp - HEARTBEAT - 1, HEARTBEAT
            )
        );
        ch.liquidate(alice, ETH);
        vm.expectRevert(); // the keeper's confirmation view refuses it too
        ch.healthOf(alice);
    }

    function test_liquidate_zeroOrNegativePrice_reverts() public {
        ethFeed.updateAnswer(0);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IOracleAdapter.OracleInvalidPrice.selector, address(ethFeed), 0));
        ch.liquidate(alice, ETH);
        ethFeed.updateAnswer(-1);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IOracleAdapter.OracleInvalidPrice.selector, address(ethFeed), -1));
        ch.liquidate(alice, ETH);
    }

    function test_liquidate_futureDatedPrice_reverts() public {
        ethFeed.updateRoundData(2000e8, block.timestamp + 60, block.timestamp + 60);
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(
                IOracleAdapter.OracleStalePrice.selector, address(ethFeed), block.timestamp + 60, HEARTBEAT
            )
        );
        ch.liquidate(alice, ETH);
    }

    // ---------------------------------------------------------------- batch griefing

    /// @notice Attack: one bad entry (healthy, unknown market, protected, the keeper itself, a duplicate)
    /// makes a batch revert and so protects the liquidatable account in it. Each bad entry is skipped.
    function test_liquidateBatch_badEntriesSkipped_restLiquidated() public {
        setPrice(ETH, 2700); // alice: -30k on 20k, bankrupt; bob healthy
        address[] memory accounts = new address[](6);
        uint256[] memory markets = new uint256[](6);
        (accounts[0], accounts[1], accounts[2]) = (bob, alice, address(pool));
        (accounts[3], accounts[4], accounts[5]) = (keeper, alice, alice);
        (markets[0], markets[1], markets[2], markets[3], markets[4], markets[5]) = (ETH, 99, ETH, ETH, ETH, ETH);
        vm.recordLogs();
        vm.prank(keeper);
        uint256 done = ch.liquidateBatch(accounts, markets);
        assertEq(done, 1, "only alice, once");
        assertEq(ch.positionOf(alice, ETH).sizeWad, int256(0), "alice liquidated");
        assertEq(_count(vm.getRecordedLogs(), IClearingHouse.LiquidationSkipped.selector), 5, "five entries skipped");
        // alice was under water: the fund pays no keeper reward, so the keeper gets what she had, nothing
        assertEq(ch.marginOf(keeper), int256(0), "keeper paid once, from alice's own equity (none left)");
    }

    function test_liquidateBatch_lengthMismatch_reverts() public {
        address[] memory accounts = new address[](2);
        uint256[] memory markets = new uint256[](1);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.LiquidationBatchLengthMismatch.selector, 2, 1));
        ch.liquidateBatch(accounts, markets);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.LiquidationOnlySelfCall.selector, address(this)));
        ch.liquidateFromBatch(alice, ETH, address(this));
    }

    // ---------------------------------------------------------------- keeper reward

    /// @notice A whale's liquidation penalty is large; the keeper's share of it is clamped to the ceiling
    /// and the rest goes to the fund as padding.
    function test_keeperReward_clampedAtCeiling() public {
        fundAccount(carol, 600_000 * USDC);
        openPosition(carol, ETH, 3_000e18); // 9M notional
        setPrice(ETH, 2870); // equity ~210k < maintenance ~215k, above half of it: partial
        uint256 fundBefore = fundMargin();
        vm.recordLogs();
        liquidateAs(keeper, carol, ETH);
        (uint256 penalty, uint256 reward, uint256 padding) = _liquidated(vm.getRecordedLogs());
        assertEq(reward, REWARD_CEILING, "reward at the ceiling");
        assertGt(penalty * 2 / 10, REWARD_CEILING, "the uncapped share was above the ceiling");
        assertEq(padding, penalty - REWARD_CEILING, "the rest is padding");
        assertEq(ch.marginOf(keeper), int256(REWARD_CEILING), "keeper credited the ceiling");
        assertEq(fundMargin() - fundBefore, padding, "fund credited the padding");
        assertEq(ch.positionOf(carol, ETH).sizeWad, int256(1_500e18), "a partial liquidation");
    }

    /// @notice A bankrupt account still pays the floor reward: its equity first, the rest counted in the
    /// shortfall the fund covers.
    /// @notice The fund never pays a keeper: an account under water pays no reward, and its shortfall is
    /// exactly its negative equity (the real trading loss), not the floor on top.
    function test_keeperReward_bankruptUnderWater_fundPaysNoReward() public {
        setPrice(ETH, 2700);
        int256 equity = ch.healthOf(alice).equityWad;
        assertLt(equity, int256(0), "alice is under water");
        vm.recordLogs();
        liquidateAs(keeper, alice, ETH);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (, uint256 reward,) = _liquidated(logs);
        assertEq(reward, 0, "no reward beyond the account's equity");
        assertEq(ch.marginOf(keeper), int256(0), "keeper credited nothing");
        uint256 shortfall = _shortfall(logs);
        assertEq(shortfall, uint256(-equity), "shortfall = the negative equity only");
        assertEq(ch.marginOf(alice), 0, "alice reset to zero");
    }

    /// @notice Attack: call liquidate again on the same account to be paid twice. After a partial
    /// liquidation the account is healthy again; after a full one it has nothing left to liquidate.
    function test_keeperReward_notPaidTwice() public {
        fundAccount(carol, 600_000 * USDC);
        openPosition(carol, ETH, 3_000e18);
        setPrice(ETH, 2870);
        liquidateAs(keeper, carol, ETH); // partial: half closed
        IClearingHouse.Health memory h = ch.healthOf(carol);
        assertTrue(!h.liquidatable, "healthier after the partial liquidation");
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(
                IClearingHouse.LiquidationAccountHealthy.selector, carol, h.equityWad, h.maintenanceMarginWad
            )
        );
        ch.liquidate(carol, ETH);

        setPrice(ETH, 2700);
        liquidateAs(keeper, alice, ETH); // bankrupt: closed in full
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.LiquidationNoPosition.selector, alice, ETH));
        ch.liquidate(alice, ETH);
        // carol's partial paid the ceiling; alice was under water and paid nothing
        assertEq(ch.marginOf(keeper), int256(REWARD_CEILING), "one reward per liquidation");
    }

    // ---------------------------------------------------------------- helpers

    function _count(Vm.Log[] memory logs, bytes32 topic) internal view returns (uint256 n) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == topic) ++n;
        }
    }

    function _liquidated(Vm.Log[] memory logs) internal view returns (uint256 penalty, uint256 reward, uint256 padding) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.Liquidated.selector) {
                (penalty, reward, padding,,) = abi.decode(logs[i].data, (uint256, uint256, uint256, uint256, bool));
                return (penalty, reward, padding);
            }
        }
        revert("no Liquidated event");
    }

    function _shortfall(Vm.Log[] memory logs) internal view returns (uint256 shortfall) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.ShortfallSettled.selector) {
                (shortfall,,) = abi.decode(logs[i].data, (uint256, uint256, uint256));
                return shortfall;
            }
        }
        revert("no ShortfallSettled event");
    }
}
