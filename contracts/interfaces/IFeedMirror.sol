// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IOracleAdapter} from "./IOracleAdapter.sol";
import {OracleLib} from "../libraries/OracleLib.sol";

/// @title A contract that keeps a copy of the oracle adapter's feeds and reads prices from it.
/// @notice The adapter stays the one place feeds are configured: it writes every change through to the
/// copy in the same transaction (`IOracleAdapter.bindClearingHouse`, then every `setFeed` and
/// `setSequencerFeed`), and nothing else may write it. A price read from the copy is the adapter's
/// `priceWad` without the call to the adapter.
interface IFeedMirror {
    /// @notice Only the oracle adapter named at deployment writes the copy.
    error FeedMirrorOnlyOracle(address caller);

    /// @notice The adapter whose feeds this contract copies.
    function oracle() external view returns (IOracleAdapter);

    /// @notice Replaces the copy of market `marketId`'s feeds; only `oracle` may call it.
    function syncFeed(uint256 marketId, OracleLib.FeedStore calldata feed) external;

    /// @notice Replaces the copy of the sequencer-uptime feed; only `oracle` may call it.
    function syncSequencer(OracleLib.Sequencer calldata sequencer) external;
}
