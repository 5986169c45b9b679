// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {IOracleAdapter} from "../interfaces/IOracleAdapter.sol";

/// @title Reads a Chainlink answer, rejects what cannot be trusted, normalises decimals to WAD.
/// @notice The feeds of a market as stored (`FeedStore`) and the price read from them (`priceWad`), the
/// same code in the oracle adapter, which configures the feeds, and in the clearing house, which keeps a
/// copy the adapter writes (IFeedMirror) and reads it without a call to the adapter.
library OracleLib {
    /// @notice A market's feeds (IOracleAdapter.FeedConfig is their view), plus whether the sequencer is
    /// checked, in the first slot's spare bytes: a read with no sequencer feed and no secondary touches
    /// no slot but this one.
    struct FeedStore {
        AggregatorV3Interface primary;
        uint32 primaryHeartbeat;
        uint8 primaryDecimals;
        uint8 secondaryDecimals;
        bool hasSecondary;
        bool checkSequencer;
        AggregatorV3Interface secondary;
        uint32 secondaryHeartbeat;
        uint64 maxDeviationWad;
    }

    /// @notice The L2 sequencer-uptime feed (zero: none) and the grace period after its restart.
    struct Sequencer {
        AggregatorV3Interface feed;
        uint32 gracePeriod;
    }

    /// @notice The price of market `marketId` from its feeds `f` (see IOracleAdapter.priceWad): the primary
    /// answer, checked against the secondary when one is set and refused while the sequencer `seq` is down
    /// or in its grace period when the market checks it.
    function priceWad(FeedStore storage f, Sequencer storage seq, uint256 marketId)
        internal
        view
        returns (uint256 price)
    {
        // The first slot once (FeedStore's layout, first field in the low bits): the primary feed (bits
        // 0-159), its heartbeat (160-191) and decimals (192-199), the secondary's decimals (200-207), the
        // hasSecondary (208-215) and checkSequencer (216-223) flags, each stored as 0 or 1.
        uint256 w;
        assembly ("memory-safe") {
            w := sload(f.slot)
        }
        AggregatorV3Interface primary = AggregatorV3Interface(address(uint160(w)));
        if (address(primary) == address(0)) revert IOracleAdapter.OracleFeedMissing(marketId);
        if (uint8(w >> 216) != 0) checkSequencer(seq.feed, seq.gracePeriod);
        price = readWad(primary, uint32(w >> 160), uint8(w >> 192));
        if (uint8(w >> 208) != 0) {
            uint256 second = readWad(f.secondary, f.secondaryHeartbeat, f.secondaryDecimals);
            checkDeviation(price, second, f.maxDeviationWad);
        }
    }

    /// @notice The answer of `feed` in WAD; reverts when it is not positive or older than `heartbeat`.
    function readWad(AggregatorV3Interface feed, uint256 heartbeat, uint8 decimals) internal view returns (uint256) {
        (, int256 answer,, uint256 updatedAt,) = feed.latestRoundData();
        if (answer <= 0) revert IOracleAdapter.OracleInvalidPrice(address(feed), answer);
        if (updatedAt > block.timestamp || block.timestamp - updatedAt > heartbeat) {
            revert IOracleAdapter.OracleStalePrice(address(feed), updatedAt, heartbeat);
        }
        return uint256(answer) * 10 ** (18 - decimals);
    }

    /// @notice Reverts when |primary - secondary| / primary exceeds `maxDeviationWad`.
    function checkDeviation(uint256 primaryWad, uint256 secondaryWad, uint256 maxDeviationWad) internal pure {
        uint256 gap = primaryWad > secondaryWad ? primaryWad - secondaryWad : secondaryWad - primaryWad;
        uint256 deviation = gap * 1e18 / primaryWad;
        if (deviation > maxDeviationWad) {
            revert IOracleAdapter.OracleDeviationTooLarge(primaryWad, secondaryWad, deviation, maxDeviationWad);
        }
    }

    /// @notice Chainlink's L2 sequencer-uptime feed answers 0 when up, 1 when down; `startedAt` is when
    /// that status began. Prices are refused while down and for `gracePeriod` after a restart. A round
    /// with no start time (zero: not yet valid) or one dated in the future counts as a fresh restart.
    function checkSequencer(AggregatorV3Interface feed, uint256 gracePeriod) internal view {
        (, int256 answer, uint256 startedAt,,) = feed.latestRoundData();
        if (answer != 0) revert IOracleAdapter.OracleSequencerDown();
        if (startedAt == 0 || startedAt > block.timestamp || block.timestamp - startedAt <= gracePeriod) {
            revert IOracleAdapter.OracleSequencerGracePeriod(startedAt, gracePeriod);
        }
    }
}
