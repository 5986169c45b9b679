// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {IFeedMirror} from "./interfaces/IFeedMirror.sol";
import {IInsuranceFund} from "./interfaces/IInsuranceFund.sol";
import {IOracleAdapter} from "./interfaces/IOracleAdapter.sol";
import {FixedPointMath} from "./libraries/FixedPointMath.sol";
import {Ledger} from "./libraries/Ledger.sol";
import {AdlLogic} from "./libraries/AdlLogic.sol";
import {LiquidationLogic} from "./libraries/LiquidationLogic.sol";
import {OracleLib} from "./libraries/OracleLib.sol";
import {ParamBounds} from "./libraries/ParamBounds.sol";
import {PositionMath} from "./libraries/PositionMath.sol";
import {TradeLogic} from "./libraries/TradeLogic.sol";

/// @title Bulwark clearing house
/// @notice Holds the collateral, every account's margin and positions. Trades and withdrawals run in
/// `TradeLogic`, liquidation and bad debt in `LiquidationLogic`, ADL in `AdlLogic`: external libraries that run on this
/// contract's storage.
/// Conservation: token balance (WAD) + bad debt == sum of all margins, pool and fund included.
contract ClearingHouse is IClearingHouse, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;
    using FixedPointMath for uint256;
    using FixedPointMath for int256;
    using Ledger for Ledger.Layout;

    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice May call `autoDeleverage`; trusted to pass the highest-ranked targets (see docs/security.md).
    bytes32 public constant ADL_KEEPER_ROLE = keccak256("ADL_KEEPER_ROLE");
    uint256 public constant MAX_MARKETS = 128;

    IERC20 public immutable collateral;
    uint256 public immutable tokenScale;
    IOracleAdapter public immutable oracle;
    /// @notice The liquidity pool's account and the insurance fund's, both immutable: every path asks
    /// which accounts are protected, and a storage slot would be a cold read on each (the libraries
    /// receive them as arguments, since they cannot read this contract's code). Their margins live in
    /// the first slot of Ledger.Layout, not in `accounts`.
    address public immutable pool;
    IInsuranceFund public immutable fund;

    Ledger.Layout internal _s;

    modifier onlyRiskAdmin() {
        _checkRole(RISK_ADMIN_ROLE);
        _;
    }

    modifier onlyAdlKeeper() {
        _checkRole(ADL_KEEPER_ROLE);
        _;
    }

    /// @param pool_ The liquidity pool's address and `fund_` the insurance fund's, both fixed for good.
    /// They are deployed after this contract, at the addresses their deployer predicts (its next
    /// nonces), and each checks in its constructor that this contract names it.
    constructor(
        IERC20 collateral_,
        IOracleAdapter oracle_,
        address pool_,
        IInsuranceFund fund_,
        RiskParams memory risk,
        address admin
    ) AccessControlDefaultAdminRules(1 days, admin) {
        if (
            address(collateral_) == address(0) || address(oracle_) == address(0) || pool_ == address(0)
                || address(fund_) == address(0)
        ) revert ZeroAddress();
        if (pool_ == address(fund_)) revert AccountsNotDistinct(pool_);
        collateral = collateral_;
        tokenScale = 10 ** (18 - IERC20Metadata(address(collateral_)).decimals());
        oracle = oracle_;
        pool = pool_;
        fund = fund_;
        _setRiskParams(risk);
        emit AccountsLinked(pool_, address(fund_));
    }

    // ================================================================ administration

    function listMarket(string calldata name, MarketConfig calldata config)
        external
        onlyRiskAdmin
        returns (uint256 marketId)
    {
        bytes32 key = keccak256(bytes(name));
        if (_s.idPlusOne[key] != 0) revert MarketNameTaken(name);
        marketId = _s.configs.length;
        if (marketId >= MAX_MARKETS) revert MarketLimitReached(MAX_MARKETS);
        ParamBounds.checkMarket(config, _s.risk.rewardFloorWad);
        _s.configs.push(Ledger.configStore(config));
        _s.marketCount = uint16(marketId + 1);
        _s.states.push(Ledger.MarketStore(0, 0, uint40(block.timestamp), AdlPolicy.Queue, 0, 0, 0, 0));
        _s.names.push(name);
        _s.idPlusOne[key] = marketId + 1;
        emit MarketListed(marketId, name, config);
    }

    function setMarketConfig(uint256 marketId, MarketConfig calldata config) external onlyRiskAdmin {
        _requireMarket(marketId);
        ParamBounds.checkMarket(config, _s.risk.rewardFloorWad);
        _s.accrueFunding(marketId, _s.feedPrice(marketId)); // funding so far at the old parameters
        _s.configs[marketId] = Ledger.configStore(config);
        _s.refreshFundingRate(marketId); // the rate from now on, at the new parameters
        emit MarketConfigured(marketId, config);
    }

    /// @inheritdoc IClearingHouse
    function setAdlPolicy(uint256 marketId, AdlPolicy policy) external onlyRiskAdmin {
        _requireMarket(marketId);
        uint256 debt = _s.badDebt[marketId][0] + _s.badDebt[marketId][1];
        if (debt != 0) revert AdlPolicyLocked(marketId, debt);
        _s.state(marketId).adlPolicy = policy;
        emit AdlPolicySet(marketId, policy);
    }

    function setRiskParams(RiskParams calldata risk) external onlyRiskAdmin {
        _setRiskParams(risk);
    }

    /// @notice The guardian's switch: reduce-only allows closing, liquidation, ADL and withdrawals of free
    /// margin, and refuses every trade that adds risk.
    function setReduceOnly(bool on) external onlyRole(GUARDIAN_ROLE) {
        _s.reduceOnly = on;
        emit ReduceOnlySet(msg.sender, on);
    }

    // ================================================================ oracle feeds

    /// @inheritdoc IFeedMirror
    function syncFeed(uint256 marketId, OracleLib.FeedStore calldata feed) external {
        if (msg.sender != address(oracle)) revert FeedMirrorOnlyOracle(msg.sender);
        _s.feeds[marketId] = feed;
    }

    /// @inheritdoc IFeedMirror
    function syncSequencer(OracleLib.Sequencer calldata sequencer) external {
        if (msg.sender != address(oracle)) revert FeedMirrorOnlyOracle(msg.sender);
        _s.sequencer = sequencer;
    }

    // ================================================================ vault

    /// @inheritdoc IClearingHouse
    function deposit(address account, uint256 amountTokens) external nonReentrant {
        if (amountTokens == 0) revert VaultZeroAmount();
        if (account == address(0)) revert ZeroAddress();
        // Interaction before the credit on purpose: only what actually arrived is credited.
        uint256 before = collateral.balanceOf(address(this));
        collateral.safeTransferFrom(msg.sender, address(this), amountTokens);
        uint256 received = collateral.balanceOf(address(this)) - before;
        _s.addMarginOf(pool, fund, account, (received * tokenScale).toInt256());
        emit Deposited(account, msg.sender, received);
    }

    /// @inheritdoc IClearingHouse
    function withdraw(uint256 amountTokens, address to) external nonReentrant {
        TradeLogic.withdraw(_s, collateral, tokenScale, pool, fund, msg.sender, amountTokens, to);
    }

    // ================================================================ trading

    /// @inheritdoc IClearingHouse
    function trade(uint256 marketId, int256 sizeDeltaWad, uint256 acceptablePriceWad) external nonReentrant {
        TradeLogic.trade(_s, pool, fund, msg.sender, marketId, sizeDeltaWad, acceptablePriceWad);
    }

    // ================================================================ liquidation and ADL

    /// @inheritdoc IClearingHouse
    function liquidate(address account, uint256 marketId) external nonReentrant {
        LiquidationLogic.liquidate(_s, pool, fund, account, marketId, msg.sender);
    }

    /// @inheritdoc IClearingHouse
    function liquidateBatch(address[] calldata accounts, uint256[] calldata marketIds)
        external
        nonReentrant
        returns (uint256 liquidated)
    {
        if (accounts.length != marketIds.length) {
            revert LiquidationBatchLengthMismatch(accounts.length, marketIds.length);
        }
        Ledger.openBatchPrices();
        for (uint256 i; i < accounts.length; ++i) {
            uint256 gasBefore = gasleft();
            // A self-call gives each entry its own revert scope, so one failure skips only itself.
            try this.liquidateFromBatch(accounts[i], marketIds[i], msg.sender) {
                ++liquidated;
            } catch (bytes memory reason) {
                // An entry that ran out of gas fails the batch instead of being skipped, so a gas
                // estimate (or a sender) cannot settle on a limit at which every entry is skipped.
                if (reason.length == 0 && gasleft() < gasBefore / 63) revert LiquidationBatchOutOfGas(i);
                emit LiquidationSkipped(accounts[i], marketIds[i], reason);
            }
        }
        _s.closeBatchPrices();
    }

    /// @notice One entry of `liquidateBatch`; callable only by this contract, inside the batch's guard.
    function liquidateFromBatch(address account, uint256 marketId, address keeper) external {
        if (msg.sender != address(this)) revert LiquidationOnlySelfCall(msg.sender);
        LiquidationLogic.liquidate(_s, pool, fund, account, marketId, keeper);
    }

    /// @inheritdoc IClearingHouse
    function autoDeleverage(uint256 marketId, address[] calldata targets)
        external
        nonReentrant
        onlyAdlKeeper
        returns (uint256 absorbedWad)
    {
        return AdlLogic.autoDeleverage(_s, pool, fund, marketId, targets);
    }

    /// @inheritdoc IClearingHouse
    function coverBadDebt(uint256 marketId, Side side) external nonReentrant returns (uint256 coveredWad) {
        return LiquidationLogic.coverBadDebt(_s, fund, marketId, side);
    }

    /// @inheritdoc IClearingHouse
    function socializeBadDebt(uint256 marketId, Side side) external nonReentrant returns (uint256 amountWad) {
        return LiquidationLogic.socializeBadDebt(_s, fund, marketId, side);
    }

    // ================================================================ views

    function reduceOnly() external view returns (bool) {
        return _s.reduceOnly;
    }

    function badDebtSince() external view returns (uint64) {
        return _s.badDebtSince;
    }

    function badDebtRecordedAt(uint256 marketId, Side side) external view returns (uint64) {
        return _s.badDebtRecordedAt[marketId][uint256(side)];
    }

    function totalBadDebtWad() external view returns (uint256) {
        return _s.totalBadDebtWad;
    }

    function marketIdOf(string calldata name) external view returns (uint256) {
        uint256 idPlusOne = _s.idPlusOne[keccak256(bytes(name))];
        if (idPlusOne == 0) revert MarketUnknown(type(uint256).max);
        return idPlusOne - 1;
    }

    function marginOf(address account) external view returns (int256) {
        return _s.marginOf(pool, fund, account);
    }

    function positionOf(address account, uint256 marketId) external view returns (Position memory) {
        return _s.positionView(account, marketId);
    }

    function openMarketsOf(address account) external view returns (uint256[] memory ids) {
        uint128 open = _s.accounts[account].openMarkets;
        uint256 count;
        for (uint128 bits = open; bits != 0; bits &= bits - 1) ++count;
        ids = new uint256[](count);
        uint256 k;
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 1) ids[k++] = m;
        }
    }

    function healthOf(address account) external view returns (Health memory h) {
        h = _healthOf(account, _s.newPrices());
    }

    function healthsOf(address[] calldata accounts) external view returns (Health[] memory hs) {
        hs = new Health[](accounts.length);
        Ledger.Prices memory px = _s.newPrices();
        for (uint256 i; i < accounts.length; ++i) {
            hs[i] = _healthOf(accounts[i], px);
        }
    }

    function adlScoresOf(uint256 marketId, address[] calldata accounts)
        external
        view
        returns (uint256[] memory scores)
    {
        _requireMarket(marketId);
        scores = new uint256[](accounts.length);
        Ledger.Prices memory px = _s.newPrices();
        uint256 price = _s.price(px, marketId);
        for (uint256 i; i < accounts.length; ++i) {
            (int256 size, int256 openNotional,) = _s.loadPosition(accounts[i], marketId);
            if (size == 0 || Ledger.isProtected(pool, fund, accounts[i])) continue;
            int256 equity = _s.equityOf(accounts[i], px);
            int256 pnl = PositionMath.unrealizedPnl(size, openNotional, price);
            scores[i] = PositionMath.adlScore(pnl, openNotional, PositionMath.notional(size, price), equity);
        }
    }

    /// @inheritdoc IClearingHouse
    function adlPolicyOf(uint256 marketId) external view returns (AdlPolicy) {
        _requireMarket(marketId);
        return _s.state(marketId).adlPolicy;
    }

    function poolEquityWad() external view returns (int256) {
        return _s.poolEquity(_s.newPrices());
    }

    function badDebtOf(uint256 marketId, Side side) external view returns (uint256) {
        return _s.badDebt[marketId][uint256(side)];
    }

    function marketCount() external view returns (uint256) {
        return _s.marketCount;
    }

    function marketConfig(uint256 marketId) external view returns (MarketConfig memory) {
        return Ledger.configView(_s.configs[marketId]);
    }

    function marketState(uint256 marketId) external view returns (MarketState memory) {
        Ledger.MarketStore storage st = _s.states[marketId];
        return MarketState(
            st.cumFundingWad,
            int128(Ledger.skewOf(st)), // within +-(2^96 - 1): open interest is uint96 a side
            st.sumOpenNotionalWad,
            st.sumFundingBasisWad,
            st.longOpenInterestWad,
            st.shortOpenInterestWad,
            st.lastFundingAt
        );
    }

    function marketName(uint256 marketId) external view returns (string memory) {
        return _s.names[marketId];
    }

    function riskParams() external view returns (RiskParams memory) {
        Ledger.RiskStore storage r = _s.risk;
        return RiskParams(
            r.fundFeeShareWad,
            r.poolExposureMultipleWad,
            r.keeperShareWad,
            r.socializeGracePeriod,
            r.rewardFloorWad,
            r.rewardCeilingWad
        );
    }

    function currentFundingIndexWad(uint256 marketId) external view returns (int256) {
        _requireMarket(marketId);
        return _s.fundingIndexNow(marketId, _s.feedPrice(marketId));
    }

    // ================================================================ internals

    function _healthOf(address account, Ledger.Prices memory px) internal view returns (Health memory h) {
        (h.equityWad, h.initialMarginWad, h.maintenanceMarginWad) = _s.health(account, px);
        // The pool and the fund hold no positions; their margins are in the layout's slot 0.
        if (Ledger.isProtected(pool, fund, account)) h.equityWad = _s.marginOf(pool, fund, account);
        h.liquidatable =
            _s.accounts[account].openMarkets != 0 && h.equityWad < h.maintenanceMarginWad.toInt256();
    }

    function _requireMarket(uint256 marketId) internal view {
        if (marketId >= _s.marketCount) revert MarketUnknown(marketId);
    }

    function _setRiskParams(RiskParams memory risk) internal {
        ParamBounds.checkRisk(risk);
        uint256 n = _s.configs.length;
        for (uint256 m; m < n; ++m) ParamBounds.checkMinPosition(Ledger.configView(_s.configs[m]), risk.rewardFloorWad);
        // Within bounds (checkRisk): the rewards are at most 1e6 WAD and fit their 96 bits.
        _s.risk = Ledger.RiskStore(
            risk.keeperShareWad,
            uint96(risk.rewardFloorWad),
            uint96(risk.rewardCeilingWad),
            risk.fundFeeShareWad,
            risk.poolExposureMultipleWad,
            risk.socializeGracePeriod
        );
        emit RiskParamsUpdated(risk);
    }
}
