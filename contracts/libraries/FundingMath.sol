// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FixedPointMath} from "./FixedPointMath.sol";

/// @title Skew-based funding: the rate is proportional to net trader size over the skew scale, clamped
/// to the maximum. One cumulative index per market, in quote per unit of base.
library FundingMath {
    using FixedPointMath for int256;

    uint256 internal constant DAY = 1 days;

    /// @notice Funding rate per day (WAD): maxRate x skew / skewScale, clamped to [-maxRate, maxRate].
    /// Positive when traders are net long: longs pay.
    function ratePerDayWad(int256 skewWad, uint256 skewScaleWad, uint256 maxRatePerDayWad)
        internal
        pure
        returns (int256)
    {
        int256 rate = skewWad.mulDivFloor(maxRatePerDayWad, skewScaleWad);
        int256 cap = int256(maxRatePerDayWad);
        if (rate > cap) return cap;
        if (rate < -cap) return -cap;
        return rate;
    }

    /// @notice Index growth over `elapsed` seconds at `priceWad`: rate x elapsed / 1 day x price.
    function indexDeltaWad(int256 rateWad, uint256 elapsed, uint256 priceWad) internal pure returns (int256) {
        return rateWad.mulDivFloor(elapsed * priceWad, DAY * FixedPointMath.WAD);
    }
}
