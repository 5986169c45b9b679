// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../interfaces/IInsuranceFund.sol";
import {FixedPointMath} from "./FixedPointMath.sol";
import {Ledger} from "./Ledger.sol";
import {LiquidationMath} from "./LiquidationMath.sol";
import {PositionMath} from "./PositionMath.sol";

/// @title Liquidation, shortfall settlement and bad debt (auto-deleveraging is in `AdlLogic`).
/// @notice An external library: the clearing house delegates to it, so it runs on the clearing house's
/// storage and emits the clearing house's events.
library LiquidationLogic {
    using SafeCast for uint256;
    using SafeCast for int256;
    using FixedPointMath for uint256;
    using FixedPointMath for int256;
    using Ledger for Ledger.Layout;

    /// @dev What closing a bankrupt account in every market left behind.
    struct Closure {
        uint256[] losses; // loss net of funding per market, zero where it gained
        IClearingHouse.Side[] sides; // side held per market
        uint256 penaltyWad; // uncapped penalty over every closed notional
        uint256 remainderMarket; // the last market with a loss, else the liquidated (or first) market
    }

    /// @notice Liquidates `account` in `marketId`; see IClearingHouse.liquidate.
    function liquidate(
        Ledger.Layout storage s,
        address pool,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        address keeper
    ) external {
        if (Ledger.isProtected(pool, fund, account)) revert IClearingHouse.AccountProtected(account);
        if (account == keeper) revert IClearingHouse.LiquidationSelf(account);
        if (marketId >= s.marketCount) revert IClearingHouse.MarketUnknown(marketId);

        Ledger.Prices memory px = s.newPrices();
        bool shared = Ledger.inBatch();
        uint128 open = s.accounts[account].openMarkets;
        if (open == 0) revert IClearingHouse.LiquidationNoPosition(account, marketId);
        // Every open market is priced here (the checks below read px.wad directly).
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 1) s.accrueFunding(m, shared ? s.sharedPrice(px, m) : s.price(px, m));
        }
        (int256 equity, uint256 mmr) = s.maintenanceOf(account, px);
        if (equity >= mmr.toInt256()) revert IClearingHouse.LiquidationAccountHealthy(account, equity, mmr);

        if (equity < uint256(s.risk.rewardFloorWad).toInt256()) {
            _liquidateBankrupt(s, px, fund, account, marketId, keeper, equity);
        } else {
            _liquidateMarket(s, px, fund, account, marketId, keeper, equity, mmr);
        }
    }

    /// @dev A partial or full close of one market for an account that can still pay the keeper's floor.
    function _liquidateMarket(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        address keeper,
        int256 equity,
        uint256 mmr
    ) private {
        int256 size = s.positions[account][marketId].sizeWad;
        if (size == 0) revert IClearingHouse.LiquidationNoPosition(account, marketId);
        Ledger.ConfigStore storage cfg = s.config(marketId); // fields read as needed
        uint256 priceWad = px.wad[marketId];
        _requireFirst(s, px, account, marketId, PositionMath.notional(size, priceWad));
        int256 closeSize = _liquidationSize(s, px, account, marketId, size, priceWad, cfg, equity, mmr);

        _close(s, account, marketId, size, closeSize, priceWad);
        LiquidationMath.Split memory sp = _split(s, PositionMath.notional(closeSize, priceWad), cfg, equity);
        _pay(s, account, keeper, sp);
        uint256 shortfall;
        if (closeSize != size) _requireImproved(s, px, account, equity, mmr);
        else if (s.owesWhileFlat(account)) shortfall = _settleFlat(s, fund, account, marketId, size);
        emit IClearingHouse.Liquidated(
            account, marketId, keeper, sp.penaltyWad, sp.rewardWad, sp.paddingWad, shortfall, false
        );
    }

    /// @dev A full close that leaves the account flat and owing: its equity counted a profit the pool's
    /// margin could not pay (forfeited on the close, `PoolPayoutCapped`), so its margin ends negative.
    /// That is a shortfall like a bankrupt account's, settled the same way: the fund pays what it can and
    /// the rest becomes bad debt of this market, on the side the account held. Left unsettled, the
    /// negative margin would be a debt nobody records, owed to whoever withdraws last.
    function _settleFlat(
        Ledger.Layout storage s,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        int256 size
    ) private returns (uint256) {
        uint256 n = s.marketCount;
        Closure memory c = Closure(new uint256[](n), new IClearingHouse.Side[](n), 0, marketId);
        c.sides[marketId] = size > 0 ? IClearingHouse.Side.Long : IClearingHouse.Side.Short;
        return _settleShortfall(s, fund, account, c);
    }

    /// @dev A liquidation that is not a bankruptcy closes the account's first position in this order:
    /// the positions whose close the pool's margin can pay (`_payable`) before those it cannot, then the
    /// larger notional. The notional keeps a keeper from picking a small position that frees less margin
    /// than the reward it collects. The payable order keeps an account liquidatable when its largest
    /// position is a profit the pool's margin cannot pay: closing that one would forfeit the profit and
    /// grow the deficit, where closing a losing leg frees its margin and pays the pool. The named
    /// position's payability is read only when the account holds another market.
    function _requireFirst(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        address account,
        uint256 marketId,
        uint256 notionalWad
    ) private view {
        uint128 open = s.accounts[account].openMarkets & ~uint128(1 << marketId);
        if (open == 0) return;
        bool named = _payable(s, px, account, marketId);
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 0) continue;
            bool other = _payable(s, px, account, m);
            if (other != named) {
                if (other) revert IClearingHouse.LiquidationNotFirstPosition(account, marketId, m);
                continue;
            }
            if (PositionMath.notional(s.positions[account][m].sizeWad, px.wad[m]) > notionalWad) {
                revert IClearingHouse.LiquidationNotFirstPosition(account, marketId, m);
            }
        }
    }

    /// @dev Whether closing the whole position pays out no more than the pool's margin holds: its value
    /// (uPnL less pending funding, what a full close moves between the account and the pool) is a loss or
    /// a profit of at most the pool's margin.
    function _payable(Ledger.Layout storage s, Ledger.Prices memory px, address account, uint256 m)
        private
        view
        returns (bool)
    {
        (int256 value,) = s.positionValue(account, m, px.wad[m]);
        return value <= s.poolMarginWad;
    }

    /// @dev Closes `closeSize` of the position `size` at `priceWad` after settling its funding; the pool
    /// takes it. The size left, `size - closeSize`, is what `settleAndChange` stored (its fill of
    /// -closeSize), so the event does not read the slot back.
    function _close(
        Ledger.Layout storage s,
        address account,
        uint256 marketId,
        int256 size,
        int256 closeSize,
        uint256 priceWad
    ) private returns (int256 funding, int256 realized) {
        (funding, realized) = s.settleAndChange(account, marketId, -closeSize, priceWad);
        emit IClearingHouse.PositionLiquidated(account, marketId, closeSize, size - closeSize, priceWad, realized, funding);
    }

    /// @dev The partial fraction when the account keeps at least half its maintenance margin, the
    /// position is large enough, the market's funding index fits the slot of a position left open,
    /// closing the fraction strictly shrinks the margin deficit (the maintenance margin it frees exceeds
    /// what the account is charged), and the pool's margin can pay the whole position's close
    /// (`_payable`: a partial close of a profit the pool cannot pay would forfeit part of it and grow the
    /// deficit); otherwise the whole position.
    function _liquidationSize(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        address account,
        uint256 marketId,
        int256 size,
        uint256 priceWad,
        Ledger.ConfigStore storage cfg,
        int256 equity,
        uint256 mmr
    ) private view returns (int256) {
        if (2 * equity < mmr.toInt256() || PositionMath.notional(size, priceWad) < cfg.minPartialNotionalWad) {
            return size;
        }
        // A position left open stores the market's funding index: when it no longer fits, close in full.
        if (!Ledger.indexFits(s.state(marketId).cumFundingWad)) return size;
        int256 part = size.abs().mulWadDown(cfg.partialFractionWad).toInt256();
        if (part == 0) return size;
        if (size < 0) part = -part;
        uint256 partNotional = PositionMath.notional(part, priceWad);
        uint256 charge = _split(s, partNotional, cfg, equity).chargeWad;
        if (partNotional.mulWadDown(cfg.mmRatioWad) <= charge) return size;
        return _payable(s, px, account, marketId) ? part : size;
    }

    /// @dev The post-state re-check of a partial liquidation: the margin deficit must have shrunk.
    function _requireImproved(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        address account,
        int256 equityBefore,
        uint256 mmrBefore
    ) private view {
        (int256 equityAfter, uint256 mmrAfter) = s.maintenanceOf(account, px);
        int256 deficitBefore = mmrBefore.toInt256() - equityBefore;
        int256 deficitAfter = mmrAfter.toInt256() - equityAfter;
        if (deficitAfter >= deficitBefore) {
            revert IClearingHouse.LiquidationNotImproving(account, deficitBefore, deficitAfter);
        }
    }

    /// @dev Closes every position of an account whose equity cannot pay the keeper's floor, then settles
    /// the shortfall on the now flat account: the fund pays what it can, the rest becomes bad debt of the
    /// markets where the account lost, on the side it held there, and its margin is reset to zero.
    function _liquidateBankrupt(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        address keeper,
        int256 equity
    ) private {
        Closure memory c = _closeEverything(s, px, account, marketId);
        Ledger.RiskStore storage risk = s.risk;
        LiquidationMath.Split memory sp =
            LiquidationMath.split(c.penaltyWad, equity, risk.keeperShareWad, risk.rewardFloorWad, risk.rewardCeilingWad);
        _pay(s, account, keeper, sp);
        uint256 shortfall = _settleShortfall(s, fund, account, c);
        emit IClearingHouse.Liquidated(
            account, marketId, keeper, sp.penaltyWad, sp.rewardWad, sp.paddingWad, shortfall, true
        );
    }

    /// @dev The flat account's negative margin, if any: the fund pays what it can, the rest is recorded as
    /// bad debt, and the margin is reset to zero.
    function _settleShortfall(Ledger.Layout storage s, IInsuranceFund fund, address account, Closure memory c)
        private
        returns (uint256 shortfall)
    {
        int256 margin = s.accounts[account].marginWad;
        if (margin >= 0) return 0;
        shortfall = uint256(-margin);
        uint256 covered = fund.coverShortfall(shortfall);
        s.payFromFund(account, covered.toInt256());
        uint256 debt = shortfall - covered;
        if (debt != 0) {
            _recordBadDebt(s, debt, c);
            s.addMargin(account, debt.toInt256());
        }
        emit IClearingHouse.ShortfallSettled(account, shortfall, covered, debt);
    }

    /// @dev Closes every position of `account`, recording per market the loss realised net of funding and
    /// the side held, and summing the uncapped penalty.
    function _closeEverything(Ledger.Layout storage s, Ledger.Prices memory px, address account, uint256 marketId)
        private
        returns (Closure memory c)
    {
        uint256 n = s.marketCount;
        c.losses = new uint256[](n);
        c.sides = new IClearingHouse.Side[](n);
        uint256 lastLoss = type(uint256).max;
        uint256 fallbackMarket = type(uint256).max;
        uint128 open = s.accounts[account].openMarkets;
        for (uint256 m; open >> m != 0; ++m) {
            if ((open >> m) & 1 == 0) continue;
            (int256 loss, uint256 penalty) = _closeAll(s, account, m, px.wad[m], c);
            c.penaltyWad += penalty;
            if (loss > 0) lastLoss = m;
            if (m == marketId || fallbackMarket == type(uint256).max) fallbackMarket = m;
        }
        c.remainderMarket = lastLoss != type(uint256).max ? lastLoss : fallbackMarket;
    }

    /// @dev Closes the whole position in `m`, noting its side and loss in `c`. Returns the loss realised net
    /// of funding (negative: a gain) and the uncapped penalty on the closed notional.
    function _closeAll(Ledger.Layout storage s, address account, uint256 m, uint256 priceWad, Closure memory c)
        private
        returns (int256 loss, uint256 penalty)
    {
        int256 size = s.positions[account][m].sizeWad;
        c.sides[m] = size > 0 ? IClearingHouse.Side.Long : IClearingHouse.Side.Short;
        penalty = PositionMath.notional(size, priceWad).mulWadUp(s.config(m).penaltyRatioWad);
        (int256 funding, int256 realized) = _close(s, account, m, size, size, priceWad);
        loss = funding - realized;
        if (loss > 0) c.losses[m] = uint256(loss);
    }

    /// @dev Attributes `debt` to the markets where the account lost, pro rata to each loss, on the side it
    /// held there; `c.remainderMarket` takes the rounding remainder (all of it when no market lost).
    function _recordBadDebt(Ledger.Layout storage s, uint256 debt, Closure memory c) private {
        uint256 total = s.totalBadDebtWad;
        if (total == 0) {
            s.badDebtSince = uint64(block.timestamp);
            s.badDebtOutstanding = true;
        }
        s.totalBadDebtWad = (total + debt).toUint192();
        uint256 totalLoss;
        for (uint256 m; m < c.losses.length; ++m) totalLoss += c.losses[m];
        uint256 left = debt;
        for (uint256 m; m < c.losses.length && left != 0; ++m) {
            uint256 share = m == c.remainderMarket ? left : (totalLoss == 0 ? 0 : debt * c.losses[m] / totalLoss);
            if (share == 0) continue;
            left -= share;
            s.badDebt[m][uint256(c.sides[m])] += share;
            s.badDebtRecordedAt[m][uint256(c.sides[m])] = uint64(block.timestamp); // each debt its own grace
            emit IClearingHouse.BadDebtRecorded(m, c.sides[m], share, s.totalBadDebtWad);
        }
    }

    function _split(
        Ledger.Layout storage s,
        uint256 closedNotionalWad,
        Ledger.ConfigStore storage cfg,
        int256 equity
    ) private view returns (LiquidationMath.Split memory) {
        Ledger.RiskStore storage risk = s.risk; // fields read as needed
        return LiquidationMath.split(
            closedNotionalWad.mulWadUp(cfg.penaltyRatioWad),
            equity,
            risk.keeperShareWad,
            risk.rewardFloorWad,
            risk.rewardCeilingWad
        );
    }

    /// @dev The account pays reward + padding; the keeper's reward and the fund's padding are credited.
    function _pay(Ledger.Layout storage s, address account, address keeper, LiquidationMath.Split memory sp)
        private
    {
        s.addMargin(account, -sp.chargeWad.toInt256());
        s.addMargin(keeper, sp.rewardWad.toInt256());
        s.addFundMargin(sp.paddingWad.toInt256());
    }

    // ================================================================ bad debt (ADL is in AdlLogic)

    /// @notice See IClearingHouse.coverBadDebt.
    function coverBadDebt(Ledger.Layout storage s, IInsuranceFund fund, uint256 marketId, IClearingHouse.Side side)
        external
        returns (uint256 covered)
    {
        if (marketId >= s.marketCount) revert IClearingHouse.MarketUnknown(marketId);
        uint256 debt = s.badDebt[marketId][uint256(side)];
        if (debt == 0) revert IClearingHouse.BadDebtNone(marketId, side);
        covered = fund.coverShortfall(debt);
        if (covered == 0) revert IClearingHouse.BadDebtFundEmpty(marketId, side);
        s.addFundMargin(-covered.toInt256());
        s.reduceBadDebt(marketId, side, covered);
        emit IClearingHouse.BadDebtCovered(marketId, side, covered, s.totalBadDebtWad);
    }

    /// @notice See IClearingHouse.socializeBadDebt.
    function socializeBadDebt(Ledger.Layout storage s, IInsuranceFund fund, uint256 marketId, IClearingHouse.Side side)
        external
        returns (uint256 amount)
    {
        if (marketId >= s.marketCount) revert IClearingHouse.MarketUnknown(marketId);
        uint256 debt = s.badDebt[marketId][uint256(side)];
        if (debt == 0) revert IClearingHouse.BadDebtNone(marketId, side);
        uint256 socializableAt = uint256(s.badDebtRecordedAt[marketId][uint256(side)]) + s.risk.socializeGracePeriod;
        if (block.timestamp < socializableAt) revert IClearingHouse.BadDebtGracePeriod(socializableAt);
        // The fund pays what it can first: LPs are charged only for what the fund cannot pay now.
        if (fund.availableWad() != 0) {
            uint256 covered = fund.coverShortfall(debt);
            s.addFundMargin(-covered.toInt256());
            s.reduceBadDebt(marketId, side, covered);
            emit IClearingHouse.BadDebtCovered(marketId, side, covered, s.totalBadDebtWad);
            debt -= covered;
        }
        // The pool pays from what its margin holds; any rest stays outstanding until it can.
        amount = debt.min(int256(s.poolMarginWad).positivePart());
        if (amount == 0) return 0;
        s.addPoolMargin(-amount.toInt256());
        s.reduceBadDebt(marketId, side, amount);
        emit IClearingHouse.BadDebtSocialized(marketId, side, amount, s.totalBadDebtWad);
    }
}
