// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";
import {IFeedMirror} from "./IFeedMirror.sol";

/// @title Bulwark's single place for oracle reads.
/// @notice Every price the protocol uses comes through `priceWad`: a Chainlink answer that is positive,
/// no older than its heartbeat, normalised from the feed's decimals to WAD, optionally checked against a
/// secondary feed, and refused while an L2 sequencer is down or within its grace period after restart.
interface IOracleAdapter {
    /// @notice Feeds of one market, laid out in two storage slots: everything a read without a
    /// secondary feed needs sits in the first.
    /// @param primary Chainlink-compatible feed that sets the price.
    /// @param primaryHeartbeat Maximum age of the primary answer, in seconds.
    /// @param primaryDecimals Decimals of the primary answer, read from the feed when configured.
    /// @param secondaryDecimals Decimals of the secondary answer.
    /// @param hasSecondary Whether a secondary feed is set (kept beside the primary to save a read).
    /// @param secondary Optional second feed (zero address: none).
    /// @param secondaryHeartbeat Maximum age of the secondary answer, in seconds.
    /// @param maxDeviationWad Largest relative gap between the two answers (WAD, 1e18 = 100%).
    struct FeedConfig {
        AggregatorV3Interface primary;
        uint32 primaryHeartbeat;
        uint8 primaryDecimals;
        uint8 secondaryDecimals;
        bool hasSecondary;
        AggregatorV3Interface secondary;
        uint32 secondaryHeartbeat;
        uint64 maxDeviationWad;
    }

    /// @notice A market's feeds were set or replaced.
    event FeedConfigured(
        uint256 indexed marketId,
        address primary,
        uint32 primaryHeartbeat,
        address secondary,
        uint32 secondaryHeartbeat,
        uint64 maxDeviationWad
    );

    /// @notice The L2 sequencer-uptime feed was set (zero address: none) with its grace period.
    event SequencerFeedConfigured(address feed, uint32 gracePeriod);

    /// @notice The clearing house whose copy of the feeds this adapter now writes (IFeedMirror).
    event ClearingHouseBound(address indexed clearingHouse);

    /// @notice The adapter writes one clearing house's copy, named once.
    error OracleAlreadyBound(address clearingHouse);
    /// @notice The clearing house being bound names another adapter as its oracle.
    error OracleNotNamedByClearingHouse(address clearingHouse, address named);

    /// @notice No feed is configured for the market.
    error OracleFeedMissing(uint256 marketId);
    /// @notice A feed answered zero or a negative number.
    error OracleInvalidPrice(address feed, int256 answer);
    /// @notice A feed's answer is older than its heartbeat (or dated in the future).
    error OracleStalePrice(address feed, uint256 updatedAt, uint256 heartbeat);
    /// @notice Primary and secondary answers differ by more than the allowed deviation.
    error OracleDeviationTooLarge(uint256 primaryWad, uint256 secondaryWad, uint256 deviationWad, uint256 maxWad);
    /// @notice The L2 sequencer reports itself down.
    error OracleSequencerDown();
    /// @notice The L2 sequencer restarted less than the grace period ago.
    error OracleSequencerGracePeriod(uint256 startedAt, uint256 gracePeriod);
    /// @notice A configuration value lies outside its hard bounds.
    error OracleConfigOutOfBounds(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue);

    /// @notice Price of one unit of base in quote, WAD; reverts on any stale or invalid read.
    function priceWad(uint256 marketId) external view returns (uint256);

    /// @notice Feeds of a market.
    function feedConfig(uint256 marketId) external view returns (FeedConfig memory);

    /// @notice Names the clearing house that reads prices from its own copy of the feeds, and writes the
    /// copy: every feed configured so far and the sequencer feed, then every later change in the same
    /// transaction. Once, by the default admin; reverts unless the clearing house names this adapter.
    function bindClearingHouse(IFeedMirror clearingHouse_) external;

    /// @notice The bound clearing house (zero until `bindClearingHouse`).
    function clearingHouse() external view returns (IFeedMirror);
}
