// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/// @title The few testing helpers Bulwark's Foundry tests need: cheatcodes, assertions that revert with
/// a message naming both values, `bound`, and the invariant-target lists Forge reads from the test.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    address[] private _targetSenders;

    // ---------------------------------------------------------------- invariant targets

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal {
        _targetSelectors.push(selector);
    }

    function targetSender(address sender) internal {
        _targetSenders.push(sender);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }

    // ---------------------------------------------------------------- bound

    /// @notice Maps `x` into [min, max] by wrapping, so every input is used (no rejected runs).
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min;
        if (size == type(uint256).max) return x;
        return min + (x % (size + 1));
    }

    function bound(int256 x, int256 min, int256 max) internal pure returns (int256) {
        require(min <= max, "bound: min > max");
        uint256 span = uint256(max - min);
        uint256 ux = uint256(x) ^ (1 << 255); // order-preserving int -> uint
        uint256 umin = uint256(min) ^ (1 << 255);
        if (ux >= umin && ux - umin <= span) return x;
        return min + int256(bound(ux, 0, span));
    }

    // ---------------------------------------------------------------- assertions

    function fail(string memory message) internal pure {
        revert(message);
    }

    function assertTrue(bool condition, string memory message) internal pure {
        if (!condition) revert(message);
    }

    function assertEq(uint256 a, uint256 b, string memory message) internal pure {
        if (a != b) revert(string.concat(message, ": ", _u(a), " != ", _u(b)));
    }

    function assertEq(int256 a, int256 b, string memory message) internal pure {
        if (a != b) revert(string.concat(message, ": ", _i(a), " != ", _i(b)));
    }

    function assertEq(address a, address b, string memory message) internal pure {
        if (a != b) revert(string.concat(message, ": addresses differ"));
    }

    function assertLe(uint256 a, uint256 b, string memory message) internal pure {
        if (a > b) revert(string.concat(message, ": ", _u(a), " > ", _u(b)));
    }

    function assertGe(uint256 a, uint256 b, string memory message) internal pure {
        if (a < b) revert(string.concat(message, ": ", _u(a), " < ", _u(b)));
    }

    function assertLt(uint256 a, uint256 b, string memory message) internal pure {
        if (a >= b) revert(string.concat(message, ": ", _u(a), " >= ", _u(b)));
    }

    function assertGt(uint256 a, uint256 b, string memory message) internal pure {
        if (a <= b) revert(string.concat(message, ": ", _u(a), " <= ", _u(b)));
    }

    function assertLe(int256 a, int256 b, string memory message) internal pure {
        if (a > b) revert(string.concat(message, ": ", _i(a), " > ", _i(b)));
    }

    function assertGe(int256 a, int256 b, string memory message) internal pure {
        if (a < b) revert(string.concat(message, ": ", _i(a), " < ", _i(b)));
    }

    function assertLt(int256 a, int256 b, string memory message) internal pure {
        if (a >= b) revert(string.concat(message, ": ", _i(a), " >= ", _i(b)));
    }

    function assertApproxEq(uint256 a, uint256 b, uint256 tolerance, string memory message) internal pure {
        uint256 gap = a > b ? a - b : b - a;
        if (gap > tolerance) {
            revert(string.concat(message, ": ", _u(a), " vs ", _u(b), " beyond ", _u(tolerance)));
        }
    }

    /// @notice Asserts that the revert data starts with `selector` (a custom error).
    function assertRevertSelector(bytes memory reason, bytes4 selector, string memory message) internal pure {
        if (reason.length < 4 || bytes4(reason) != selector) revert(string.concat(message, ": other revert"));
    }

    // ---------------------------------------------------------------- formatting

    function _u(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory buf = new bytes(78);
        uint256 i = buf.length;
        while (v != 0) {
            buf[--i] = bytes1(uint8(48 + v % 10));
            v /= 10;
        }
        bytes memory out = new bytes(buf.length - i);
        for (uint256 j; j < out.length; ++j) out[j] = buf[i + j];
        return string(out);
    }

    function _i(int256 v) internal pure returns (string memory) {
        if (v >= 0) return _u(uint256(v));
        return string.concat("-", _u(v == type(int256).min ? uint256(type(int256).max) + 1 : uint256(-v)));
    }
}
