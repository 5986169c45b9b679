// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IFeedMirror} from "./interfaces/IFeedMirror.sol";
import {IOracleAdapter} from "./interfaces/IOracleAdapter.sol";
import {OracleLib} from "./libraries/OracleLib.sol";

/// @title Chainlink oracle adapter
/// @notice One primary feed per market, an optional secondary feed bounding the deviation, and an optional
/// L2 sequencer-uptime feed. The risk admin configures feeds within hard bounds. The clearing house reads
/// prices from its own copy of the feeds, which this adapter writes with every change (IFeedMirror).
contract OracleAdapter is IOracleAdapter, AccessControlDefaultAdminRules {
    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    uint256 public constant MIN_HEARTBEAT = 10;
    uint256 public constant MAX_HEARTBEAT = 2 days;
    uint256 public constant MAX_DEVIATION_WAD = 0.2e18;
    uint256 public constant MAX_GRACE_PERIOD = 1 days;

    mapping(uint256 marketId => OracleLib.FeedStore) internal _feeds;
    OracleLib.Sequencer internal _sequencer;
    /// @dev Every market with a feed, in the order first configured (`setSequencerFeed` flags each).
    uint256[] internal _marketIds;
    /// @inheritdoc IOracleAdapter
    IFeedMirror public clearingHouse;

    constructor(address admin) AccessControlDefaultAdminRules(1 days, admin) {}

    function setFeed(
        uint256 marketId,
        AggregatorV3Interface primary,
        uint32 primaryHeartbeat,
        AggregatorV3Interface secondary,
        uint32 secondaryHeartbeat,
        uint64 maxDeviationWad
    ) external onlyRole(RISK_ADMIN_ROLE) {
        if (address(primary) == address(0)) revert OracleFeedMissing(marketId);
        _checkBound("primaryHeartbeat", primaryHeartbeat, MIN_HEARTBEAT, MAX_HEARTBEAT);
        uint8 secondaryDecimals;
        if (address(secondary) != address(0)) {
            _checkBound("secondaryHeartbeat", secondaryHeartbeat, MIN_HEARTBEAT, MAX_HEARTBEAT);
            _checkBound("maxDeviation", maxDeviationWad, 1, MAX_DEVIATION_WAD);
            secondaryDecimals = _checkDecimals(secondary);
        }
        if (address(_feeds[marketId].primary) == address(0)) _marketIds.push(marketId);
        _feeds[marketId] = OracleLib.FeedStore(
            primary,
            primaryHeartbeat,
            _checkDecimals(primary),
            secondaryDecimals,
            address(secondary) != address(0),
            address(_sequencer.feed) != address(0),
            secondary,
            secondaryHeartbeat,
            maxDeviationWad
        );
        emit FeedConfigured(
            marketId, address(primary), primaryHeartbeat, address(secondary), secondaryHeartbeat, maxDeviationWad
        );
        IFeedMirror mirror = clearingHouse;
        if (address(mirror) != address(0)) mirror.syncFeed(marketId, _feeds[marketId]);
    }

    function setSequencerFeed(AggregatorV3Interface feed, uint32 gracePeriod) external onlyRole(RISK_ADMIN_ROLE) {
        _checkBound("sequencerGracePeriod", gracePeriod, 0, MAX_GRACE_PERIOD);
        _sequencer = OracleLib.Sequencer(feed, gracePeriod);
        bool on = address(feed) != address(0);
        uint256 n = _marketIds.length;
        for (uint256 i; i < n; ++i) _feeds[_marketIds[i]].checkSequencer = on;
        emit SequencerFeedConfigured(address(feed), gracePeriod);
        _syncAll();
    }

    /// @inheritdoc IOracleAdapter
    function bindClearingHouse(IFeedMirror clearingHouse_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(clearingHouse) != address(0)) revert OracleAlreadyBound(address(clearingHouse));
        address named = address(clearingHouse_.oracle());
        if (named != address(this)) revert OracleNotNamedByClearingHouse(address(clearingHouse_), named);
        clearingHouse = clearingHouse_;
        emit ClearingHouseBound(address(clearingHouse_));
        _syncAll();
    }

    /// @notice The L2 sequencer-uptime feed (zero address: none).
    function sequencerFeed() external view returns (AggregatorV3Interface) {
        return _sequencer.feed;
    }

    /// @notice How long after the sequencer's restart prices are still refused, in seconds.
    function sequencerGracePeriod() external view returns (uint32) {
        return _sequencer.gracePeriod;
    }

    /// @inheritdoc IOracleAdapter
    function priceWad(uint256 marketId) external view returns (uint256) {
        return OracleLib.priceWad(_feeds[marketId], _sequencer, marketId);
    }

    /// @inheritdoc IOracleAdapter
    function feedConfig(uint256 marketId) external view returns (FeedConfig memory) {
        OracleLib.FeedStore storage f = _feeds[marketId];
        return FeedConfig(
            f.primary,
            f.primaryHeartbeat,
            f.primaryDecimals,
            f.secondaryDecimals,
            f.hasSecondary,
            f.secondary,
            f.secondaryHeartbeat,
            f.maxDeviationWad
        );
    }

    /// @dev Writes the sequencer feed and every market's feeds to the bound clearing house, if any.
    function _syncAll() internal {
        IFeedMirror mirror = clearingHouse;
        if (address(mirror) == address(0)) return;
        mirror.syncSequencer(_sequencer);
        uint256 n = _marketIds.length;
        for (uint256 i; i < n; ++i) mirror.syncFeed(_marketIds[i], _feeds[_marketIds[i]]);
    }

    function _checkDecimals(AggregatorV3Interface feed) internal view returns (uint8 d) {
        d = feed.decimals();
        _checkBound("decimals", d, 0, 18);
    }

    function _checkBound(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue) internal pure {
        if (value < minValue || value > maxValue) revert OracleConfigOutOfBounds(field, value, minValue, maxValue);
    }
}
