// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @title A Chainlink-compatible aggregator for local and test networks, updated by a feeder role.
/// @notice Emits the same events as Chainlink's aggregators so indexers treat it alike.
contract MockAggregator is AggregatorV3Interface, AccessControl {
    bytes32 public constant FEEDER_ROLE = keccak256("FEEDER_ROLE");

    struct Round {
        int128 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    error MockAggregatorUnknownRound(uint80 roundId);

    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 4;
    uint80 public latestRound;
    mapping(uint80 roundId => Round) internal _rounds;

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer, address admin) {
        decimals = decimals_;
        description = description_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(FEEDER_ROLE, admin);
        _record(initialAnswer, block.timestamp, block.timestamp);
    }

    /// @notice Publishes a new answer dated now.
    function updateAnswer(int256 answer) external onlyRole(FEEDER_ROLE) {
        _record(answer, block.timestamp, block.timestamp);
    }

    /// @notice Publishes a round with explicit timestamps (tests use it to make a feed stale).
    function updateRoundData(int256 answer, uint256 startedAt, uint256 updatedAt) external onlyRole(FEEDER_ROLE) {
        _record(answer, startedAt, updatedAt);
    }

    function latestAnswer() external view returns (int256) {
        return _rounds[latestRound].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return _rounds[latestRound].updatedAt;
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _rounds[roundId];
        if (r.updatedAt == 0) revert MockAggregatorUnknownRound(roundId);
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _rounds[latestRound];
        return (latestRound, r.answer, r.startedAt, r.updatedAt, latestRound);
    }

    function _record(int256 answer, uint256 startedAt, uint256 updatedAt) internal {
        uint80 id = ++latestRound;
        _rounds[id] = Round(SafeCast.toInt128(answer), uint64(startedAt), uint64(updatedAt));
        emit NewRound(id, msg.sender, startedAt);
        emit AnswerUpdated(answer, id, updatedAt);
    }
}
