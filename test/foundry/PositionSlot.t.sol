// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../contracts/interfaces/IClearingHouse.sol";
import {AttackBase} from "./attacks/AttackBase.sol";

/// @title A position is one slot (size, open notional, funding index at its last settlement): its bounds
/// are checked on every write, and the funding basis it reports is the one a full-width field held.
contract PositionSlotTest is AttackBase {
    /// @dev ClearingHouse storage: `_s` starts at slot 3 (after AccessControlDefaultAdminRules), and the
    /// market states array is its sixth slot (pool, totalBadDebt, risk x2, configs, states).
    uint256 private constant STATES_SLOT = 3 + 5;

    function setUp() public {
        setUpProtocol(5_000_000 * USDC, 100_000 * USDC);
        fundAccount(alice, 20_000 * USDC);
        fundAccount(bob, 20_000 * USDC);
    }

    function _setFundingIndex(uint256 marketId, int256 indexWad) private {
        bytes32 slot = bytes32(uint256(keccak256(abi.encode(STATES_SLOT))) + 3 * marketId);
        uint256 word = uint256(vm.load(address(ch), slot));
        // cumFundingWad is the slot's low 104 bits (the funding rate, the time and the ADL policy above).
        uint256 mask = (uint256(1) << 104) - 1;
        word = (word & ~mask) | (uint256(indexWad) & mask);
        vm.store(address(ch), slot, bytes32(word));
        assertEq(ch.marketState(marketId).cumFundingWad, indexWad, "index written");
    }

    function test_trade_sizeBeyondSlot_reverts() public {
        int256 size = int256(1) << 87;
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.TradePositionOutOfRange.selector, alice, ETH, size, int256(0))
        );
        ch.trade(ETH, size, type(uint256).max);
    }

    function test_positionOf_basisIsSizeTimesIndexAtSettlement() public {
        openPosition(bob, ETH, -30e18); // skew: funding accrues
        openPosition(alice, ETH, 7e18);
        vm.warp(block.timestamp + 3 days);
        refreshPrices();
        openPosition(alice, ETH, 3e18); // settles alice's funding at the index now
        int256 index = ch.marketState(ETH).cumFundingWad;
        assertTrue(index != 0, "funding accrued");
        IClearingHouse.Position memory p = ch.positionOf(alice, ETH);
        int256 product = int256(p.sizeWad) * index;
        int256 floor = product / 1e18 - (product % 1e18 < 0 ? int256(1) : int256(0));
        assertEq(p.fundingBasisWad, floor, "size x index, rounded down");
    }

    /// @notice A market whose index left the slot's range: a position can no longer be partly closed or
    /// increased (it would store the index), a full close still settles and clears it.
    function test_trade_fundingIndexOutOfRange_onlyFullCloseGoesThrough() public {
        openPosition(alice, ETH, 10e18);
        int256 index = int256(type(int80).min) - 1; // a long receives: its equity only grows
        _setFundingIndex(ETH, index);

        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.FundingIndexOutOfRange.selector, ETH, index));
        ch.trade(ETH, -5e18, 0);

        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.FundingIndexOutOfRange.selector, ETH, index));
        ch.trade(ETH, 5e18, type(uint256).max);

        openPosition(alice, ETH, -10e18);
        assertEq(ch.positionOf(alice, ETH).sizeWad, int256(0), "closed in full");
        assertEq(ch.positionOf(alice, ETH).fundingBasisWad, int256(0), "slot cleared");
    }
}
