// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {IOracleAdapter} from "../interfaces/IOracleAdapter.sol";

/// @title Reads a Chainlink answer, rejects what cannot be trusted, normalises decimals to WAD.
library OracleLib {
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
