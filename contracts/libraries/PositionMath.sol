// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FixedPointMath} from "./FixedPointMath.sol";

/// @title Position arithmetic. Every rounding goes against the position's holder: entries round the open
/// notional toward +infinity, marks round size x price toward -infinity, requirements round up.
library PositionMath {
    using FixedPointMath for int256;
    using FixedPointMath for uint256;

    /// @notice size x price - openNotional, rounded down.
    function unrealizedPnl(int256 sizeWad, int256 openNotionalWad, uint256 priceWad) internal pure returns (int256) {
        return sizeWad.mulWadFloor(priceWad) - openNotionalWad;
    }

    /// @notice |size| x price, rounded up.
    function notional(int256 sizeWad, uint256 priceWad) internal pure returns (uint256) {
        return FixedPointMath.abs(sizeWad).mulWadUp(priceWad);
    }

    /// @notice Open notional added by a fill of `sizeDeltaWad` at `priceWad`, rounded toward +infinity.
    function entryNotional(int256 sizeDeltaWad, uint256 priceWad) internal pure returns (int256) {
        return sizeDeltaWad.mulWadCeil(priceWad);
    }

    /// @notice size x cumulative funding index, rounded down: the funding basis of a position.
    /// @dev Equal to `mulWadFloorSigned` wherever the product fits 256 bits, which it always does here:
    /// sizes and indices are stored in at most 128 bits (a product beyond int256 reverts, checked).
    function fundingBasis(int256 sizeWad, int256 indexWad) internal pure returns (int256 basis) {
        int256 product = sizeWad * indexWad;
        basis = product / 1e18;
        if (product % 1e18 < 0) --basis; // toward negative infinity
    }

    /// @notice Share of the open notional that closing `closeSizeWad` of `sizeWad` removes, rounded
    /// toward +infinity so the realised PnL of the close rounds down.
    function closedOpenNotional(int256 openNotionalWad, int256 closeSizeWad, int256 sizeWad)
        internal
        pure
        returns (int256)
    {
        return openNotionalWad.mulDivCeil(FixedPointMath.abs(closeSizeWad), FixedPointMath.abs(sizeWad));
    }

    /// @notice A fill of `deltaWad` on a position of `sizeWad`: the PnL realised by the part that closes
    /// existing size and the open notional after the fill (closing removes its share, opening adds).
    function fill(int256 sizeWad, int256 openNotionalWad, int256 deltaWad, uint256 priceWad)
        internal
        pure
        returns (int256 realizedWad, int256 openNotionalAfterWad)
    {
        int256 closed; // the part of delta that closes existing size
        if (sizeWad != 0 && (sizeWad > 0) != (deltaWad > 0)) {
            closed = deltaWad.abs() >= sizeWad.abs() ? -sizeWad : deltaWad;
        }
        openNotionalAfterWad = openNotionalWad;
        if (closed != 0) {
            int256 removed =
                closed == -sizeWad ? openNotionalWad : closedOpenNotional(openNotionalWad, closed, sizeWad);
            realizedWad = (-closed).mulWadFloor(priceWad) - removed;
            openNotionalAfterWad -= removed;
        }
        int256 opened = deltaWad - closed;
        if (opened != 0) openNotionalAfterWad += entryNotional(opened, priceWad);
    }

    /// @notice ADL ranking: PnL fraction of the position times the account's effective leverage,
    /// (uPnL / |open notional|) x (notional / equity), in WAD, rounded down. Zero unless uPnL and equity
    /// are both positive.
    function adlScore(int256 pnlWad, int256 openNotionalWad, uint256 notionalWad, int256 equityWad)
        internal
        pure
        returns (uint256)
    {
        if (pnlWad <= 0 || equityWad <= 0 || openNotionalWad == 0) return 0;
        uint256 pnlFraction = uint256(pnlWad).divWadDown(FixedPointMath.abs(openNotionalWad));
        uint256 leverage = notionalWad.divWadDown(uint256(equityWad));
        return pnlFraction.mulWadDown(leverage);
    }
}
