// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ClearingHouse} from "../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../contracts/LiquidityPool.sol";
import {IClearingHouse} from "../../contracts/interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../../contracts/interfaces/IInsuranceFund.sol";
import {ILiquidityPool} from "../../contracts/interfaces/ILiquidityPool.sol";
import {IOracleAdapter} from "../../contracts/interfaces/IOracleAdapter.sol";
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

    /// @dev A pool or a fund the clearing house does not name (a mispredicted address) refuses to deploy.
    function test_deploy_unnamedPoolAndFund_revert() public {
        IERC20 token = IERC20(address(usdc));
        vm.expectRevert(
            abi.encodeWithSelector(ILiquidityPool.PoolNotNamedByClearingHouse.selector, address(ch), address(pool))
        );
        new LiquidityPool(token, ch, POOL_COOLDOWN, admin);
        vm.expectRevert(
            abi.encodeWithSelector(IInsuranceFund.FundNotNamedByClearingHouse.selector, address(ch), address(fund))
        );
        new InsuranceFund(token, ch, FUND_COOLDOWN, FUND_WINDOW, FUND_WINDOW_CAP, FUND_CAP_TOKENS, admin, admin);
    }

    function test_deploy_sameAddressForPoolAndFund_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.AccountsNotDistinct.selector, address(pool)));
        IInsuranceFund sameAsPool = IInsuranceFund(address(pool));
        new ClearingHouse(
            IERC20(address(usdc)), IOracleAdapter(address(oracle)), address(pool), sameAsPool, riskParams(), admin
        );
    }
}
