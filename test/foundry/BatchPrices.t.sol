// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AttackBase} from "./attacks/AttackBase.sol";

/// @title liquidateBatch shares each market's price between its entries, and only within the batch.
contract BatchPricesTest is AttackBase {
    function setUp() public {
        setUpProtocol(5_000_000 * USDC, 100_000 * USDC);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 20_000 * USDC);
        openPosition(alice, ETH, 100e18); // 15x
        openPosition(bob, ETH, 20e18); // 3x
    }

    /// @notice The batch's price cache is cleared when the batch returns: a later batch in the same
    /// transaction (a test function is one) reads the feed again and sees its new answer.
    function test_liquidateBatch_priceMovesBetweenBatches_secondBatchReadsTheNewPrice() public {
        address[] memory accounts = new address[](2);
        uint256[] memory markets = new uint256[](2);
        (accounts[0], accounts[1]) = (alice, bob);
        (markets[0], markets[1]) = (ETH, ETH);

        setPrice(ETH, 2820); // alice liquidatable, bob healthy
        vm.prank(keeper);
        assertEq(ch.liquidateBatch(accounts, markets), 1, "alice only: bob is healthy at 2,820");
        assertEq(ch.positionOf(alice, ETH).sizeWad, int256(0), "alice liquidated");
        assertEq(ch.positionOf(bob, ETH).sizeWad, int256(20e18), "bob untouched");

        setPrice(ETH, 1000); // bob now under water
        vm.prank(keeper);
        assertEq(ch.liquidateBatch(accounts, markets), 1, "bob, at the new price (alice is flat)");
        assertEq(ch.positionOf(bob, ETH).sizeWad, int256(0), "bob liquidated");
        assertTrue(!ch.healthOf(bob).liquidatable, "nothing left to liquidate");
    }

    /// @notice Within a batch every entry is valued at the same feed answer: two entries in one batch
    /// pay exactly what two separate liquidations at that price pay.
    function test_liquidateBatch_twoEntries_sameOutcomeAsSingleLiquidations() public {
        setPrice(ETH, 1000);
        uint256 snap = vm.snapshotState();
        vm.startPrank(keeper);
        ch.liquidate(alice, ETH);
        ch.liquidate(bob, ETH);
        vm.stopPrank();
        int256 keeperSingle = ch.marginOf(keeper);
        int256 poolSingle = ch.marginOf(address(pool));
        vm.revertToState(snap);

        address[] memory accounts = new address[](2);
        uint256[] memory markets = new uint256[](2);
        (accounts[0], accounts[1]) = (alice, bob);
        (markets[0], markets[1]) = (ETH, ETH);
        vm.prank(keeper);
        assertEq(ch.liquidateBatch(accounts, markets), 2, "both liquidated");
        assertEq(ch.marginOf(keeper), keeperSingle, "keeper paid the same");
        assertEq(ch.marginOf(address(pool)), poolSingle, "pool settled the same");
    }
}
