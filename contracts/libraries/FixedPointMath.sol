// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title WAD (18-decimal) fixed-point arithmetic with the rounding direction in every name.
/// @dev Signed variants round toward negative infinity (`Floor`) or positive infinity (`Ceil`),
/// which is what "against the account that acts" needs when the sign of a value is not known.
library FixedPointMath {
    uint256 internal constant WAD = 1e18;

    function mulWadDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivDown(x, y, WAD);
    }

    function mulWadUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivUp(x, y, WAD);
    }

    function divWadDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivDown(x, WAD, y);
    }

    function divWadUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivUp(x, WAD, y);
    }

    /// @notice x * y / d rounded down: `Math.mulDiv`'s result, computed directly when x * y fits 256
    /// bits (every product of this protocol's bounded quantities does) and by `Math.mulDiv` otherwise.
    /// Reverts on d == 0 as `Math.mulDiv` does.
    function mulDivDown(uint256 x, uint256 y, uint256 d) internal pure returns (uint256 z) {
        bool fits;
        assembly ("memory-safe") {
            // x * y fits iff y == 0 or x <= max / y (div by zero is zero in the EVM: y == 0 fits).
            fits := and(iszero(iszero(d)), iszero(mul(y, gt(x, div(not(0), y)))))
            if fits { z := div(mul(x, y), d) }
        }
        if (!fits) z = Math.mulDiv(x, y, d);
    }

    /// @notice x * y / d rounded up; as `mulDivDown`, `Math.mulDiv`'s result with `Rounding.Ceil`.
    function mulDivUp(uint256 x, uint256 y, uint256 d) internal pure returns (uint256 z) {
        bool fits;
        assembly ("memory-safe") {
            fits := and(iszero(iszero(d)), iszero(mul(y, gt(x, div(not(0), y)))))
            if fits {
                let p := mul(x, y)
                z := add(div(p, d), iszero(iszero(mod(p, d))))
            }
        }
        if (!fits) z = Math.mulDiv(x, y, d, Math.Rounding.Ceil);
    }

    /// @notice x * y / d for a signed x, rounded toward negative infinity.
    function mulDivFloor(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return SafeCast.toInt256(mulDivDown(uint256(x), y, d));
        return -SafeCast.toInt256(mulDivUp(uint256(-x), y, d));
    }

    /// @notice x * y / d for a signed x, rounded toward positive infinity.
    function mulDivCeil(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return SafeCast.toInt256(mulDivUp(uint256(x), y, d));
        return -SafeCast.toInt256(mulDivDown(uint256(-x), y, d));
    }

    /// @notice x * y / WAD for a signed x, rounded toward negative infinity.
    function mulWadFloor(int256 x, uint256 y) internal pure returns (int256) {
        return mulDivFloor(x, y, WAD);
    }

    /// @notice x * y / WAD for a signed x, rounded toward positive infinity.
    function mulWadCeil(int256 x, uint256 y) internal pure returns (int256) {
        return mulDivCeil(x, y, WAD);
    }

    /// @notice x * y / WAD for a signed x and a signed y, rounded toward negative infinity.
    function mulWadFloorSigned(int256 x, int256 y) internal pure returns (int256) {
        return y >= 0 ? mulDivFloor(x, uint256(y), WAD) : mulDivFloor(-x, uint256(-y), WAD);
    }

    function abs(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    function min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function max(uint256 a, uint256 b) internal pure returns (uint256) {
        return a > b ? a : b;
    }

    /// @notice The positive part of x, as an unsigned number.
    function positivePart(int256 x) internal pure returns (uint256) {
        return x > 0 ? uint256(x) : 0;
    }
}
