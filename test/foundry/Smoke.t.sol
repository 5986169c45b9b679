// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";

contract SmokeTest is Fixture {
    function setUp() public {
        deployProtocol();
    }

    function test_deploy_wiresAccounts() public view {
        assertEq(ch.pool(), address(pool), "pool");
        assertEq(address(ch.fund()), address(fund), "fund");
        assertEq(ch.marketCount(), 2, "markets");
    }
}
