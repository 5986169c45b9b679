// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {FixedPointMath} from "../../contracts/libraries/FixedPointMath.sol";
import {Test} from "./utils/Test.sol";

/// @dev External entry points, so that a revert can be compared with a revert.
contract FixedPointMathHarness {
    function down(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return FixedPointMath.mulDivDown(x, y, d);
    }

    function up(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return FixedPointMath.mulDivUp(x, y, d);
    }

    function ozDown(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return Math.mulDiv(x, y, d);
    }

    function ozUp(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return Math.mulDiv(x, y, d, Math.Rounding.Ceil);
    }

    function floorSigned(int256 x, uint256 y, uint256 d) external pure returns (int256) {
        return FixedPointMath.mulDivFloor(x, y, d);
    }

    function ceilSigned(int256 x, uint256 y, uint256 d) external pure returns (int256) {
        return FixedPointMath.mulDivCeil(x, y, d);
    }
}

/// @title The direct path of `mulDivDown` / `mulDivUp` (a product that fits 256 bits) returns exactly what
/// OpenZeppelin's 512-bit `Math.mulDiv` returns, and reverts exactly when it reverts, with the same data.
contract FixedPointMathTest is Test {
    FixedPointMathHarness private h;

    function setUp() public {
        h = new FixedPointMathHarness();
    }

    function _same(bool up, uint256 x, uint256 y, uint256 d) private view {
        (bool ok, bytes memory got) =
            address(h).staticcall(abi.encodeCall(up ? h.up : h.down, (x, y, d)));
        (bool okRef, bytes memory want) =
            address(h).staticcall(abi.encodeCall(up ? h.ozUp : h.ozDown, (x, y, d)));
        assertTrue(ok == okRef, "reverts exactly when Math.mulDiv does");
        assertTrue(keccak256(got) == keccak256(want), "same result or revert data as Math.mulDiv");
    }

    function testFuzz_mulDiv_matchesOpenZeppelin_anyInput(uint256 x, uint256 y, uint256 d) public view {
        _same(false, x, y, d);
        _same(true, x, y, d);
    }

    /// @dev Products that fit 256 bits (the direct path), with the WAD and general denominators used.
    function testFuzz_mulDiv_matchesOpenZeppelin_fittingProduct(uint256 x, uint256 y, uint256 d) public view {
        x = bound(x, 0, type(uint128).max);
        y = bound(y, 0, type(uint128).max);
        _same(false, x, y, d);
        _same(true, x, y, d);
        _same(false, x, y, 1e18);
        _same(true, x, y, 1e18);
    }

    /// @dev Products just past 2^256 go through Math.mulDiv: still the same result.
    function testFuzz_mulDiv_matchesOpenZeppelin_overflowingProduct(uint256 x, uint256 d) public view {
        x = bound(x, 2, type(uint256).max);
        uint256 y = type(uint256).max / x + 1; // x * y >= 2^256
        _same(false, x, y, d);
        _same(true, x, y, d);
    }

    function test_mulDiv_edges() public view {
        _same(false, 0, type(uint256).max, 1);
        _same(true, type(uint256).max, 0, 7);
        _same(false, 5, 7, 0); // division by zero: both revert the same way
        _same(true, 5, 7, 0);
        _same(false, type(uint256).max, type(uint256).max, type(uint256).max);
        _same(true, type(uint256).max, type(uint256).max, type(uint256).max - 1);
        _same(true, 1, 1, 3);
        assertEq(h.up(1, 1, 3), 1, "rounds a remainder up");
        assertEq(h.down(1, 1, 3), 0, "rounds a remainder down");
    }

    /// @dev The signed forms round toward negative (floor) and positive (ceil) infinity.
    function testFuzz_signed_roundTowardTheirInfinity(int256 x, uint256 y, uint256 d) public view {
        // Within 120 bits, x * y and the brackets below fit int256.
        x = bound(x, -int256(uint256(type(uint120).max)), int256(uint256(type(uint120).max)));
        y = bound(y, 0, type(uint120).max);
        d = bound(d, 1, type(uint120).max);
        int256 lo = h.floorSigned(x, y, d);
        int256 hi = h.ceilSigned(x, y, d);
        uint256 ax = x >= 0 ? uint256(x) : uint256(-x);
        bool exact = mulmod(ax, y, d) == 0;
        assertEq(hi - lo, exact ? int256(0) : int256(1), "floor and ceil differ by one unless exact");
        // lo <= x*y/d <= hi, checked on the integers: lo*d <= x*y <= hi*d (all within 256 bits here).
        int256 p = x * int256(y);
        assertTrue(lo * int256(d) <= p && p <= hi * int256(d), "bracket the exact quotient");
    }
}
