// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../interfaces/IInsuranceFund.sol";
import {FixedPointMath} from "./FixedPointMath.sol";
import {Ledger} from "./Ledger.sol";
import {PositionMath} from "./PositionMath.sol";

/// @title Auto-deleveraging: the queue by ADL score and the pro-rata share of the winning side.
/// @notice An external library: the clearing house delegates to it, so it runs on the clearing house's
/// storage and emits the clearing house's events. Both policies take a haircut only from the profit a
/// close realises, never more than what keeps the target at maintenance margin, and never more in total
/// than the part of the debt the insurance fund cannot pay now.
library AdlLogic {
    using SafeCast for uint256;
    using SafeCast for int256;
    using FixedPointMath for uint256;
    using FixedPointMath for int256;
    using Ledger for Ledger.Layout;

    /// @dev State carried from one ADL step to the next, and the pool and the fund, the accounts ADL
    /// never targets.
    struct AdlStep {
        uint256 marketId;
        IClearingHouse.Side debtSide;
        uint256 debt;
        uint256 previousScore;
        address pool;
        IInsuranceFund fund;
    }

    /// @dev A pro-rata target as checked in the first pass.
    struct Share {
        int256 size;
        int256 pnl;
        uint256 score;
        uint256 share; // of the debt taken, set by `_allot`
    }

    /// @notice See IClearingHouse.autoDeleverage; the market's policy (IClearingHouse.adlPolicyOf) is read
    /// from the market slot `_begin`'s funding accrual has just read.
    function autoDeleverage(
        Ledger.Layout storage s,
        address pool,
        IInsuranceFund fund,
        uint256 marketId,
        address[] calldata targets
    ) external returns (uint256 absorbed) {
        if (targets.length == 0) revert IClearingHouse.AdlNoTargets();
        (Ledger.Prices memory px, AdlStep memory step) = _begin(s, pool, fund, marketId, targets[0]);
        absorbed = s.state(marketId).adlPolicy == IClearingHouse.AdlPolicy.ProRata
            ? _proRata(s, px, step, targets)
            : _queue(s, px, step, targets);
        s.reduceBadDebt(marketId, step.debtSide, absorbed);
    }

    /// @dev The debt side (opposite the first target's), the part of its debt the fund cannot pay now
    /// (reverts when none) and the market's funding accrued at the price every step uses.
    function _begin(
        Ledger.Layout storage s,
        address pool,
        IInsuranceFund fund,
        uint256 marketId,
        address first
    ) private returns (Ledger.Prices memory px, AdlStep memory step) {
        if (marketId >= s.marketCount) revert IClearingHouse.MarketUnknown(marketId);
        int256 firstSize = s.positions[first][marketId].sizeWad;
        if (firstSize == 0) revert IClearingHouse.AdlTargetIneligible(first, 0, 0, 0);
        // Targets hold the side opposite the bad debt: longs absorb the debt bankrupt shorts left.
        IClearingHouse.Side debtSide = firstSize > 0 ? IClearingHouse.Side.Short : IClearingHouse.Side.Long;
        uint256 debt = s.badDebt[marketId][uint256(debtSide)];
        uint256 available = fund.availableWad();
        // Only the part the fund cannot pay now: a donation below the debt changes how much, not whether.
        if (debt <= available) revert IClearingHouse.AdlNotRequired(debt, available);
        px = s.newPrices();
        s.accrueFunding(marketId, s.price(px, marketId));
        step = AdlStep(marketId, debtSide, debt - available, type(uint256).max, pool, fund);
    }

    // ---------------------------------------------------------------- queue

    /// @dev Targets in the order given, each closed only as far as the debt left needs, until none is left.
    function _queue(Ledger.Layout storage s, Ledger.Prices memory px, AdlStep memory step, address[] calldata targets)
        private
        returns (uint256 absorbed)
    {
        for (uint256 i; i < targets.length && step.debt != 0; ++i) {
            uint256 haircut = _deleverage(s, px, step, targets[i]);
            step.debt -= haircut;
            absorbed += haircut;
        }
    }

    /// @dev One ADL step: recomputes the target's score, requires it not above the previous one, closes
    /// the position (only as far as the debt needs) and takes the haircut from the realised profit.
    function _deleverage(Ledger.Layout storage s, Ledger.Prices memory px, AdlStep memory step, address target)
        private
        returns (uint256 haircut)
    {
        int256 size = _requireWinningSide(s, step, target);
        s.settleFunding(target, step.marketId);
        int256 closeSize;
        {
            (uint256 score, int256 pnl) = _score(s, px, step.marketId, target, size);
            if (score > step.previousScore) revert IClearingHouse.AdlOutOfOrder(target, score, step.previousScore);
            step.previousScore = score;
            closeSize = _closeSizeFor(size, pnl, step.debt);
        }
        haircut = _closeAndCut(s, px, step.marketId, target, closeSize, step.debt);
        emit IClearingHouse.AutoDeleveraged(
            target, step.marketId, step.previousScore, closeSize, px.wad[step.marketId], haircut, step.debt - haircut
        );
    }

    // ---------------------------------------------------------------- pro rata

    /// @dev First pass: every target is checked (ascending, eligible) and its profit summed; second pass:
    /// each pays its share of debtTaken = min(debt, sum(pnl)), in proportion to pnl_i (`_allot`), so
    /// sum(share_i) == debtTaken <= debt. A target's haircut is at most its share (and its realised profit,
    /// and its room above maintenance): nobody pays for another's cap, the part a cap leaves stays as bad
    /// debt for the next call.
    function _proRata(Ledger.Layout storage s, Ledger.Prices memory px, AdlStep memory step, address[] calldata targets)
        private
        returns (uint256 absorbed)
    {
        (Share[] memory shares, uint256 sumPnl, uint256 sumSize) = _present(s, px, step, targets);
        uint256 debtTaken = step.debt.min(sumPnl);
        uint256 sideOi = _sideOpenInterest(s, step);
        _allot(shares, debtTaken, sumPnl);
        for (uint256 i; i < targets.length; ++i) {
            if (shares[i].share != 0) absorbed += _cutShare(s, px, step, targets[i], shares[i], absorbed);
        }
        emit IClearingHouse.AdlProRataApplied(
            step.marketId, step.debtSide, targets.length, sumPnl, sumSize, sideOi, debtTaken, absorbed
        );
    }

    /// @dev The first pass: targets strictly ascending (none twice), each eligible, funding settled.
    function _present(Ledger.Layout storage s, Ledger.Prices memory px, AdlStep memory step, address[] calldata targets)
        private
        returns (Share[] memory shares, uint256 sumPnl, uint256 sumSize)
    {
        shares = new Share[](targets.length);
        address previous = address(0); // every target above it: no zero address, none twice
        for (uint256 i; i < targets.length; ++i) {
            address target = targets[i];
            if (target <= previous) revert IClearingHouse.AdlTargetsNotAscending(target, previous);
            previous = target;
            int256 size = _requireWinningSide(s, step, target);
            s.settleFunding(target, step.marketId);
            (uint256 score, int256 pnl) = _score(s, px, step.marketId, target, size);
            shares[i] = Share(size, pnl, score, 0);
            sumPnl += uint256(pnl);
            sumSize += size.abs();
        }
    }

    /// @dev Shares of `debtTaken` in proportion to profit that add up to it exactly: each the exact share
    /// rounded down, then the rounding remainder r (< number of targets) one wei each to the first r
    /// targets whose exact share was not whole. The exact fractions add up to r and each is below one, so
    /// more than r targets have one: every share is its exact share rounded down or up, never more.
    function _allot(Share[] memory shares, uint256 debtTaken, uint256 sumPnl) private pure {
        uint256 left = debtTaken;
        for (uint256 i; i < shares.length; ++i) {
            shares[i].share = Math.mulDiv(debtTaken, uint256(shares[i].pnl), sumPnl);
            left -= shares[i].share;
        }
        for (uint256 i; i < shares.length && left != 0; ++i) {
            if (mulmod(debtTaken, uint256(shares[i].pnl), sumPnl) != 0) {
                ++shares[i].share;
                --left;
            }
        }
    }

    /// @dev Closes what realises the target's share of profit and takes at most that share.
    function _cutShare(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        AdlStep memory step,
        address target,
        Share memory sh,
        uint256 absorbedBefore
    ) private returns (uint256 haircut) {
        int256 closeSize = _closeSizeFor(sh.size, sh.pnl, sh.share);
        haircut = _closeAndCut(s, px, step.marketId, target, closeSize, sh.share);
        emit IClearingHouse.AutoDeleveraged(
            target, step.marketId, sh.score, closeSize, px.wad[step.marketId], haircut,
            step.debt - absorbedBefore - haircut
        );
    }

    /// @dev Open interest (base units) of the winning side, the side the targets hold.
    function _sideOpenInterest(Ledger.Layout storage s, AdlStep memory step) private view returns (uint256) {
        Ledger.MarketStore storage st = s.state(step.marketId);
        return step.debtSide == IClearingHouse.Side.Short ? st.longOpenInterestWad : st.shortOpenInterestWad;
    }

    // ---------------------------------------------------------------- shared

    /// @dev The target's size; reverts unless it holds an open position on the side opposite the debt
    /// and is neither the pool nor the fund.
    function _requireWinningSide(Ledger.Layout storage s, AdlStep memory step, address target)
        private
        view
        returns (int256 size)
    {
        size = s.positions[target][step.marketId].sizeWad;
        if (Ledger.isProtected(step.pool, step.fund, target) || (step.debtSide == IClearingHouse.Side.Short ? size <= 0 : size >= 0)) {
            revert IClearingHouse.AdlTargetIneligible(target, size, 0, 0);
        }
    }

    /// @dev Closes `closeSize` at the market price and takes from the realised profit at most `cap` and at
    /// most what keeps the target at maintenance margin. Reverts when the close leaves the target flat and
    /// owing (`AdlTargetLeftOwing`).
    function _closeAndCut(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        uint256 marketId,
        address target,
        int256 closeSize,
        uint256 cap
    ) private returns (uint256 haircut) {
        haircut = s.changePosition(target, marketId, -closeSize, px.wad[marketId]).positivePart().min(cap);
        haircut = haircut.min(_haircutRoom(s, px, target));
        s.addMargin(target, -haircut.toInt256());
        if (s.owesWhileFlat(target)) revert IClearingHouse.AdlTargetLeftOwing(target, s.accounts[target].marginWad);
    }

    /// @dev All of the position when its profit is within the debt; else only as much as the debt needs.
    /// Closing c of size S realises more than c x pnl / S - 2 (one unit lost to each of the two roundings
    /// of the fill), so c = ceil(S x (debt + 1) / pnl) realises at least the debt: no dust is left behind
    /// however small the profit per unit of size.
    function _closeSizeFor(int256 size, int256 pnl, uint256 debt) private pure returns (int256) {
        if (uint256(pnl) <= debt) return size;
        uint256 part = Math.mulDiv(size.abs(), debt + 1, uint256(pnl), Math.Rounding.Ceil);
        if (part >= size.abs()) return size;
        return size > 0 ? part.toInt256() : -part.toInt256();
    }

    /// @dev What a haircut may take from a target after its close without pushing the account below
    /// maintenance margin: under cross margin the leg's profit may be what carries a losing leg elsewhere,
    /// and taking it would turn the target into the next bankruptcy.
    function _haircutRoom(Ledger.Layout storage s, Ledger.Prices memory px, address target)
        private
        view
        returns (uint256)
    {
        (int256 equity, uint256 mmr) = s.maintenanceOf(target, px);
        return (equity - mmr.toInt256()).positivePart();
    }

    /// @dev ADL score of a target's position; reverts unless both its PnL and its equity are positive.
    function _score(Ledger.Layout storage s, Ledger.Prices memory px, uint256 marketId, address target, int256 size)
        private
        view
        returns (uint256 score, int256 pnl)
    {
        uint256 priceWad = px.wad[marketId];
        int256 openNotional = s.positions[target][marketId].openNotionalWad;
        pnl = PositionMath.unrealizedPnl(size, openNotional, priceWad);
        int256 equity = s.equityOf(target, px);
        score = PositionMath.adlScore(pnl, openNotional, PositionMath.notional(size, priceWad), equity);
        if (score == 0) revert IClearingHouse.AdlTargetIneligible(target, size, pnl, equity);
    }
}
