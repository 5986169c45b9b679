// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../../contracts/interfaces/AggregatorV3Interface.sol";
import {IOracleAdapter} from "../../contracts/interfaces/IOracleAdapter.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @title The sequencer check applies to every market, configured before or after the sequencer feed.
contract OracleSequencerTest is Fixture {
    uint256 internal constant LATE_MARKET = 5;

    function setUp() public {
        deployProtocol();
    }

    function test_priceWad_sequencerSetAfterFeeds_everyMarketChecked() public {
        MockAggregator sequencer = new MockAggregator(0, "L2 sequencer", 1, admin); // down
        oracle.setSequencerFeed(sequencer, 600);
        vm.expectRevert(IOracleAdapter.OracleSequencerDown.selector);
        oracle.priceWad(ETH);
        vm.expectRevert(IOracleAdapter.OracleSequencerDown.selector);
        oracle.priceWad(BTC);
    }

    function test_priceWad_feedConfiguredAfterSequencer_checked() public {
        MockAggregator sequencer = new MockAggregator(0, "L2 sequencer", 1, admin); // down
        oracle.setSequencerFeed(sequencer, 600);
        MockAggregator late = new MockAggregator(8, "SOL / USD", 150e8, admin);
        oracle.setFeed(LATE_MARKET, late, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        vm.expectRevert(IOracleAdapter.OracleSequencerDown.selector);
        oracle.priceWad(LATE_MARKET);
    }

    function test_priceWad_sequencerRemoved_noMarketChecked() public {
        MockAggregator sequencer = new MockAggregator(0, "L2 sequencer", 1, admin); // down
        oracle.setSequencerFeed(sequencer, 600);
        MockAggregator late = new MockAggregator(8, "SOL / USD", 150e8, admin);
        oracle.setFeed(LATE_MARKET, late, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        oracle.setSequencerFeed(AggregatorV3Interface(address(0)), 0);
        assertEq(oracle.priceWad(ETH), uint256(3000e18), "ETH priced");
        assertEq(oracle.priceWad(LATE_MARKET), uint256(150e18), "late market priced");
    }

    function test_feedConfig_sequencerFlagNotExposed_sameFieldsAsConfigured() public view {
        IOracleAdapter.FeedConfig memory f = oracle.feedConfig(ETH);
        assertEq(address(f.primary), address(ethFeed), "primary");
        assertEq(uint256(f.primaryHeartbeat), uint256(HEARTBEAT), "heartbeat");
        assertEq(uint256(f.primaryDecimals), 8, "decimals");
        assertTrue(!f.hasSecondary, "no secondary");
    }
}
