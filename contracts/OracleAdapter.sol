// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IOracleAdapter} from "./interfaces/IOracleAdapter.sol";
import {OracleLib} from "./libraries/OracleLib.sol";

/// @title Chainlink oracle adapter
/// @notice One primary feed per market, an optional secondary feed bounding the deviation, and an optional
/// L2 sequencer-uptime feed. The risk admin configures feeds within hard bounds.
contract OracleAdapter is IOracleAdapter, AccessControlDefaultAdminRules {
    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    uint256 public constant MIN_HEARTBEAT = 10;
    uint256 public constant MAX_HEARTBEAT = 2 days;
    uint256 public constant MAX_DEVIATION_WAD = 0.2e18;
    uint256 public constant MAX_GRACE_PERIOD = 1 days;

    /// @dev A market's FeedConfig, plus whether a sequencer feed is set, in the first slot's spare bytes:
    /// a read with no sequencer feed (and no secondary) touches no slot but this one.
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

    mapping(uint256 marketId => FeedStore) internal _feeds;
    AggregatorV3Interface public sequencerFeed;
    uint32 public sequencerGracePeriod;
    /// @dev Every market with a feed, in the order first configured (`setSequencerFeed` flags each).
    uint256[] internal _marketIds;

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
        _feeds[marketId] = FeedStore(
            primary,
            primaryHeartbeat,
            _checkDecimals(primary),
            secondaryDecimals,
            address(secondary) != address(0),
            address(sequencerFeed) != address(0),
            secondary,
            secondaryHeartbeat,
            maxDeviationWad
        );
        emit FeedConfigured(
            marketId, address(primary), primaryHeartbeat, address(secondary), secondaryHeartbeat, maxDeviationWad
        );
    }

    function setSequencerFeed(AggregatorV3Interface feed, uint32 gracePeriod) external onlyRole(RISK_ADMIN_ROLE) {
        _checkBound("sequencerGracePeriod", gracePeriod, 0, MAX_GRACE_PERIOD);
        sequencerFeed = feed;
        sequencerGracePeriod = gracePeriod;
        bool on = address(feed) != address(0);
        uint256 n = _marketIds.length;
        for (uint256 i; i < n; ++i) _feeds[_marketIds[i]].checkSequencer = on;
        emit SequencerFeedConfigured(address(feed), gracePeriod);
    }

    /// @inheritdoc IOracleAdapter
    function priceWad(uint256 marketId) external view returns (uint256 price) {
        FeedStore storage f = _feeds[marketId]; // the second slot read only if needed
        // The first slot once (FeedStore's layout, first field in the low bits): the primary feed (bits
        // 0-159), its heartbeat (160-191) and decimals (192-199), the secondary's decimals (200-207), the
        // hasSecondary (208-215) and checkSequencer (216-223) flags, each stored as 0 or 1.
        uint256 w;
        assembly ("memory-safe") {
            w := sload(f.slot)
        }
        AggregatorV3Interface primary = AggregatorV3Interface(address(uint160(w)));
        if (address(primary) == address(0)) revert OracleFeedMissing(marketId);
        if (uint8(w >> 216) != 0) OracleLib.checkSequencer(sequencerFeed, sequencerGracePeriod);
        price = OracleLib.readWad(primary, uint32(w >> 160), uint8(w >> 192));
        if (uint8(w >> 208) != 0) {
            uint256 second = OracleLib.readWad(f.secondary, f.secondaryHeartbeat, f.secondaryDecimals);
            OracleLib.checkDeviation(price, second, f.maxDeviationWad);
        }
    }

    /// @inheritdoc IOracleAdapter
    function feedConfig(uint256 marketId) external view returns (FeedConfig memory) {
        FeedStore storage f = _feeds[marketId];
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

    function _checkDecimals(AggregatorV3Interface feed) internal view returns (uint8 d) {
        d = feed.decimals();
        _checkBound("decimals", d, 0, 18);
    }

    function _checkBound(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue) internal pure {
        if (value < minValue || value > maxValue) revert OracleConfigOutOfBounds(field, value, minValue, maxValue);
    }
}
