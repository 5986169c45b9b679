// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";

/// @title Hard bounds on every risk parameter: no role can set a value outside them.
library ParamBounds {
    uint256 internal constant WAD = 1e18;

    function checkMarket(IClearingHouse.MarketConfig memory c, uint256 rewardFloorWad) internal pure {
        check("imRatio", c.imRatioWad, WAD / 200, WAD); // leverage cap between 1x and 200x
        check("mmRatio", c.mmRatioWad, WAD / 400, uint256(c.imRatioWad) - 1);
        check("takerFee", c.takerFeeWad, 0, WAD / 100);
        check("penaltyRatio", c.penaltyRatioWad, 0, uint256(c.mmRatioWad) - 1);
        check("partialFraction", c.partialFractionWad, WAD / 10, (WAD * 9) / 10);
        check("maxFundingRatePerDay", c.maxFundingRatePerDayWad, 0, WAD / 10);
        check("skewScale", c.skewScaleWad, 1e15, 1e36);
        check("maxOpenInterest", c.maxOpenInterestWad, 1, type(uint96).max);
        check("minPartialNotional", c.minPartialNotionalWad, 0, 1e9 * WAD);
        checkMinPosition(c, rewardFloorWad);
    }

    /// @notice The smallest position's maintenance margin must pay the keeper's reward floor:
    /// minPositionNotional x mmRatio >= rewardFloor.
    function checkMinPosition(IClearingHouse.MarketConfig memory c, uint256 rewardFloorWad) internal pure {
        uint256 least = (rewardFloorWad * WAD + c.mmRatioWad - 1) / c.mmRatioWad;
        check("minPositionNotional", c.minPositionNotionalWad, least, 1e9 * WAD);
    }

    function checkRisk(IClearingHouse.RiskParams memory r) internal pure {
        check("fundFeeShare", r.fundFeeShareWad, 0, WAD);
        check("poolExposureMultiple", r.poolExposureMultipleWad, WAD / 10, 20 * WAD);
        check("keeperShare", r.keeperShareWad, 0, WAD);
        check("rewardCeiling", r.rewardCeilingWad, 0, 1e6 * WAD);
        check("rewardFloor", r.rewardFloorWad, 0, r.rewardCeilingWad);
        check("socializeGracePeriod", r.socializeGracePeriod, 1 hours, 30 days);
    }

    function check(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue) internal pure {
        if (value < minValue || value > maxValue) {
            revert IClearingHouse.ParamOutOfBounds(field, value, minValue, maxValue);
        }
    }
}
