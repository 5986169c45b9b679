// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IOracleAdapter} from "../interfaces/IOracleAdapter.sol";
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
    using Ledger for Ledger.Prices;

    /// @dev What one fill settled.
    struct Fill {
        int256 fundingWad;
        int256 realizedWad;
        uint256 feeWad;
    }

    /// @notice See IClearingHouse.withdraw; `account` is the caller.
    function withdraw(
        Ledger.Layout storage s,
        IOracleAdapter oracle,
        IERC20 collateral,
        uint256 tokenScale,
        address account,
        uint256 amountTokens,
        address to
    ) external {
        if (amountTokens == 0) revert IClearingHouse.VaultZeroAmount();
        if (to == address(0)) revert IClearingHouse.ZeroAddress();
        if (s.totalBadDebtWad != 0) revert IClearingHouse.VaultBadDebtOutstanding(s.totalBadDebtWad);
        uint256 amountWad = amountTokens * tokenScale;
        Ledger.Account storage acc = s.accounts[account];
        if (int256(acc.marginWad) < amountWad.toInt256()) {
            revert IClearingHouse.VaultInsufficientMargin(account, acc.marginWad, amountWad);
        }
        if (account == s.pool) {
            checkPoolExposure(s, s.newPrices(oracle), amountWad);
        } else if (acc.openMarkets != 0) {
            (int256 equity, uint256 imr,) = s.health(account, s.newPrices(oracle));
            int256 equityAfter = equity - amountWad.toInt256();
            if (equityAfter < imr.toInt256()) {
                revert IClearingHouse.VaultBelowInitialMargin(account, equityAfter, imr);
            }
        }
        acc.marginWad -= amountWad.toInt256().toInt128();
        collateral.safeTransfer(to, amountTokens);
        emit IClearingHouse.Withdrawn(account, to, amountTokens);
    }

    /// @notice See IClearingHouse.trade; `account` is the caller.
    function trade(
        Ledger.Layout storage s,
        IOracleAdapter oracle,
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 acceptablePriceWad
    ) external {
        if (sizeDeltaWad == 0) revert IClearingHouse.TradeZeroSize();
        if (marketId >= s.configs.length) revert IClearingHouse.MarketUnknown(marketId);
        if (s.isProtected(account)) revert IClearingHouse.AccountProtected(account);

        int256 oldSize = s.positions[account][marketId].sizeWad;
        int256 newSize = oldSize + sizeDeltaWad;
        bool reducing = (oldSize > 0 && newSize >= 0 && newSize < oldSize)
            || (oldSize < 0 && newSize <= 0 && newSize > oldSize);
        if (s.reduceOnly && !reducing) revert IClearingHouse.TradeReduceOnly(oldSize, newSize);

        Ledger.Prices memory px = s.newPrices(oracle);
        uint256 price = px.price(marketId);
        if (sizeDeltaWad > 0 ? price > acceptablePriceWad : price < acceptablePriceWad) {
            revert IClearingHouse.TradeSlippage(price, acceptablePriceWad);
        }

        int256 skewBefore = s.states[marketId].sumSizeWad;
        Fill memory f = _fill(s, account, marketId, sizeDeltaWad, price, oldSize);
        _checkPostTrade(s, px, account, marketId, reducing, newSize, skewBefore);
        emit IClearingHouse.PositionChanged(
            account, marketId, sizeDeltaWad, newSize, price, f.feeWad, f.realizedWad, f.fundingWad
        );
    }

    /// @dev Settles funding, applies the fill, takes the close haircut during ADL and charges the fee.
    function _fill(
        Ledger.Layout storage s,
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 price,
        int256 oldSize
    ) private returns (Fill memory f) {
        s.accrueFunding(marketId, price);
        f.fundingWad = s.settleFunding(account, marketId);
        f.realizedWad = s.changePosition(account, marketId, sizeDeltaWad, price);
        // Any close that realises profit, a flip included, pays outstanding ADL debt first.
        if (f.realizedWad > 0) _haircutCloseDuringAdl(s, account, marketId, oldSize, f.realizedWad);
        f.feeWad = _chargeFee(s, account, marketId, sizeDeltaWad, price);
    }

    /// @dev The post-state checks. A trade that only reduces must leave equity >= 0; anything else must
    /// pass the open-interest cap of the side it ends on, the pool exposure cap when it increased
    /// |net trader size|, and the initial margin.
    function _checkPostTrade(
        Ledger.Layout storage s,
        Ledger.Prices memory px,
        address account,
        uint256 marketId,
        bool reducing,
        int256 newSize,
        int256 skewBefore
    ) private view {
        if (reducing) {
            (int256 equity,,) = s.health(account, px);
            if (equity < 0) revert IClearingHouse.TradeWouldBankrupt(account, equity);
        } else {
            _checkOpenInterest(s, marketId, newSize > 0);
            if (int256(s.states[marketId].sumSizeWad).abs() > skewBefore.abs()) checkPoolExposure(s, px, 0);
            (int256 equity, uint256 imr,) = s.health(account, px);
            if (equity < imr.toInt256()) revert IClearingHouse.TradeMarginInsufficient(account, equity, imr);
        }
    }

    /// @dev Taker fee on the notional: the fund's share to the fund, the rest to the pool.
    function _chargeFee(Ledger.Layout storage s, address account, uint256 marketId, int256 sizeDeltaWad, uint256 price)
        private
        returns (uint256 fee)
    {
        fee = PositionMath.notional(sizeDeltaWad, price).mulWadUp(s.configs[marketId].takerFeeWad);
        uint256 toFund = fee.mulWadDown(s.risk.fundFeeShareWad);
        s.addMargin(account, -fee.toInt256());
        s.addMargin(address(s.fund), toFund.toInt256());
        s.addMargin(s.pool, (fee - toFund).toInt256());
    }

    /// @dev While the ADL conditions hold, profit realised by closing a position opposite a market's bad
    /// debt pays that debt first, exactly as ADL would take it: closing cannot dodge ADL.
    function _haircutCloseDuringAdl(
        Ledger.Layout storage s,
        address account,
        uint256 marketId,
        int256 oldSize,
        int256 realized
    ) private {
        IClearingHouse.Side debtSide = oldSize > 0 ? IClearingHouse.Side.Short : IClearingHouse.Side.Long;
        uint256 debt = s.badDebt[marketId][uint256(debtSide)];
        if (debt == 0 || s.fund.availableWad() != 0) return;
        uint256 haircut = uint256(realized).min(debt);
        s.addMargin(account, -haircut.toInt256());
        s.reduceBadDebt(marketId, debtSide, haircut);
        emit IClearingHouse.ProfitHaircutOnClose(account, marketId, haircut, debt - haircut);
    }

    /// @dev |pool size| x price <= k x (pool equity - withdrawal) in every market.
    function checkPoolExposure(Ledger.Layout storage s, Ledger.Prices memory px, uint256 withdrawalWad)
        internal
        view
    {
        int256 equity = s.poolEquity(px) - withdrawalWad.toInt256();
        uint256 cap = equity.positivePart().mulWadDown(s.risk.poolExposureMultipleWad);
        uint256 n = s.states.length;
        for (uint256 m; m < n; ++m) {
            int256 skew = s.states[m].sumSizeWad;
            if (skew == 0) continue;
            uint256 exposure = PositionMath.notional(skew, px.price(m));
            if (exposure > cap) {
                if (withdrawalWad != 0) revert IClearingHouse.VaultPoolExposure(m, exposure, cap);
                revert IClearingHouse.TradePoolExposureCap(m, exposure, cap);
            }
        }
    }

    function _checkOpenInterest(Ledger.Layout storage s, uint256 marketId, bool long) private view {
        Ledger.MarketStore storage st = s.states[marketId];
        uint256 oi = long ? st.longOpenInterestWad : st.shortOpenInterestWad;
        uint256 cap = s.configs[marketId].maxOpenInterestWad;
        if (oi > cap) revert IClearingHouse.TradeOpenInterestCap(marketId, oi, cap);
    }
}
