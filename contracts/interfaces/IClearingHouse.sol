// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IFeedMirror} from "./IFeedMirror.sol";
import {IInsuranceFund} from "./IInsuranceFund.sol";

/// @title The clearing house: collateral vault, cross-margin accounts, markets, liquidation and ADL.
/// @notice All quote amounts are WAD (18 decimals); token amounts appear only at the vault boundary and
/// carry `Tokens` in their names. Sizes are signed WAD base units (long > 0). The liquidity pool and the
/// insurance fund are accounts here like any other, except that they never trade and are never liquidated.
interface IClearingHouse is IFeedMirror {
    enum Side {
        Long,
        Short
    }

    /// @notice Per-market risk parameters, each within hard bounds (see `ParamOutOfBounds`).
    /// @param imRatioWad Initial margin ratio; the leverage cap is 1 / imRatio.
    /// @param mmRatioWad Maintenance margin ratio, below imRatio.
    /// @param takerFeeWad Fee on the notional of every trade.
    /// @param penaltyRatioWad Liquidation penalty on the closed notional, below mmRatio.
    /// @param partialFractionWad Share of the position a partial liquidation closes.
    /// @param maxFundingRatePerDayWad Funding rate at or beyond `skewScaleWad` of net trader size.
    /// @param skewScaleWad Net trader size (base) at which funding reaches its maximum rate.
    /// @param maxOpenInterestWad Cap on each side's open interest, in base units.
    /// @param minPartialNotionalWad Positions below this notional are closed in full.
    /// @param minPositionNotionalWad Smallest notional a trade may leave a position at (zero aside); at
    /// least rewardFloor / mmRatio, so an accepted position's maintenance margin pays the keeper's floor.
    struct MarketConfig {
        uint64 imRatioWad;
        uint64 mmRatioWad;
        uint64 takerFeeWad;
        uint64 penaltyRatioWad;
        uint64 partialFractionWad;
        uint64 maxFundingRatePerDayWad;
        uint128 skewScaleWad;
        uint128 maxOpenInterestWad;
        uint128 minPartialNotionalWad;
        uint128 minPositionNotionalWad;
    }

    /// @notice Running sums over every trader position of a market. The pool holds the exact mirror:
    /// its size is -sumSizeWad, its open notional -sumOpenNotionalWad, its funding basis
    /// -sumFundingBasisWad, so the pool's uPnL and pending funding are minus the traders' totals.
    struct MarketState {
        int256 cumFundingWad;
        int256 sumSizeWad;
        int256 sumOpenNotionalWad;
        int256 sumFundingBasisWad;
        uint128 longOpenInterestWad;
        uint128 shortOpenInterestWad;
        uint64 lastFundingAt;
    }

    /// @notice A trader's position in one market.
    /// @param sizeWad Signed size in base units.
    /// @param openNotionalWad Sum of size x entry price over the fills still open (signed like size).
    /// @param fundingBasisWad size x cumulative funding index at the last settlement.
    struct Position {
        int128 sizeWad;
        int128 openNotionalWad;
        int256 fundingBasisWad;
    }

    /// @notice Protocol-wide risk parameters.
    /// @param fundFeeShareWad Share of taker fees paid to the insurance fund; the rest goes to the pool.
    /// @param poolExposureMultipleWad k in max(long, short open interest) x price <= k x pool equity, per
    /// market: the pool's exposure if either side of the book vanished.
    /// @param keeperShareWad Keeper's share of the liquidation penalty, before floor and ceiling.
    /// @param rewardFloorWad Smallest keeper reward (covers gas).
    /// @param rewardCeilingWad Largest keeper reward.
    /// @param socializeGracePeriod Seconds a market side's bad debt must be outstanding, counted from the
    /// last debt recorded on that side, before it can be socialised.
    struct RiskParams {
        uint64 fundFeeShareWad;
        uint64 poolExposureMultipleWad;
        uint64 keeperShareWad;
        uint32 socializeGracePeriod;
        uint128 rewardFloorWad;
        uint128 rewardCeilingWad;
    }

    /// @notice Margin health of an account at current oracle prices.
    struct Health {
        int256 equityWad;
        uint256 initialMarginWad;
        uint256 maintenanceMarginWad;
        bool liquidatable;
    }

    // ---------------------------------------------------------------- events

    event Deposited(address indexed account, address indexed payer, uint256 amountTokens);
    event Withdrawn(address indexed account, address indexed to, uint256 amountTokens);
    /// @notice A trade filled at the oracle price against the pool.
    event PositionChanged(
        address indexed account,
        uint256 indexed marketId,
        int256 sizeDeltaWad,
        int256 newSizeWad,
        uint256 priceWad,
        uint256 feeWad,
        int256 realizedPnlWad,
        int256 fundingPaidWad
    );
    /// @notice Part or all of a position was closed by a liquidation; the pool took it.
    event PositionLiquidated(
        address indexed account,
        uint256 indexed marketId,
        int256 closedSizeWad,
        int256 newSizeWad,
        uint256 priceWad,
        int256 realizedPnlWad,
        int256 fundingPaidWad
    );
    /// @notice Summary of one liquidation call for one account. `shortfallWad` is what the account, flat
    /// after the call, still owed (settled as `ShortfallSettled` says): a bankruptcy's, or a full close's
    /// whose equity counted a profit the pool's margin could not pay.
    event Liquidated(
        address indexed account,
        uint256 indexed marketId,
        address indexed keeper,
        uint256 penaltyWad,
        uint256 rewardWad,
        uint256 paddingWad,
        uint256 shortfallWad,
        bool bankrupt
    );
    /// @notice A batch entry failed and was skipped; `reason` is the revert data.
    event LiquidationSkipped(address indexed account, uint256 indexed marketId, bytes reason);
    /// @notice A liquidated account, now flat, owed `shortfallWad`: the fund paid `coveredWad`, `badDebtWad`
    /// became bad debt, and the account's margin was reset to zero.
    event ShortfallSettled(address indexed account, uint256 shortfallWad, uint256 coveredWad, uint256 badDebtWad);
    event BadDebtRecorded(uint256 indexed marketId, Side side, uint256 amountWad, uint256 totalBadDebtWad);
    event BadDebtCovered(uint256 indexed marketId, Side side, uint256 amountWad, uint256 totalBadDebtWad);
    event BadDebtSocialized(uint256 indexed marketId, Side side, uint256 amountWad, uint256 totalBadDebtWad);
    /// @notice One ADL step: `account` was closed by `closedSizeWad` and `haircutWad` of the profit
    /// that close realised paid down the market's bad debt on the other side.
    event AutoDeleveraged(
        address indexed account,
        uint256 indexed marketId,
        uint256 scoreWad,
        int256 closedSizeWad,
        uint256 priceWad,
        uint256 haircutWad,
        uint256 badDebtRemainingWad
    );
    /// @notice How a market's ADL shares its debt among the winning side (see docs/protocol.md, ADL).
    /// Queue: targets in non-increasing ADL score, each closed as far as the debt left needs.
    /// ProRata: every presented target pays debtTaken x its profit / the presented profit, rounded down
    /// or up so that the shares add up to debtTaken exactly.
    enum AdlPolicy {
        Queue,
        ProRata
    }

    /// @notice The risk admin chose `policy` for `marketId`'s ADL.
    event AdlPolicySet(uint256 indexed marketId, AdlPolicy policy);
    /// @notice A pro-rata ADL call: the set presented held `presentedSizeWad` of the side's
    /// `sideOpenInterestWad` (its coverage, public for anyone to check against the positions) and
    /// `presentedPnlWad` of profit; `debtTakenWad` = min(debt left to the fund, presented profit) was shared.
    event AdlProRataApplied(
        uint256 indexed marketId,
        Side debtSide,
        uint256 targets,
        uint256 presentedPnlWad,
        uint256 presentedSizeWad,
        uint256 sideOpenInterestWad,
        uint256 debtTakenWad,
        uint256 absorbedWad
    );
    /// @notice A trader closed profit while the opposite side's bad debt awaited ADL: the profit paid it first.
    event ProfitHaircutOnClose(address indexed account, uint256 indexed marketId, uint256 haircutWad, uint256 badDebtRemainingWad);
    /// @notice The pool owed `account` `owedWad` (realised profit or funding) and held only `paidWad`: the
    /// rest is forfeited, because paying it would take tokens that back other accounts' margin.
    event PoolPayoutCapped(address indexed account, uint256 indexed marketId, uint256 owedWad, uint256 paidWad);
    event MarketListed(uint256 indexed marketId, string name, MarketConfig config);
    event MarketConfigured(uint256 indexed marketId, MarketConfig config);
    event RiskParamsUpdated(RiskParams params);
    event ReduceOnlySet(address indexed guardian, bool reduceOnly);
    event AccountsLinked(address pool, address fund);

    // ---------------------------------------------------------------- errors

    error VaultZeroAmount();
    error VaultInsufficientMargin(address account, int256 marginWad, uint256 amountWad);
    error VaultBelowInitialMargin(address account, int256 equityAfterWad, uint256 initialMarginWad);
    error VaultPoolExposure(uint256 marketId, uint256 exposureWad, uint256 capWad);
    error VaultBadDebtOutstanding(uint256 totalBadDebtWad);
    error MarketUnknown(uint256 marketId);
    error MarketNameTaken(string name);
    error MarketLimitReached(uint256 maxMarkets);
    error ParamOutOfBounds(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue);
    error AccountProtected(address account);
    /// @notice The constructor was given one address for both the pool and the fund.
    error AccountsNotDistinct(address account);
    error ZeroAddress();
    error TradeZeroSize();
    error TradeSlippage(uint256 priceWad, uint256 acceptablePriceWad);
    error TradeReduceOnly(int256 sizeWad, int256 newSizeWad);
    error TradeMarginInsufficient(address account, int256 equityWad, uint256 initialMarginWad);
    error TradeWouldBankrupt(address account, int256 equityWad);
    error TradeOpenInterestCap(uint256 marketId, uint256 openInterestWad, uint256 capWad);
    /// @notice The pool's exposure in `marketId`, max(long, short open interest) x price, would exceed k x
    /// pool equity.
    error TradePoolExposureCap(uint256 marketId, uint256 exposureWad, uint256 capWad);
    /// @notice The trade would leave a position whose notional is neither zero nor at least the market's
    /// minimum: dust positions cannot pay the keeper that liquidates them.
    error TradePositionBelowMinimum(uint256 marketId, uint256 notionalWad, uint256 minNotionalWad);
    /// @notice The trade would leave a size or an open notional outside what a position's slot holds:
    /// |sizeWad| and |openNotionalWad| at most 2^87 - 1 (about 1.5e8 base or quote units).
    error TradePositionOutOfRange(address account, uint256 marketId, int256 sizeWad, int256 openNotionalWad);
    /// @notice The market's cumulative funding index is outside what a position's slot holds (|index| at most
    /// 2^79 - 1, about 6.0e5 quote units per base unit): positions in it can only be closed in full.
    error FundingIndexOutOfRange(uint256 marketId, int256 indexWad);
    error LiquidationAccountHealthy(address account, int256 equityWad, uint256 maintenanceMarginWad);
    error LiquidationNoPosition(address account, uint256 marketId);
    /// @notice Outside bankruptcy, an account's positions are liquidated in order: those whose close the
    /// pool's margin can pay before those it cannot, then the larger notional; `firstMarketId` precedes.
    error LiquidationNotFirstPosition(address account, uint256 marketId, uint256 firstMarketId);
    error LiquidationSelf(address account);
    error LiquidationNotImproving(address account, int256 deficitBeforeWad, int256 deficitAfterWad);
    error LiquidationBatchLengthMismatch(uint256 accounts, uint256 markets);
    error LiquidationOnlySelfCall(address caller);
    /// @notice Entry `index` of a batch ran out of gas: the batch needs a higher gas limit.
    error LiquidationBatchOutOfGas(uint256 index);
    error AdlNotRequired(uint256 badDebtWad, uint256 fundAvailableWad);
    error AdlNoTargets();
    error AdlTargetIneligible(address target, int256 sizeWad, int256 pnlWad, int256 equityWad);
    error AdlOutOfOrder(address target, uint256 scoreWad, uint256 previousScoreWad);
    /// @notice Closing the target would leave it flat with margin `marginWad` < 0: its profit, which
    /// carried a loss already realised, is more than the pool's margin can pay. ADL takes only profit the
    /// pool pays, so it would absorb nothing and leave a debt nobody records.
    error AdlTargetLeftOwing(address target, int256 marginWad);
    /// @notice A pro-rata set must list targets in strictly ascending address order (no target twice).
    error AdlTargetsNotAscending(address target, address previousTarget);
    /// @notice A market's ADL policy cannot change while either side of it carries bad debt.
    error AdlPolicyLocked(uint256 marketId, uint256 badDebtWad);
    error BadDebtNone(uint256 marketId, Side side);
    error BadDebtGracePeriod(uint256 socializableAt);
    error BadDebtFundEmpty(uint256 marketId, Side side);

    // ---------------------------------------------------------------- vault

    /// @notice Pulls `amountTokens` of collateral from the caller and credits them to `account`.
    function deposit(address account, uint256 amountTokens) external;

    /// @notice Sends `amountTokens` from the caller's margin to `to`. Needs amount <= margin,
    /// equity - amount >= initial margin, and no outstanding bad debt; for the pool, the larger side's open
    /// interest x price <= k x (pool equity - amount) in every market. Works while reduce-only.
    function withdraw(uint256 amountTokens, address to) external;

    // ---------------------------------------------------------------- trading

    /// @notice Changes the caller's position by `sizeDeltaWad` at the oracle price against the pool. The
    /// position must end flat or at least the market's minimum notional; a trade that is not a pure
    /// reduction must keep the pool's exposure (the larger side's open interest x price) within k x its
    /// equity and the caller at initial margin; a pure reduction only needs equity >= 0.
    /// @param acceptablePriceWad Highest price a buy accepts, lowest price a sell accepts.
    function trade(uint256 marketId, int256 sizeDeltaWad, uint256 acceptablePriceWad) external;

    // ---------------------------------------------------------------- liquidation and ADL

    /// @notice Liquidates `account`, which must be below maintenance margin, in `marketId`, which must
    /// hold its largest position by notional; a bankrupt account (equity below the reward floor) is
    /// closed in every market and its shortfall settled.
    /// The caller receives the keeper reward as margin.
    function liquidate(address account, uint256 marketId) external;

    /// @notice Liquidates many accounts; an entry that fails for any reason is skipped, not reverted.
    /// @return liquidated Number of entries that succeeded.
    function liquidateBatch(address[] calldata accounts, uint256[] calldata marketIds) external returns (uint256 liquidated);

    /// @notice Closes profitable `targets` on the side opposite the market's bad debt, in non-increasing
    /// score order, taking haircuts from the profit each close realises until the part of the debt the
    /// insurance fund cannot pay now (debt - available) is exactly zero. A haircut never exceeds the realised
    /// profit, nor what keeps the target at maintenance margin. Only holders of ADL_KEEPER_ROLE may call it
    /// (trusted to pass the highest-ranked targets), and only while that part is not zero.
    /// Under the market's ProRata policy instead: every target (ascending addresses, each an
    /// eligible profitable position on the winning side) pays its share of debtTaken = min(debt - available,
    /// sum of presented profit), share = debtTaken x its profit / presented profit (rounded down, the
    /// remainder one wei each to the first targets whose share was not whole), capped by
    /// what keeps it at maintenance margin; the total never exceeds the debt. Completeness of the set rests
    /// on ADL_KEEPER_ROLE; `AdlProRataApplied` publishes the set's coverage of the side's open interest.
    /// @return absorbedWad The bad debt the haircuts paid down (the queue's doc above applies under Queue).
    function autoDeleverage(uint256 marketId, address[] calldata targets) external returns (uint256 absorbedWad);

    /// @notice The risk admin's choice of ADL policy for `marketId`; refused while the market has bad debt
    /// (`AdlPolicyLocked`), so the policy cannot change in the middle of a deleveraging.
    function setAdlPolicy(uint256 marketId, AdlPolicy policy) external;

    /// @notice The market's ADL policy (Queue unless the risk admin chose otherwise).
    function adlPolicyOf(uint256 marketId) external view returns (AdlPolicy);

    /// @notice Pays down a market side's bad debt from what the insurance fund has available.
    function coverBadDebt(uint256 marketId, Side side) external returns (uint256 coveredWad);

    /// @notice After the side's grace period (counted from its last recorded debt), has the insurance fund
    /// pay what it can of the side's bad debt, then charges the rest to the pool, at most the pool's margin.
    /// @return amountWad What was charged to the pool.
    function socializeBadDebt(uint256 marketId, Side side) external returns (uint256 amountWad);

    // ---------------------------------------------------------------- views

    /// @notice The liquidity pool's account.
    function pool() external view returns (address);
    /// @notice The insurance fund's account.
    function fund() external view returns (IInsuranceFund);
    /// @notice True while the guardian holds the protocol in reduce-only mode.
    function reduceOnly() external view returns (bool);
    /// @notice When outstanding bad debt last rose from zero (zero: none outstanding).
    function badDebtSince() external view returns (uint64);
    /// @notice When bad debt was last recorded on a market side: its grace period runs from there.
    function badDebtRecordedAt(uint256 marketId, Side side) external view returns (uint64);
    /// @notice Id of the market named `name` (e.g. "ETH-USD"); reverts with MarketUnknown if none.
    function marketIdOf(string calldata name) external view returns (uint256);
    /// @notice Settled collateral of an account (may be negative while open profits cover it).
    function marginOf(address account) external view returns (int256);
    function positionOf(address account, uint256 marketId) external view returns (Position memory);
    function openMarketsOf(address account) external view returns (uint256[] memory);
    function healthOf(address account) external view returns (Health memory);
    /// @notice Health of many accounts in one call (the keeper's confirmation view).
    function healthsOf(address[] calldata accounts) external view returns (Health[] memory);
    /// @notice ADL score of each account in `marketId` (zero when not an eligible, profitable position).
    function adlScoresOf(uint256 marketId, address[] calldata accounts) external view returns (uint256[] memory);
    function poolEquityWad() external view returns (int256);
    function badDebtOf(uint256 marketId, Side side) external view returns (uint256);
    function totalBadDebtWad() external view returns (uint256);
    function marketCount() external view returns (uint256);
    function marketConfig(uint256 marketId) external view returns (MarketConfig memory);
    function marketState(uint256 marketId) external view returns (MarketState memory);
    function marketName(uint256 marketId) external view returns (string memory);
    function riskParams() external view returns (RiskParams memory);
    /// @notice Current cumulative funding index, including what has accrued since the last update.
    function currentFundingIndexWad(uint256 marketId) external view returns (int256);
}
