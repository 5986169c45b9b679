// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../interfaces/IInsuranceFund.sol";
import {FixedPointMath} from "./FixedPointMath.sol";
import {Ledger} from "./Ledger.sol";
import {PositionMath} from "./PositionMath.sol";

/// @title Trading and withdrawals.
/// @notice An external library: the clearing house delegates to it, so it runs on the clearing house's
/// storage, moves the clearing house's tokens and emits the clearing house's events.
library TradeLogic {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;
    using FixedPointMath for uint256;
    using FixedPointMath for int256;
    using Ledger for Ledger.Layout;

    /// @dev What one fill settled.
    struct Fill {
        int256 fundingWad;
        int256 realizedWad;
        uint256 feeWad;
    }

    /// @notice See IClearingHouse.withdraw; `account` is the caller.
    function withdraw(
        Ledger.Layout storage s,
        IERC20 collateral,
        uint256 tokenScale,
        address pool,
        IInsuranceFund fund,
        address account,
        uint256 amountTokens,
        address to
    ) external {
        if (amountTokens == 0) revert IClearingHouse.VaultZeroAmount();
        if (to == address(0)) revert IClearingHouse.ZeroAddress();
        if (s.badDebtOutstanding) revert IClearingHouse.VaultBadDebtOutstanding(s.totalBadDebtWad);
        uint256 amountWad = amountTokens * tokenScale;
        _checkWithdrawal(s, pool, fund, account, amountWad);
        s.addMarginOf(pool, fund, account, -amountWad.toInt256());
        collateral.safeTransfer(to, amountTokens);
        emit IClearingHouse.Withdrawn(account, to, amountTokens);
    }

    /// @dev A withdrawal of `amountWad` takes at most the account's margin, leaves the pool within its
    /// exposure cap and any other account with open positions at or above its initial margin.
    function _checkWithdrawal(
        Ledger.Layout storage s,
        address pool,
        IInsuranceFund fund,
        address account,
        uint256 amountWad
    ) private view {
        int256 margin = s.marginOf(pool, fund, account);
        if (margin < amountWad.toInt256()) revert IClearingHouse.VaultInsufficientMargin(account, margin, amountWad);
        if (account == pool) {
            checkPoolExposure(s, s.newPrices(), amountWad);
        } else if (s.accounts[account].openMarkets != 0) {
            (int256 equity, uint256 imr) = s.initialOf(account, s.newPrices());
            int256 equityAfter = equity - amountWad.toInt256();
            if (equityAfter < imr.toInt256()) {
                revert IClearingHouse.VaultBelowInitialMargin(account, equityAfter, imr);
            }
        }
    }

    /// @notice See IClearingHouse.trade; `account` is the caller.
    function trade(
        Ledger.Layout storage s,
        address pool,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 acceptablePriceWad
    ) external {
        if (sizeDeltaWad == 0) revert IClearingHouse.TradeZeroSize();
        if (marketId >= s.marketCount) revert IClearingHouse.MarketUnknown(marketId);
        if (Ledger.isProtected(pool, fund, account)) revert IClearingHouse.AccountProtected(account);

        int256 oldSize = s.positions[account][marketId].sizeWad;
        int256 newSize = oldSize + sizeDeltaWad;
        bool reducing = (oldSize > 0 && newSize >= 0 && newSize < oldSize)
            || (oldSize < 0 && newSize <= 0 && newSize > oldSize);
        if (s.reduceOnly && !reducing) revert IClearingHouse.TradeReduceOnly(oldSize, newSize);

        Ledger.Prices memory px = s.newPrices();
        uint256 price = s.price(px, marketId);
        if (sizeDeltaWad > 0 ? price > acceptablePriceWad : price < acceptablePriceWad) {
            revert IClearingHouse.TradeSlippage(price, acceptablePriceWad);
        }

        Fill memory f = _fill(s, fund, account, marketId, sizeDeltaWad, price, oldSize);
        _checkPostTrade(s, px, account, marketId, reducing, newSize);
        emit IClearingHouse.PositionChanged(
            account, marketId, sizeDeltaWad, newSize, price, f.feeWad, f.realizedWad, f.fundingWad
        );
    }

    /// @dev Settles funding, applies the fill, takes the close haircut during ADL and charges the fee.
    function _fill(
        Ledger.Layout storage s,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 price,
        int256 oldSize
    ) private returns (Fill memory f) {
        s.accrueFunding(marketId, price);
        (f.fundingWad, f.realizedWad) = s.settleAndChange(account, marketId, sizeDeltaWad, price);
        // Any close that realises profit, a flip included, pays outstanding ADL debt first.
        if (f.realizedWad > 0) _haircutCloseDuringAdl(s, fund, account, marketId, oldSize, f.realizedWad);
        f.feeWad = _chargeFee(s, account, marketId, sizeDeltaWad, price);
    }

    /// @dev The post-state checks. Every position ends either flat or at least the market's minimum notional.
    /// A trade that only reduces must leave equity >= 0; anything else must pass the open-interest cap of the
    /// side it ends on, the pool exposure cap of the market and the initial margin. The exposure cap counts
    /// the larger side's open interest, which only non-reducing trades raise: no sequence of trades, hedge
    /// legs opened and closed included, takes it past the cap, and a trader can always close.
    function _checkPostTrade(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        address account,
        uint256 marketId,
        bool reducing,
        int256 newSize
    ) private view {
        if (newSize != 0) {
            uint256 newNotional = PositionMath.notional(newSize, s.price(px, marketId));
            uint256 minNotional = s.config(marketId).minPositionNotionalWad;
            if (newNotional < minNotional) {
                revert IClearingHouse.TradePositionBelowMinimum(marketId, newNotional, minNotional);
            }
        }
        if (reducing) {
            int256 equity = s.equityOf(account, px);
            if (equity < 0) revert IClearingHouse.TradeWouldBankrupt(account, equity);
        } else {
            _checkOpenInterest(s, marketId, newSize > 0);
            uint256 cap = _exposureCap(s, px, 0);
            uint256 exposure = exposureOf(s, px, marketId);
            if (exposure > cap) revert IClearingHouse.TradePoolExposureCap(marketId, exposure, cap);
            (int256 equity, uint256 imr) = s.initialOf(account, px);
            if (equity < imr.toInt256()) revert IClearingHouse.TradeMarginInsufficient(account, equity, imr);
        }
    }

    /// @dev Taker fee on the notional: the fund's share to the fund, the rest to the pool.
    function _chargeFee(
        Ledger.Layout storage s,
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 price
    ) private returns (uint256 fee) {
        fee = PositionMath.notional(sizeDeltaWad, price).mulWadUp(s.config(marketId).takerFeeWad);
        uint256 toFund = fee.mulWadDown(s.risk.fundFeeShareWad);
        s.addMargin(account, -fee.toInt256());
        s.addFundMargin(toFund.toInt256());
        s.addPoolMargin((fee - toFund).toInt256());
    }

    /// @dev While the ADL conditions hold (the side's debt exceeds what the fund can pay now), profit
    /// realised by closing a position opposite a market's bad debt pays the part of the debt the fund cannot
    /// pay first, exactly as ADL would take it: closing cannot dodge ADL, and a donation smaller than the
    /// debt changes only how much the haircut takes, never whether it applies.
    function _haircutCloseDuringAdl(
        Ledger.Layout storage s,
        IInsuranceFund fund,
        address account,
        uint256 marketId,
        int256 oldSize,
        int256 realized
    ) private {
        IClearingHouse.Side debtSide = oldSize > 0 ? IClearingHouse.Side.Short : IClearingHouse.Side.Long;
        uint256 debt = s.badDebt[marketId][uint256(debtSide)];
        if (debt == 0) return;
        uint256 available = fund.availableWad();
        if (debt <= available) return;
        uint256 haircut = uint256(realized).min(debt - available);
        s.addMargin(account, -haircut.toInt256());
        s.reduceBadDebt(marketId, debtSide, haircut);
        emit IClearingHouse.ProfitHaircutOnClose(account, marketId, haircut, debt - haircut);
    }

    /// @dev max(long, short open interest) x price <= k x (pool equity - withdrawal) in every market.
    function checkPoolExposure(Ledger.Layout storage s, Ledger.Prices memory px, uint256 withdrawalWad)
        internal
        view
    {
        uint256 cap = _exposureCap(s, px, withdrawalWad);
        uint256 n = s.marketCount;
        for (uint256 m; m < n; ++m) {
            uint256 exposure = exposureOf(s, px, m);
            if (exposure > cap) revert IClearingHouse.VaultPoolExposure(m, exposure, cap);
        }
    }

    /// @dev k x (pool equity - withdrawal), zero when that is negative.
    function _exposureCap(Ledger.Layout storage s, Ledger.Prices memory px, uint256 withdrawalWad)
        private
        view
        returns (uint256)
    {
        int256 equity = s.poolEquity(px) - withdrawalWad.toInt256();
        return equity.positivePart().mulWadDown(s.risk.poolExposureMultipleWad);
    }

    /// @dev The pool's exposure in a market if either side of the book vanished: the larger side's open
    /// interest at the price, rounded up. It bounds |net trader size| x price, whatever closes or is
    /// liquidated.
    function exposureOf(Ledger.Layout storage s, Ledger.Prices memory px, uint256 marketId)
        internal
        view
        returns (uint256)
    {
        Ledger.MarketStore storage st = s.state(marketId);
        uint256 side = uint256(st.longOpenInterestWad).max(st.shortOpenInterestWad);
        if (side == 0) return 0;
        return side.mulWadUp(s.price(px, marketId));
    }

    function _checkOpenInterest(Ledger.Layout storage s, uint256 marketId, bool long) private view {
        Ledger.MarketStore storage st = s.state(marketId);
        uint256 oi = long ? st.longOpenInterestWad : st.shortOpenInterestWad;
        uint256 cap = s.config(marketId).maxOpenInterestWad;
        if (oi > cap) revert IClearingHouse.TradeOpenInterestCap(marketId, oi, cap);
    }
}
