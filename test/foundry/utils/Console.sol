// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Forge's console: a log call to this address is printed under the test with -vv.
library Console {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory label, uint256 value) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256)", label, value));
        ok;
    }
}
