// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FixedPointMath} from "./FixedPointMath.sol";

/// @title How a liquidation's penalty is split between the keeper and the insurance fund.
library LiquidationMath {
    using FixedPointMath for uint256;

    struct Split {
        uint256 penaltyWad; // penalty after the cap at the equity left
        uint256 rewardWad; // keeper reward, within [floor, ceiling]
        uint256 paddingWad; // what the insurance fund receives
        uint256 chargeWad; // what the account pays: reward + padding
    }

    /// @notice Penalty = min(uncapped penalty, equity left); reward = keeper share of the penalty clamped to
    /// [floor, ceiling] and then to the equity left; padding = penalty beyond the reward. The account is
    /// charged reward + padding = max(penalty, reward), never more than its equity: the insurance fund never
    /// pays a keeper, and a bankrupt account's shortfall is only its negative equity.
    function split(
        uint256 uncappedPenaltyWad,
        int256 equityWad,
        uint256 keeperShareWad,
        uint256 rewardFloorWad,
        uint256 rewardCeilingWad
    ) internal pure returns (Split memory s) {
        s.penaltyWad = uncappedPenaltyWad.min(FixedPointMath.positivePart(equityWad));
        uint256 reward = s.penaltyWad.mulWadDown(keeperShareWad);
        s.rewardWad = reward.max(rewardFloorWad).min(rewardCeilingWad).min(FixedPointMath.positivePart(equityWad));
        s.paddingWad = s.penaltyWad > s.rewardWad ? s.penaltyWad - s.rewardWad : 0;
        s.chargeWad = s.rewardWad + s.paddingWad;
    }
}
