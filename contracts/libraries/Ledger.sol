// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../interfaces/IInsuranceFund.sol";
import {FixedPointMath} from "./FixedPointMath.sol";
import {FundingMath} from "./FundingMath.sol";
import {OracleLib} from "./OracleLib.sol";
import {PositionMath} from "./PositionMath.sol";

/// @title The clearing house's state and the bookkeeping every entry point shares.
/// @notice Margins move only in pairs (a debit beside credits of the same sum: `payFromPool`,
/// `payFromFund`, a fee, a liquidation's charge) or together with tokens or bad debt, which keeps
/// token balance (WAD) + bad debt == sum of margins. The pool's position is never stored: it is the exact
/// negative of the market's running sums over trader positions. The pool pays traders (profit, funding)
/// only from what its margin holds (`payFromPool`), so its margin never goes negative and no trader is
/// ever paid with tokens that back another account's margin.
library Ledger {
    using SafeCast for uint256;
    using SafeCast for int256;
    using FixedPointMath for uint256;
    using FixedPointMath for int256;

    struct Account {
        int128 marginWad;
        uint128 openMarkets; // bit i set: a position is open in market i
    }

    /// @notice A market's funding state and running sums in three slots (IClearingHouse.MarketState is
    /// their view). The first holds everything the market's funding index needs now (`fundingIndexNow`):
    /// the index, the funding rate at the market's skew and configuration, the time of the last accrual,
    /// and the ADL policy beside them (an ADL call reads the slot anyway to accrue). Valuing a position,
    /// in the traded market or any other, reads that one slot. The rate is FundingMath.ratePerDayWad of
    /// the skew and the configuration, stored whenever either changes (`_change`, `refreshFundingRate`):
    /// between two changes it is what computing it would give. The skew, the traders' net size, is not
    /// stored: it is long minus short open interest (`skewOf`), which every fill moves together.
    /// Bounds: the index in 104 bits (2^103 WAD, about 1e13 quote units per base unit; a position's slot
    /// holds it only to 2^79, PositionStore), the rate in 72 (at most the maximum rate, a uint64),
    /// `lastFundingAt` in seconds in 40 bits (until the year 36812).
    struct MarketStore {
        int104 cumFundingWad;
        int72 fundingRateWad;
        uint40 lastFundingAt;
        IClearingHouse.AdlPolicy adlPolicy;
        int128 sumFundingBasisWad;
        int128 sumOpenNotionalWad;
        uint96 longOpenInterestWad;
        uint96 shortOpenInterestWad;
    }

    /// @notice A trader's position in one slot (IClearingHouse.Position is its view). The funding basis is
    /// not stored: it is size x `fundingIndexWad` rounded down (`PositionMath.fundingBasis`), the index
    /// of the market at the position's last settlement, which is exactly the basis a wider field held
    /// (every settlement stored fundingBasis(size, index) beside the size it used). Bounds, checked on
    /// every write: |size| and |open notional| below 2^87 WAD (about 1.5e8 base units and 1.5e8 quote
    /// units: `TradePositionOutOfRange`), |index| below 2^79 WAD (about 6.0e5 quote units per base unit
    /// of funding paid since listing: `FundingIndexOutOfRange`).
    struct PositionStore {
        int88 sizeWad;
        int88 openNotionalWad;
        int80 fundingIndexWad;
    }

    /// @notice A market's configuration (IClearingHouse.MarketConfig is its view) as stored, four slots in
    /// the order the paths read it: the open-interest cap and the minimum position, which every opening
    /// trade checks, share the third. Both fit 96 bits: ParamBounds.checkMarket caps maxOpenInterest at
    /// 2^96 - 1 and minPositionNotional at 1e9 WAD.
    struct ConfigStore {
        uint64 imRatioWad;
        uint64 mmRatioWad;
        uint64 takerFeeWad;
        uint64 penaltyRatioWad;
        uint64 partialFractionWad;
        uint64 maxFundingRatePerDayWad;
        uint128 skewScaleWad;
        uint96 maxOpenInterestWad;
        uint96 minPositionNotionalWad;
        uint128 minPartialNotionalWad;
    }

    /// @notice The risk parameters (IClearingHouse.RiskParams is their view) as stored: the three a
    /// liquidation reads share one slot. The reward bounds fit 96 bits: ParamBounds.checkRisk caps the
    /// ceiling at 1e6 WAD and the floor at the ceiling.
    struct RiskStore {
        uint64 keeperShareWad;
        uint96 rewardFloorWad;
        uint96 rewardCeilingWad;
        uint64 fundFeeShareWad;
        uint64 poolExposureMultipleWad;
        uint32 socializeGracePeriod;
    }

    /// @notice Slot 0 of the layout (the clearing house's storage slot 3, after access control's), which
    /// every path reads first, holds the market count, the reduce-only switch, the margins of the two
    /// system accounts, the pool and the fund (`accounts` holds every other account's), and whether bad
    /// debt is outstanding: a trade's fee, a liquidation's padding and every payment from the pool write
    /// it, and reading it again is warm. 112 bits hold a margin up to 2.6e15 tokens (WAD); a sum beyond
    /// reverts (SafeCast's error). The bad debt's total and the time it left zero share slot 1.
    struct Layout {
        uint16 marketCount; // configs.length
        bool reduceOnly;
        int112 poolMarginWad;
        int112 fundMarginWad;
        bool badDebtOutstanding; // totalBadDebtWad != 0, for a withdrawal's check without reading slot 1
        uint192 totalBadDebtWad;
        uint64 badDebtSince; // non-zero exactly while totalBadDebtWad is (set when it leaves zero)
        RiskStore risk;
        ConfigStore[] configs;
        MarketStore[] states;
        string[] names;
        mapping(bytes32 nameHash => uint256 idPlusOne) idPlusOne;
        mapping(address account => Account) accounts;
        mapping(address account => mapping(uint256 marketId => PositionStore)) positions;
        mapping(uint256 marketId => uint256[2] bySide) badDebt;
        mapping(uint256 marketId => uint64[2] bySide) badDebtRecordedAt;
        // The oracle adapter's feeds as it last wrote them (IFeedMirror): prices are read from here.
        mapping(uint256 marketId => OracleLib.FeedStore) feeds;
        OracleLib.Sequencer sequencer;
    }

    /// @notice Oracle prices read at most once per market per call.
    struct Prices {
        uint256[] wad;
    }

    /// @dev Transient storage: the batch flag at this slot, market m's price at this slot + 1 + m.
    uint256 private constant BATCH_PRICES_SLOT = uint256(keccak256("bulwark.ledger.batchPrices"));

    function newPrices(Layout storage s) internal view returns (Prices memory) {
        return Prices(new uint256[](s.marketCount));
    }

    /// @notice Market `marketId`'s price read from the feeds' copy (IOracleAdapter.priceWad's checks).
    function feedPrice(Layout storage s, uint256 marketId) internal view returns (uint256) {
        return OracleLib.priceWad(s.feeds[marketId], s.sequencer, marketId);
    }

    /// @notice Whether a liquidation batch is running: its entries share their prices (`sharedPrice`).
    /// The entries of a batch run in one transaction, in which no price can change (nothing a
    /// liquidation calls updates a feed), so each market's feed is read once per batch, not per entry.
    function inBatch() internal view returns (bool open) {
        uint256 slot = BATCH_PRICES_SLOT;
        assembly ("memory-safe") {
            open := tload(slot)
        }
    }

    /// @notice Opens the batch price cache (`liquidateBatch`, under its reentrancy guard).
    function openBatchPrices() internal {
        uint256 slot = BATCH_PRICES_SLOT;
        assembly ("memory-safe") {
            tstore(slot, 1)
        }
    }

    /// @notice Closes the batch price cache and clears its prices, so that nothing later in the same
    /// transaction reads them.
    function closeBatchPrices(Layout storage s) internal {
        uint256 slot = BATCH_PRICES_SLOT;
        uint256 n = s.marketCount;
        assembly ("memory-safe") {
            tstore(slot, 0)
            for { let m := 0 } lt(m, n) { m := add(m, 1) } { tstore(add(slot, add(1, m)), 0) }
        }
    }

    function price(Layout storage s, Prices memory px, uint256 marketId) internal view returns (uint256 p) {
        p = px.wad[marketId];
        if (p == 0) {
            p = feedPrice(s, marketId);
            px.wad[marketId] = p;
        }
    }

    /// @notice `price` inside a liquidation batch (`inBatch`): a market's first read in the batch stores
    /// the price in the batch's transient cache, later entries take it from there.
    function sharedPrice(Layout storage s, Prices memory px, uint256 marketId) internal returns (uint256 p) {
        p = px.wad[marketId];
        if (p != 0) return p;
        uint256 slot = BATCH_PRICES_SLOT + 1 + marketId;
        assembly ("memory-safe") {
            p := tload(slot)
        }
        if (p == 0) {
            p = feedPrice(s, marketId);
            assembly ("memory-safe") {
                tstore(slot, p)
            }
        }
        px.wad[marketId] = p;
    }

    // ---------------------------------------------------------------- markets

    /// @notice Market `marketId`'s configuration, without the array's length read and bounds check: every
    /// caller passes a market id already checked against `marketCount` (or a bit of an open-market
    /// bitmap, set only for listed markets). A ConfigStore takes 4 slots: change the 4 with the struct.
    function config(Layout storage s, uint256 marketId) internal view returns (ConfigStore storage c) {
        ConfigStore[] storage arr = s.configs;
        assembly ("memory-safe") {
            mstore(0, arr.slot)
            c.slot := add(keccak256(0, 32), mul(marketId, 4))
        }
    }

    /// @notice A configuration as stored, from one within ParamBounds.checkMarket (the narrowed fields fit).
    function configStore(IClearingHouse.MarketConfig memory c) internal pure returns (ConfigStore memory) {
        return ConfigStore(
            c.imRatioWad,
            c.mmRatioWad,
            c.takerFeeWad,
            c.penaltyRatioWad,
            c.partialFractionWad,
            c.maxFundingRatePerDayWad,
            c.skewScaleWad,
            uint96(c.maxOpenInterestWad),
            uint96(c.minPositionNotionalWad),
            c.minPartialNotionalWad
        );
    }

    /// @notice The view of a stored configuration (IClearingHouse.marketConfig).
    function configView(ConfigStore storage c) internal view returns (IClearingHouse.MarketConfig memory) {
        return IClearingHouse.MarketConfig(
            c.imRatioWad,
            c.mmRatioWad,
            c.takerFeeWad,
            c.penaltyRatioWad,
            c.partialFractionWad,
            c.maxFundingRatePerDayWad,
            c.skewScaleWad,
            c.maxOpenInterestWad,
            c.minPartialNotionalWad,
            c.minPositionNotionalWad
        );
    }

    /// @notice Market `marketId`'s running sums; as `config`, for a checked id. A MarketStore takes 3 slots: change the 3
    /// with the struct.
    function state(Layout storage s, uint256 marketId) internal view returns (MarketStore storage st) {
        MarketStore[] storage arr = s.states;
        assembly ("memory-safe") {
            mstore(0, arr.slot)
            st.slot := add(keccak256(0, 32), mul(marketId, 3))
        }
    }

    // ---------------------------------------------------------------- margin

    /// @notice Adds `amountWad` to the account's margin, its slot read and written once (the margin in the
    /// low 128 bits, the open-market bitmap above it kept). Reverts as a checked `+=` on the int128 field:
    /// SafeCast's error for an amount beyond int128, Panic(0x11) for a sum beyond it.
    function addMargin(Layout storage s, address account, int256 amountWad) internal {
        int256 amount = amountWad.toInt128();
        Account storage a = s.accounts[account];
        assembly ("memory-safe") {
            let w := sload(a.slot)
            // Both terms are within int128, so the int256 sum is exact; it fits the field iff sign-extending
            // its low 128 bits gives it back.
            let m := add(signextend(15, w), amount)
            if iszero(eq(signextend(15, m), m)) {
                mstore(0, shl(224, 0x4e487b71))
                mstore(4, 0x11)
                revert(0, 0x24)
            }
            let mask := sub(shl(128, 1), 1)
            sstore(a.slot, or(and(w, not(mask)), and(m, mask)))
        }
    }

    /// @notice Whether the account holds no position and a negative margin: its slot is the open-market
    /// bitmap (zero) above a margin whose sign bit is set, so the slot shifted right by 127 bits is 1.
    function owesWhileFlat(Layout storage s, address account) internal view returns (bool owes) {
        Account storage a = s.accounts[account];
        assembly ("memory-safe") {
            owes := eq(shr(127, sload(a.slot)), 1)
        }
    }

    /// @notice Adds `amountWad` to the pool's margin (slot 0).
    function addPoolMargin(Layout storage s, int256 amountWad) internal {
        s.poolMarginWad = (s.poolMarginWad + amountWad).toInt112();
    }

    /// @notice Adds `amountWad` to the fund's margin (slot 0).
    function addFundMargin(Layout storage s, int256 amountWad) internal {
        s.fundMarginWad = (s.fundMarginWad + amountWad).toInt112();
    }

    /// @notice Any account's margin: the pool's and the fund's from slot 0, the others' from `accounts`.
    function marginOf(Layout storage s, address pool, IInsuranceFund fund, address account)
        internal
        view
        returns (int256)
    {
        if (account == pool) return s.poolMarginWad;
        if (account == address(fund)) return s.fundMarginWad;
        return s.accounts[account].marginWad;
    }

    /// @notice `addMargin` for any account, the pool and the fund included (deposits and withdrawals).
    function addMarginOf(Layout storage s, address pool, IInsuranceFund fund, address account, int256 amountWad)
        internal
    {
        if (account == pool) addPoolMargin(s, amountWad);
        else if (account == address(fund)) addFundMargin(s, amountWad);
        else addMargin(s, account, amountWad);
    }

    /// @notice Moves `amountWad` from the pool to `account` when positive (at most the pool's margin; the
    /// rest is forfeited, `PoolPayoutCapped`), from `account` to the pool when negative. Returns what moved
    /// to the account.
    function payFromPool(Layout storage s, address account, uint256 marketId, int256 amountWad)
        internal
        returns (int256 paid)
    {
        paid = amountWad;
        if (amountWad > 0) {
            int256 held = s.poolMarginWad;
            if (held < amountWad) {
                paid = held > 0 ? held : int256(0);
                emit IClearingHouse.PoolPayoutCapped(account, marketId, uint256(amountWad), uint256(paid));
            }
        }
        if (paid == 0) return 0;
        addPoolMargin(s, -paid);
        addMargin(s, account, paid);
    }

    /// @notice Moves `amountWad` from the fund to `account` (a shortfall's cover).
    function payFromFund(Layout storage s, address account, int256 amountWad) internal {
        if (amountWad == 0) return;
        addFundMargin(s, -amountWad);
        addMargin(s, account, amountWad);
    }

    /// @notice The accounts no trade, liquidation or ADL may touch: the pool and the fund.
    function isProtected(address pool, IInsuranceFund fund, address account) internal pure returns (bool) {
        return account == pool || account == address(fund);
    }

    // ---------------------------------------------------------------- positions and funding

    /// @notice The fields of a position's slot, sign-extended (one SLOAD, no memory copy).
    function loadPosition(Layout storage s, address account, uint256 marketId)
        internal
        view
        returns (int256 sizeWad, int256 openNotionalWad, int256 fundingIndexWad)
    {
        PositionStore storage p = s.positions[account][marketId];
        assembly ("memory-safe") {
            let w := sload(p.slot)
            sizeWad := signextend(10, w)
            openNotionalWad := signextend(10, shr(88, w))
            fundingIndexWad := signextend(9, shr(176, w))
        }
    }

    /// @notice The view of a stored position (IClearingHouse.positionOf).
    function positionView(Layout storage s, address account, uint256 marketId)
        internal
        view
        returns (IClearingHouse.Position memory v)
    {
        (int256 size, int256 openNotional, int256 index) = loadPosition(s, account, marketId);
        v.sizeWad = int128(size);
        v.openNotionalWad = int128(openNotional);
        v.fundingBasisWad = PositionMath.fundingBasis(size, index);
    }

    /// @notice Whether a market's funding index fits a position's slot (see PositionStore).
    function indexFits(int256 indexWad) internal pure returns (bool) {
        return indexWad >= type(int80).min && indexWad <= type(int80).max;
    }

    /// @notice Applies a fill of `delta` at `priceWad`: realises PnL on any closed part (moving it between
    /// the account and the pool; a profit at most what the pool holds), adds open notional for any opened
    /// part, and keeps the running sums, open interest and the open-market bitmap exact. Funding must be
    /// settled first. Returns the PnL realised as paid.
    function changePosition(Layout storage s, address account, uint256 marketId, int256 delta, uint256 priceWad)
        internal
        returns (int256 realized)
    {
        (int256 size, int256 openNotional, int256 index) = loadPosition(s, account, marketId);
        return _change(
            s, account, marketId, size, openNotional, delta, priceWad, PositionMath.fundingBasis(size, index)
        );
    }

    /// @notice `settleFunding` then `changePosition`, with the position's slot and the market's sum of
    /// bases written once instead of twice. Returns what the account paid in funding (negative:
    /// received) and the PnL realised as paid.
    function settleAndChange(Layout storage s, address account, uint256 marketId, int256 delta, uint256 priceWad)
        internal
        returns (int256 funding, int256 realized)
    {
        (int256 size, int256 openNotional, int256 index) = loadPosition(s, account, marketId);
        int256 storedBasis; // zero for a flat position
        if (size != 0) {
            storedBasis = PositionMath.fundingBasis(size, index);
            int256 owed = PositionMath.fundingBasis(size, state(s, marketId).cumFundingWad) - storedBasis;
            if (owed != 0) funding = -payFromPool(s, account, marketId, -owed);
        }
        // The settled basis is replaced by the post-fill one: the sum moves from the stored basis directly.
        realized = _change(s, account, marketId, size, openNotional, delta, priceWad, storedBasis);
    }

    /// @dev The fill of `changePosition` on the account's position in the market, read from its slot as
    /// `size` and `openNotionalBefore`; `basisBefore` is its basis as the market's sum holds it.
    function _change(
        Layout storage s,
        address account,
        uint256 marketId,
        int256 size,
        int256 openNotionalBefore,
        int256 delta,
        uint256 priceWad,
        int256 basisBefore
    ) private returns (int256 realized) {
        int256 newSize = size + delta;
        if (newSize < type(int88).min || newSize > type(int88).max) {
            revert IClearingHouse.TradePositionOutOfRange(account, marketId, newSize, openNotionalBefore);
        }
        int256 openNotionalAfter;
        (realized, openNotionalAfter) = PositionMath.fill(size, openNotionalBefore, delta, priceWad);
        realized = payFromPool(s, account, marketId, realized);

        int256 index = _moveMarket(s, marketId, size, newSize, openNotionalAfter - openNotionalBefore, basisBefore);

        _store(s, account, marketId, newSize, openNotionalAfter, newSize == 0 ? int256(0) : index);

        Account storage acc = s.accounts[account];
        if (newSize == 0) acc.openMarkets &= ~uint128(1 << marketId);
        else acc.openMarkets |= uint128(1 << marketId);
    }

    /// @dev The first storage slot of market `marketId`'s MarketStore (see `state`).
    function _stateSlot(Layout storage s, uint256 marketId) private view returns (uint256 slot) {
        MarketStore storage st = state(s, marketId);
        assembly ("memory-safe") {
            slot := st.slot
        }
    }

    /// @dev A fill's moves of its market: the sums and the open interest, each slot read and written once
    /// (`_moveSums`, `_storeOpenInterest`), then the funding rate at the new skew beside the index, which
    /// it returns.
    function _moveMarket(
        Layout storage s,
        uint256 marketId,
        int256 size,
        int256 newSize,
        int256 openNotionalDelta,
        int256 basisBefore
    ) private returns (int256 index) {
        uint256 base = _stateSlot(s, marketId);
        index = _moveSums(base, newSize, openNotionalDelta, basisBefore);
        _storeRate(s, marketId, base, _storeOpenInterest(base + 2, newSize, size));
    }

    /// @dev Moves the market's sums (the second slot of its MarketStore at `base`, read and written once;
    /// the first field of a slot in its low bits) by a fill: open notional by `openNotionalDelta`, funding
    /// bases from `basisBefore` to the new size's basis at the market's index (from the first slot), which
    /// it returns. The checks and their order are those of the fields updated one by one.
    function _moveSums(uint256 base, int256 newSize, int256 openNotionalDelta, int256 basisBefore)
        private
        returns (int256 index)
    {
        (index,,) = _loadFunding(base);
        (int256 sumBasis, int256 sumOpenNotional) = _loadPair(base + 1);
        int256 basisAfter = PositionMath.fundingBasis(newSize, index);
        sumOpenNotional = (sumOpenNotional + openNotionalDelta).toInt128();
        sumBasis = (sumBasis + basisAfter - basisBefore).toInt128();
        _storePair(base + 1, sumBasis, sumOpenNotional);
    }

    /// @dev The first slot of a MarketStore at `base`, sign-extended: the funding index (bits 0-103), the
    /// rate (104-175) and the time of the last accrual (176-215); the ADL policy above is not decoded.
    function _loadFunding(uint256 base) private view returns (int256 index, int256 rate, uint256 last) {
        assembly ("memory-safe") {
            let w := sload(base)
            index := signextend(12, w)
            rate := signextend(8, shr(104, w))
            last := and(shr(176, w), 0xffffffffff)
        }
    }

    /// @dev Stores the funding rate of market `marketId` at `skew` and its configuration in the first slot
    /// of its MarketStore at `base` (bits 104-175; the rest kept). |rate| is at most the maximum rate, a
    /// uint64, so it fits the int72 field.
    function _storeRate(Layout storage s, uint256 marketId, uint256 base, int256 skew) private {
        ConfigStore storage cfg = config(s, marketId);
        int256 rate = FundingMath.ratePerDayWad(skew, cfg.skewScaleWad, cfg.maxFundingRatePerDayWad);
        assembly ("memory-safe") {
            let mask := shl(104, sub(shl(72, 1), 1))
            sstore(base, or(and(sload(base), not(mask)), and(shl(104, rate), mask)))
        }
    }

    /// @notice Stores market `marketId`'s funding rate for its current skew and configuration (after a
    /// configuration change; the funding so far must be accrued first).
    function refreshFundingRate(Layout storage s, uint256 marketId) internal {
        _storeRate(s, marketId, _stateSlot(s, marketId), skewOf(state(s, marketId)));
    }

    /// @notice The traders' net size in a market: long minus short open interest (every fill moves both
    /// with the size, so this is the sum of every trader's size).
    function skewOf(MarketStore storage st) internal view returns (int256) {
        return int256(uint256(st.longOpenInterestWad)) - int256(uint256(st.shortOpenInterestWad));
    }

    /// @dev A slot holding two int128 fields, sign-extended: `lo` in the low 128 bits, `hi` above.
    function _loadPair(uint256 slot) private view returns (int256 lo, int256 hi) {
        assembly ("memory-safe") {
            let w := sload(slot)
            lo := signextend(15, w)
            hi := sar(128, w)
        }
    }

    /// @dev Writes two int128 fields to a slot; the caller has checked both fit (SafeCast.toInt128).
    function _storePair(uint256 slot, int256 lo, int256 hi) private {
        assembly ("memory-safe") {
            sstore(slot, or(and(lo, sub(shl(128, 1), 1)), shl(128, hi)))
        }
    }

    /// @dev Moves the long and short open interest in a market's third slot from a position of `size` to
    /// one of `newSize` (checked: a total below zero panics, above uint96 is SafeCast's error, the long
    /// side's checks first). Returns the new skew, long minus short.
    function _storeOpenInterest(uint256 slot, int256 newSize, int256 size) private returns (int256 skew) {
        uint256 w;
        assembly ("memory-safe") {
            w := sload(slot)
        }
        uint256 longOi = (uint256(uint96(w)) + newSize.positivePart() - size.positivePart()).toUint96();
        uint256 shortOi =
            (uint256(uint96(w >> 96)) + (-newSize).positivePart() - (-size).positivePart()).toUint96();
        assembly ("memory-safe") {
            sstore(slot, or(shl(96, shortOi), longOi))
        }
        return int256(longOi) - int256(shortOi);
    }

    /// @dev Writes a position's slot, checking the bounds of PositionStore.
    function _store(Layout storage s, address account, uint256 marketId, int256 size, int256 openNotional, int256 index)
        private
    {
        if (
            size < type(int88).min || size > type(int88).max || openNotional < type(int88).min
                || openNotional > type(int88).max
        ) revert IClearingHouse.TradePositionOutOfRange(account, marketId, size, openNotional);
        if (!indexFits(index)) revert IClearingHouse.FundingIndexOutOfRange(marketId, index);
        PositionStore storage p = s.positions[account][marketId];
        assembly ("memory-safe") {
            let mask88 := sub(shl(88, 1), 1)
            let w := or(and(size, mask88), shl(88, and(openNotional, mask88)))
            sstore(p.slot, or(w, shl(176, and(index, sub(shl(80, 1), 1)))))
        }
    }

    /// @notice Moves the funding a position owes since its last settlement from the account to the pool
    /// (or back, at most what the pool holds) and resets its basis. The index must be accrued first.
    /// Returns what the account paid (negative: what it received).
    function settleFunding(Layout storage s, address account, uint256 marketId) internal returns (int256 owed) {
        (int256 size, int256 openNotional, int256 stored) = loadPosition(s, account, marketId);
        if (size == 0) return 0;
        uint256 base = _stateSlot(s, marketId);
        (int256 index,,) = _loadFunding(base);
        int256 basis = PositionMath.fundingBasis(size, index);
        owed = basis - PositionMath.fundingBasis(size, stored);
        if (owed == 0) return 0;
        (int256 sumBasis, int256 sumOpenNotional) = _loadPair(base + 1);
        _storePair(base + 1, (sumBasis + owed).toInt128(), sumOpenNotional);
        _store(s, account, marketId, size, openNotional, index);
        owed = -payFromPool(s, account, marketId, -owed);
    }

    /// @notice Accrues the market's funding index to now at its stored rate (`fundingIndexNow`), and
    /// writes the index and the time: one slot read and written, the rate and the ADL policy kept.
    function accrueFunding(Layout storage s, uint256 marketId, uint256 priceWad) internal {
        uint256 base = _stateSlot(s, marketId);
        (int256 index, int256 rate, uint256 last) = _loadFunding(base);
        if (last == block.timestamp) return;
        // As `fundingIndexNow`: a time before the last accrual (a node's pending block) accrues nothing.
        if (last < block.timestamp) {
            index = (index + FundingMath.indexDeltaWad(rate, block.timestamp - last, priceWad)).toInt104();
        }
        uint256 nowAt = uint40(block.timestamp);
        assembly ("memory-safe") {
            let keep := and(sload(base), not(or(sub(shl(104, 1), 1), shl(176, 0xffffffffff))))
            sstore(base, or(keep, or(and(index, sub(shl(104, 1), 1)), shl(176, nowAt))))
        }
    }

    /// @notice The market's funding index now: the stored index plus the stored rate over the time since
    /// the last accrual, at `priceWad` (one slot read).
    function fundingIndexNow(Layout storage s, uint256 marketId, uint256 priceWad) internal view returns (int256) {
        (int256 index, int256 rate, uint256 last) = _loadFunding(_stateSlot(s, marketId));
        // Accrued in this block already (every state-changing call accrues before it reads the index). A
        // call simulated at a time before the last accrual (a node's pending block) accrues nothing.
        if (last >= block.timestamp) return index;
        return index + FundingMath.indexDeltaWad(rate, block.timestamp - last, priceWad);
    }

    // ---------------------------------------------------------------- health

    /// @notice Equity, initial and maintenance margin of an account at the prices in `px`.
    function health(Layout storage s, address account, Prices memory px)
        internal
        view
        returns (int256 equity, uint256 imr, uint256 mmr)
    {
        equity = s.accounts[account].marginWad;
        uint128 open = s.accounts[account].openMarkets;
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 0) continue;
            (int256 value, uint256 notional) = positionValue(s, account, m, price(s, px, m));
            equity += value;
            ConfigStore storage cfg = config(s, m);
            imr += notional.mulWadUp(cfg.imRatioWad);
            mmr += notional.mulWadUp(cfg.mmRatioWad);
        }
    }

    /// @notice `health`'s equity and maintenance margin alone (a liquidation's check, an ADL haircut's
    /// room): the initial requirement's reads and rounding skipped, the rest the same.
    function maintenanceOf(Layout storage s, address account, Prices memory px)
        internal
        view
        returns (int256 equity, uint256 mmr)
    {
        return _requirement(s, account, px, false);
    }

    /// @notice `health`'s equity and initial margin alone (an opening trade's check).
    function initialOf(Layout storage s, address account, Prices memory px)
        internal
        view
        returns (int256 equity, uint256 imr)
    {
        return _requirement(s, account, px, true);
    }

    /// @dev Equity and one margin requirement (initial or maintenance), each market's notional rounded
    /// up as in `health`.
    function _requirement(Layout storage s, address account, Prices memory px, bool initial)
        private
        view
        returns (int256 equity, uint256 required)
    {
        equity = s.accounts[account].marginWad;
        uint128 open = s.accounts[account].openMarkets;
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 0) continue;
            (int256 value, uint256 notional) = positionValue(s, account, m, price(s, px, m));
            equity += value;
            ConfigStore storage cfg = config(s, m);
            required += notional.mulWadUp(initial ? cfg.imRatioWad : cfg.mmRatioWad);
        }
    }

    /// @notice `health`'s equity alone: the margin requirements' config reads skipped (a check that
    /// needs only solvency, or a score).
    function equityOf(Layout storage s, address account, Prices memory px) internal view returns (int256 equity) {
        equity = s.accounts[account].marginWad;
        uint128 open = s.accounts[account].openMarkets;
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 0) continue;
            (int256 value,) = positionValue(s, account, m, price(s, px, m));
            equity += value;
        }
    }

    /// @notice uPnL minus pending funding of a position, and its notional, at `priceWad`.
    function positionValue(Layout storage s, address account, uint256 marketId, uint256 priceWad)
        internal
        view
        returns (int256 value, uint256 notional)
    {
        (int256 size, int256 openNotional, int256 index) = loadPosition(s, account, marketId);
        int256 pending = PositionMath.fundingBasis(size, fundingIndexNow(s, marketId, priceWad))
            - PositionMath.fundingBasis(size, index);
        value = PositionMath.unrealizedPnl(size, openNotional, priceWad) - pending;
        notional = PositionMath.notional(size, priceWad);
    }

    /// @notice Pool equity: its margin minus the traders' uPnL plus the funding the traders owe.
    function poolEquity(Layout storage s, Prices memory px) internal view returns (int256 equity) {
        equity = s.poolMarginWad;
        uint256 n = s.marketCount;
        for (uint256 m; m < n; ++m) {
            MarketStore storage st = state(s, m);
            int256 sumSize = skewOf(st);
            if (sumSize == 0 && st.sumOpenNotionalWad == 0 && st.sumFundingBasisWad == 0) continue;
            uint256 priceWad = price(s, px, m);
            int256 tradersPnl = PositionMath.unrealizedPnl(sumSize, st.sumOpenNotionalWad, priceWad);
            int256 tradersOwe =
                PositionMath.fundingBasis(sumSize, fundingIndexNow(s, m, priceWad)) - st.sumFundingBasisWad;
            equity += tradersOwe - tradersPnl;
        }
    }

    // ---------------------------------------------------------------- bad debt

    function reduceBadDebt(Layout storage s, uint256 marketId, IClearingHouse.Side side, uint256 amount) internal {
        if (amount == 0) return;
        s.badDebt[marketId][uint256(side)] -= amount;
        uint256 total = s.totalBadDebtWad - amount;
        s.totalBadDebtWad = uint192(total); // below the total before
        if (total == 0) {
            s.badDebtSince = 0;
            s.badDebtOutstanding = false;
        }
    }
}
