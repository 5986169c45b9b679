// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../interfaces/IInsuranceFund.sol";
import {IOracleAdapter} from "../interfaces/IOracleAdapter.sol";
import {FixedPointMath} from "./FixedPointMath.sol";
import {FundingMath} from "./FundingMath.sol";
import {PositionMath} from "./PositionMath.sol";

/// @title The clearing house's state and the bookkeeping every entry point shares.
/// @notice Margins move only in pairs (`moveMargin`) or together with tokens or bad debt, which keeps
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

    /// @notice A market's running sums, packed in three slots (IClearingHouse.MarketState is their view).
    struct MarketStore {
        int128 cumFundingWad;
        int128 sumFundingBasisWad;
        int128 sumSizeWad;
        int128 sumOpenNotionalWad;
        uint96 longOpenInterestWad;
        uint96 shortOpenInterestWad;
        uint64 lastFundingAt;
    }

    struct Layout {
        address pool;
        bool reduceOnly;
        uint64 badDebtSince; // non-zero exactly while totalBadDebtWad is (set when it leaves zero)
        uint16 marketCount; // configs.length, kept in the slot every call reads first (the pool)
        IInsuranceFund fund;
        uint256 totalBadDebtWad;
        IClearingHouse.RiskParams risk;
        IClearingHouse.MarketConfig[] configs;
        MarketStore[] states;
        string[] names;
        mapping(bytes32 nameHash => uint256 idPlusOne) idPlusOne;
        mapping(address account => Account) accounts;
        mapping(address account => mapping(uint256 marketId => IClearingHouse.Position)) positions;
        mapping(uint256 marketId => uint256[2] bySide) badDebt;
        mapping(uint256 marketId => uint64[2] bySide) badDebtRecordedAt;
    }

    /// @notice Oracle prices read at most once per market per call.
    struct Prices {
        IOracleAdapter oracle;
        uint256[] wad;
    }

    /// @dev Transient storage: the batch flag at this slot, market m's price at this slot + 1 + m.
    uint256 private constant BATCH_PRICES_SLOT = uint256(keccak256("bulwark.ledger.batchPrices"));

    function newPrices(Layout storage s, IOracleAdapter oracle) internal view returns (Prices memory) {
        return Prices(oracle, new uint256[](s.marketCount));
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

    function price(Prices memory px, uint256 marketId) internal view returns (uint256 p) {
        p = px.wad[marketId];
        if (p == 0) {
            p = px.oracle.priceWad(marketId);
            px.wad[marketId] = p;
        }
    }

    /// @notice `price` inside a liquidation batch (`inBatch`): a market's first read in the batch stores
    /// the price in the batch's transient cache, later entries take it from there.
    function sharedPrice(Prices memory px, uint256 marketId) internal returns (uint256 p) {
        p = px.wad[marketId];
        if (p != 0) return p;
        uint256 slot = BATCH_PRICES_SLOT + 1 + marketId;
        assembly ("memory-safe") {
            p := tload(slot)
        }
        if (p == 0) {
            p = px.oracle.priceWad(marketId);
            assembly ("memory-safe") {
                tstore(slot, p)
            }
        }
        px.wad[marketId] = p;
    }

    // ---------------------------------------------------------------- markets

    /// @notice Market `marketId`'s configuration, without the array's length read and bounds check: every
    /// caller passes a market id already checked against `marketCount` (or a bit of an open-market
    /// bitmap, set only for listed markets). A MarketConfig takes 4 slots: change the 4 with the struct.
    function config(Layout storage s, uint256 marketId)
        internal
        view
        returns (IClearingHouse.MarketConfig storage c)
    {
        IClearingHouse.MarketConfig[] storage arr = s.configs;
        assembly ("memory-safe") {
            mstore(0, arr.slot)
            c.slot := add(keccak256(0, 32), mul(marketId, 4))
        }
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

    function addMargin(Layout storage s, address account, int256 amountWad) internal {
        s.accounts[account].marginWad += amountWad.toInt128();
    }

    function moveMargin(Layout storage s, address from, address to, int256 amountWad) internal {
        if (amountWad == 0) return;
        addMargin(s, from, -amountWad);
        addMargin(s, to, amountWad);
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
            int256 held = s.accounts[s.pool].marginWad;
            if (held < amountWad) {
                paid = held > 0 ? held : int256(0);
                emit IClearingHouse.PoolPayoutCapped(account, marketId, uint256(amountWad), uint256(paid));
            }
        }
        moveMargin(s, s.pool, account, paid);
    }

    function isProtected(Layout storage s, address account) internal view returns (bool) {
        return account == s.pool || account == address(s.fund);
    }

    // ---------------------------------------------------------------- positions and funding

    /// @notice Applies a fill of `delta` at `priceWad`: realises PnL on any closed part (moving it between
    /// the account and the pool; a profit at most what the pool holds), adds open notional for any opened
    /// part, and keeps the running sums, open interest and the open-market bitmap exact. Funding must be
    /// settled first. Returns the PnL realised as paid.
    function changePosition(Layout storage s, address account, uint256 marketId, int256 delta, uint256 priceWad)
        internal
        returns (int256 realized)
    {
        IClearingHouse.Position storage p = s.positions[account][marketId];
        return _change(s, p, account, marketId, delta, priceWad, p.fundingBasisWad);
    }

    /// @notice `settleFunding` then `changePosition`, with the position's funding basis and the market's
    /// sum of bases written once instead of twice. Returns what the account paid in funding (negative:
    /// received) and the PnL realised as paid.
    function settleAndChange(Layout storage s, address account, uint256 marketId, int256 delta, uint256 priceWad)
        internal
        returns (int256 funding, int256 realized)
    {
        IClearingHouse.Position storage p = s.positions[account][marketId];
        int256 size = p.sizeWad;
        int256 storedBasis = p.fundingBasisWad;
        if (size != 0) {
            int256 owed = PositionMath.fundingBasis(size, state(s, marketId).cumFundingWad) - storedBasis;
            if (owed != 0) funding = -payFromPool(s, account, marketId, -owed);
        }
        // The settled basis is replaced by the post-fill one: the sum moves from the stored basis directly.
        realized = _change(s, p, account, marketId, delta, priceWad, storedBasis);
    }

    /// @dev The fill of `changePosition` on `p`, the account's position in the market; `basisBefore` is
    /// the position's basis as the market's sum holds it.
    function _change(
        Layout storage s,
        IClearingHouse.Position storage p,
        address account,
        uint256 marketId,
        int256 delta,
        uint256 priceWad,
        int256 basisBefore
    ) private returns (int256 realized) {
        int256 size = p.sizeWad;
        int256 newSize = size + delta;
        int256 openNotionalBefore = p.openNotionalWad;
        int256 openNotionalAfter;
        (realized, openNotionalAfter) = PositionMath.fill(size, openNotionalBefore, delta, priceWad);
        realized = payFromPool(s, account, marketId, realized);

        MarketStore storage st = state(s, marketId);
        int256 basisAfter = PositionMath.fundingBasis(newSize, st.cumFundingWad);
        st.sumSizeWad = (st.sumSizeWad + delta).toInt128();
        st.sumOpenNotionalWad = (st.sumOpenNotionalWad + openNotionalAfter - openNotionalBefore).toInt128();
        st.sumFundingBasisWad = (st.sumFundingBasisWad + basisAfter - basisBefore).toInt128();
        st.longOpenInterestWad =
            (uint256(st.longOpenInterestWad) + newSize.positivePart() - size.positivePart()).toUint96();
        st.shortOpenInterestWad =
            (uint256(st.shortOpenInterestWad) + (-newSize).positivePart() - (-size).positivePart()).toUint96();

        p.sizeWad = newSize.toInt128();
        p.openNotionalWad = openNotionalAfter.toInt128();
        p.fundingBasisWad = basisAfter;

        Account storage acc = s.accounts[account];
        if (newSize == 0) acc.openMarkets &= ~uint128(1 << marketId);
        else acc.openMarkets |= uint128(1 << marketId);
    }

    /// @notice Moves the funding a position owes since its last settlement from the account to the pool
    /// (or back, at most what the pool holds) and resets its basis. The index must be accrued first.
    /// Returns what the account paid (negative: what it received).
    function settleFunding(Layout storage s, address account, uint256 marketId) internal returns (int256 owed) {
        IClearingHouse.Position storage p = s.positions[account][marketId];
        int256 size = p.sizeWad;
        if (size == 0) return 0;
        MarketStore storage st = state(s, marketId);
        int256 basis = PositionMath.fundingBasis(size, st.cumFundingWad);
        owed = basis - p.fundingBasisWad;
        if (owed == 0) return 0;
        st.sumFundingBasisWad = (st.sumFundingBasisWad + owed).toInt128();
        p.fundingBasisWad = basis;
        owed = -payFromPool(s, account, marketId, -owed);
    }

    function accrueFunding(Layout storage s, uint256 marketId, uint256 priceWad) internal {
        MarketStore storage st = state(s, marketId);
        if (st.lastFundingAt == block.timestamp) return;
        st.cumFundingWad = fundingIndexNow(s, marketId, priceWad).toInt128();
        st.lastFundingAt = uint64(block.timestamp);
    }

    function fundingIndexNow(Layout storage s, uint256 marketId, uint256 priceWad) internal view returns (int256) {
        MarketStore storage st = state(s, marketId);
        // Accrued in this block already (every state-changing call accrues before it reads the index).
        if (st.lastFundingAt >= block.timestamp) return st.cumFundingWad;
        IClearingHouse.MarketConfig storage cfg = config(s, marketId);
        int256 rate = FundingMath.ratePerDayWad(st.sumSizeWad, cfg.skewScaleWad, cfg.maxFundingRatePerDayWad);
        // A call simulated at a time before the last accrual (a node's pending block) accrues nothing: the
        // early return above.
        return st.cumFundingWad + FundingMath.indexDeltaWad(rate, block.timestamp - st.lastFundingAt, priceWad);
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
            (int256 value, uint256 notional) = positionValue(s, account, m, price(px, m));
            equity += value;
            IClearingHouse.MarketConfig storage cfg = config(s, m);
            imr += notional.mulWadUp(cfg.imRatioWad);
            mmr += notional.mulWadUp(cfg.mmRatioWad);
        }
    }

    /// @notice uPnL minus pending funding of a position, and its notional, at `priceWad`.
    function positionValue(Layout storage s, address account, uint256 marketId, uint256 priceWad)
        internal
        view
        returns (int256 value, uint256 notional)
    {
        IClearingHouse.Position storage p = s.positions[account][marketId];
        int256 size = p.sizeWad;
        int256 pending =
            PositionMath.fundingBasis(size, fundingIndexNow(s, marketId, priceWad)) - p.fundingBasisWad;
        value = PositionMath.unrealizedPnl(size, p.openNotionalWad, priceWad) - pending;
        notional = PositionMath.notional(size, priceWad);
    }

    /// @notice Pool equity: its margin minus the traders' uPnL plus the funding the traders owe.
    function poolEquity(Layout storage s, Prices memory px) internal view returns (int256 equity) {
        equity = s.accounts[s.pool].marginWad;
        uint256 n = s.marketCount;
        for (uint256 m; m < n; ++m) {
            MarketStore storage st = state(s, m);
            if (st.sumSizeWad == 0 && st.sumOpenNotionalWad == 0 && st.sumFundingBasisWad == 0) continue;
            uint256 priceWad = price(px, m);
            int256 tradersPnl = PositionMath.unrealizedPnl(st.sumSizeWad, st.sumOpenNotionalWad, priceWad);
            int256 tradersOwe =
                PositionMath.fundingBasis(st.sumSizeWad, fundingIndexNow(s, m, priceWad)) - st.sumFundingBasisWad;
            equity += tradersOwe - tradersPnl;
        }
    }

    // ---------------------------------------------------------------- bad debt

    function reduceBadDebt(Layout storage s, uint256 marketId, IClearingHouse.Side side, uint256 amount) internal {
        if (amount == 0) return;
        s.badDebt[marketId][uint256(side)] -= amount;
        uint256 total = s.totalBadDebtWad - amount;
        s.totalBadDebtWad = total;
        if (total == 0) s.badDebtSince = 0;
    }
}
