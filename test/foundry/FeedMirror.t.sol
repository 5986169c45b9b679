// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ClearingHouse} from "../../contracts/ClearingHouse.sol";
import {OracleAdapter} from "../../contracts/OracleAdapter.sol";
import {AggregatorV3Interface} from "../../contracts/interfaces/AggregatorV3Interface.sol";
import {IFeedMirror} from "../../contracts/interfaces/IFeedMirror.sol";
import {IInsuranceFund} from "../../contracts/interfaces/IInsuranceFund.sol";
import {IOracleAdapter} from "../../contracts/interfaces/IOracleAdapter.sol";
import {OracleLib} from "../../contracts/libraries/OracleLib.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @title The clearing house prices from its copy of the adapter's feeds, which only the adapter writes,
/// with every change, in the same transaction.
contract FeedMirrorTest is Fixture {
    address internal constant alice = address(0xA11CE);
    uint256 internal constant LATE_MARKET = 2;

    function setUp() public {
        deployProtocol();
        fundAccount(alice, 10_000e6);
        seedPool(address(0xB0B), 1_000_000e6);
        openPosition(alice, ETH, 1e18); // long 1 ETH at 3,000
    }

    function test_syncFeed_byAnyoneButTheOracle_reverts() public {
        OracleLib.FeedStore memory bogus;
        bogus.primary = AggregatorV3Interface(address(0xBAD));
        bogus.primaryHeartbeat = 1 days;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IFeedMirror.FeedMirrorOnlyOracle.selector, alice));
        ch.syncFeed(ETH, bogus);
        vm.expectRevert(abi.encodeWithSelector(IFeedMirror.FeedMirrorOnlyOracle.selector, address(this)));
        ch.syncSequencer(OracleLib.Sequencer(AggregatorV3Interface(address(0xBAD)), 0));
        assertEq(ch.healthOf(alice).equityWad, equityAt(3000), "still priced from the ETH feed");
    }

    function test_setFeed_newFeed_clearingHouseReadsItAtOnce() public {
        MockAggregator replacement = new MockAggregator(8, "ETH / USD", 2500e8, admin);
        oracle.setFeed(ETH, replacement, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        assertEq(ch.healthOf(alice).equityWad, equityAt(2500), "priced from the replacement");

        // A secondary feed too far from the primary: the clearing house refuses as the adapter does.
        MockAggregator far = new MockAggregator(8, "ETH / USD (2)", 2000e8, admin);
        oracle.setFeed(ETH, replacement, HEARTBEAT, far, HEARTBEAT, 0.05e18);
        vm.expectRevert(
            abi.encodeWithSelector(
                IOracleAdapter.OracleDeviationTooLarge.selector, 2500e18, 2000e18, 0.2e18, 0.05e18
            )
        );
        ch.healthOf(alice);
    }

    function test_setSequencerFeed_down_clearingHouseRefusesPrices() public {
        MockAggregator sequencer = new MockAggregator(0, "L2 sequencer", 1, admin); // down
        oracle.setSequencerFeed(sequencer, 600);
        vm.expectRevert(IOracleAdapter.OracleSequencerDown.selector);
        ch.healthOf(alice);
        vm.prank(alice);
        vm.expectRevert(IOracleAdapter.OracleSequencerDown.selector);
        ch.trade(ETH, -1e18, 0);

        oracle.setSequencerFeed(AggregatorV3Interface(address(0)), 0);
        assertEq(ch.healthOf(alice).equityWad, equityAt(3000), "priced again once the feed is removed");
    }

    function test_feedOfAnUnlistedMarket_copiedBeforeListing() public {
        MockAggregator sol = new MockAggregator(8, "SOL / USD", 150e8, admin);
        oracle.setFeed(LATE_MARKET, sol, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        ch.listMarket("SOL-USD", marketConfig(100_000 * WAD, 1_000_000 * WAD));
        assertEq(ch.currentFundingIndexWad(LATE_MARKET), 0, "listed and priced");
        fundAccount(address(0xCA11), 1_000e6);
        openPosition(address(0xCA11), LATE_MARKET, 10e18);
        assertEq(ch.positionOf(address(0xCA11), LATE_MARKET).openNotionalWad, 1_500e18, "filled at 150");
    }

    function test_bindClearingHouse_twice_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IOracleAdapter.OracleAlreadyBound.selector, address(ch)));
        oracle.bindClearingHouse(ch);
    }

    function test_bindClearingHouse_namingAnotherAdapter_reverts() public {
        OracleAdapter other = new OracleAdapter(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IOracleAdapter.OracleNotNamedByClearingHouse.selector, address(ch), address(oracle))
        );
        other.bindClearingHouse(ch);
    }

    /// @dev A clearing house whose adapter is not yet bound has no feeds: it refuses every price.
    function test_unboundAdapter_clearingHouseHasNoPrices() public {
        OracleAdapter unbound = new OracleAdapter(admin);
        unbound.grantRole(unbound.RISK_ADMIN_ROLE(), admin);
        unbound.setFeed(ETH, ethFeed, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        ClearingHouse lone = new ClearingHouse(
            IERC20(address(usdc)), unbound, address(0x1001), IInsuranceFund(address(0x1002)), riskParams(), admin
        );
        lone.grantRole(lone.RISK_ADMIN_ROLE(), admin);
        lone.listMarket("ETH-USD", marketConfig(10_000 * WAD, 100_000 * WAD));
        vm.expectRevert(abi.encodeWithSelector(IOracleAdapter.OracleFeedMissing.selector, ETH));
        lone.currentFundingIndexWad(ETH);
        unbound.bindClearingHouse(lone);
        assertEq(lone.currentFundingIndexWad(ETH), 0, "priced once bound");
    }

    /// @dev Alice's equity with ETH at `priceDollars`: her margin after the fee plus the long's PnL.
    function equityAt(uint256 priceDollars) internal view returns (int256) {
        int256 margin = ch.marginOf(alice);
        return margin + int256(priceDollars * WAD) - 3000 * int256(WAD);
    }
}
