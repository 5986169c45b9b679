// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ClearingHouse} from "../../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {OracleAdapter} from "../../../contracts/OracleAdapter.sol";
import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../../../contracts/interfaces/IInsuranceFund.sol";
import {AggregatorV3Interface} from "../../../contracts/interfaces/AggregatorV3Interface.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockUSDC} from "../../../contracts/mocks/MockUSDC.sol";
import {Test} from "./Test.sol";

/// @title The whole protocol deployed and wired as bulwark/devnet/deploy.py does it, with its default parameters:
/// mock 6-decimal USDC, 8-decimal mock feeds (ETH-USD 3000, BTC-USD 60000, heartbeat 1 h), no secondary feed.
abstract contract Fixture is Test {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant USDC = 1e6;
    uint256 internal constant SCALE = 1e12; // token -> WAD
    uint256 internal constant ETH = 0;
    uint256 internal constant BTC = 1;
    uint32 internal constant HEARTBEAT = 3600;
    uint32 internal constant POOL_COOLDOWN = 4 days;
    uint32 internal constant FUND_COOLDOWN = 7 days;
    uint32 internal constant FUND_WINDOW = 1 days;
    uint64 internal constant FUND_WINDOW_CAP = 0.5e18;
    uint256 internal constant FUND_CAP_TOKENS = 10_000_000 * USDC;
    uint256 internal constant REWARD_FLOOR = 5 * WAD;
    uint256 internal constant REWARD_CEILING = 1_000 * WAD;
    uint32 internal constant GRACE = 1 days;
    uint256 internal constant MIN_POSITION = 250 * WAD; // maintenance margin 6.25 >= the 5 floor

    address internal admin = address(this);
    MockUSDC internal usdc;
    MockAggregator internal ethFeed;
    MockAggregator internal btcFeed;
    OracleAdapter internal oracle;
    ClearingHouse internal ch;
    LiquidityPool internal pool;
    InsuranceFund internal fund;

    /// @notice The clearing house, then the pool and the fund at the next two addresses this contract
    /// creates, which the clearing house is given (and each checks, deploying); then the adapter is bound
    /// to the clearing house, which copies its feeds.
    function deployAccounts(IERC20 token, IOracleAdapter adapter)
        internal
        returns (ClearingHouse c, LiquidityPool p, InsuranceFund f)
    {
        uint256 nonce = vm.getNonce(address(this));
        address poolAt = vm.computeCreateAddress(address(this), nonce + 1);
        address fundAt = vm.computeCreateAddress(address(this), nonce + 2);
        c = new ClearingHouse(token, adapter, poolAt, IInsuranceFund(fundAt), riskParams(), admin);
        p = new LiquidityPool(token, c, POOL_COOLDOWN, admin);
        f = new InsuranceFund(token, c, FUND_COOLDOWN, FUND_WINDOW, FUND_WINDOW_CAP, FUND_CAP_TOKENS, admin, admin);
        assertEq(address(p), poolAt, "pool at its predicted address");
        assertEq(address(f), fundAt, "fund at its predicted address");
        adapter.bindClearingHouse(c);
    }

    function deployProtocol() internal {
        vm.warp(1_700_000_000);
        usdc = new MockUSDC(admin);
        oracle = new OracleAdapter(admin);
        oracle.grantRole(oracle.RISK_ADMIN_ROLE(), admin);
        (ch, pool, fund) = deployAccounts(IERC20(address(usdc)), IOracleAdapter(address(oracle)));
        ch.grantRole(ch.RISK_ADMIN_ROLE(), admin);
        pool.grantRole(pool.RISK_ADMIN_ROLE(), admin);
        fund.grantRole(fund.RISK_ADMIN_ROLE(), admin);
        ch.grantRole(ch.GUARDIAN_ROLE(), admin);

        ethFeed = new MockAggregator(8, "ETH / USD", 3000e8, admin);
        btcFeed = new MockAggregator(8, "BTC / USD", 60_000e8, admin);
        oracle.setFeed(ETH, ethFeed, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        ch.listMarket("ETH-USD", marketConfig(10_000 * WAD, 100_000 * WAD));
        oracle.setFeed(BTC, btcFeed, HEARTBEAT, AggregatorV3Interface(address(0)), 0, 0);
        ch.listMarket("BTC-USD", marketConfig(500 * WAD, 5_000 * WAD));
        vm.label(address(ch), "ClearingHouse");
        vm.label(address(pool), "LiquidityPool");
        vm.label(address(fund), "InsuranceFund");
    }

    function riskParams() internal pure returns (IClearingHouse.RiskParams memory) {
        return IClearingHouse.RiskParams({
            fundFeeShareWad: uint64(WAD / 5),
            poolExposureMultipleWad: uint64(3 * WAD),
            keeperShareWad: uint64(WAD / 5),
            socializeGracePeriod: GRACE,
            rewardFloorWad: uint128(REWARD_FLOOR),
            rewardCeilingWad: uint128(REWARD_CEILING)
        });
    }

    function marketConfig(uint256 skewScaleWad, uint256 maxOpenInterestWad)
        internal
        pure
        returns (IClearingHouse.MarketConfig memory)
    {
        return IClearingHouse.MarketConfig({
            imRatioWad: uint64(WAD / 20),
            mmRatioWad: uint64(WAD / 40),
            takerFeeWad: uint64(5 * WAD / 10_000),
            penaltyRatioWad: uint64(WAD / 100),
            partialFractionWad: uint64(WAD / 2),
            maxFundingRatePerDayWad: uint64(3 * WAD / 1000),
            skewScaleWad: uint128(skewScaleWad),
            maxOpenInterestWad: uint128(maxOpenInterestWad),
            minPartialNotionalWad: uint128(10_000 * WAD),
            minPositionNotionalWad: uint128(MIN_POSITION)
        });
    }

    // ---------------------------------------------------------------- helpers for scenario tests

    function feedOf(uint256 marketId) internal view returns (MockAggregator) {
        return marketId == ETH ? ethFeed : btcFeed;
    }

    /// @notice Publishes `price` (whole dollars) on a market's feed, dated now.
    function setPrice(uint256 marketId, uint256 priceDollars) internal {
        feedOf(marketId).updateAnswer(int256(priceDollars * 1e8));
    }

    function refreshPrices() internal {
        ethFeed.updateAnswer(ethFeed.latestAnswer());
        btcFeed.updateAnswer(btcFeed.latestAnswer());
    }

    function fundAccount(address who, uint256 tokens) internal {
        usdc.mint(who, tokens);
        vm.startPrank(who);
        usdc.approve(address(ch), tokens);
        ch.deposit(who, tokens);
        vm.stopPrank();
    }

    function seedPool(address lp, uint256 tokens) internal {
        usdc.mint(lp, tokens);
        vm.startPrank(lp);
        usdc.approve(address(pool), tokens);
        pool.deposit(tokens, lp);
        vm.stopPrank();
    }

    function stake(address who, uint256 tokens) internal returns (uint256 shares) {
        usdc.mint(who, tokens);
        vm.startPrank(who);
        usdc.approve(address(fund), tokens);
        shares = fund.deposit(tokens, who);
        vm.stopPrank();
    }

    function openPosition(address who, uint256 marketId, int256 sizeWad) internal {
        uint256 limit = sizeWad > 0 ? type(uint256).max : 0;
        vm.prank(who);
        ch.trade(marketId, sizeWad, limit);
    }

    function equityOf(address who) internal view returns (int256) {
        return ch.healthOf(who).equityWad;
    }

    function vaultGap(address[] memory accounts) internal view returns (int256) {
        int256 margins = ch.marginOf(address(pool)) + ch.marginOf(address(fund));
        for (uint256 i; i < accounts.length; ++i) margins += ch.marginOf(accounts[i]);
        int256 assets = int256(usdc.balanceOf(address(ch)) * SCALE + ch.totalBadDebtWad());
        return assets - margins;
    }
}
