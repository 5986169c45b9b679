// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ClearingHouse} from "../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../contracts/LiquidityPool.sol";
import {IClearingHouse} from "../../contracts/interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../../contracts/interfaces/IInsuranceFund.sol";
import {ILiquidityPool} from "../../contracts/interfaces/ILiquidityPool.sol";
import {IOracleAdapter} from "../../contracts/interfaces/IOracleAdapter.sol";
import {Fixture} from "./utils/Fixture.sol";

contract SmokeTest is Fixture {
    address internal constant alice = address(0xA11CE);
    /// @dev The clearing house's Ledger.Layout starts after the access-control slots it inherits.
    uint256 private constant LAYOUT_SLOT = 3;
    uint256 private constant ACCOUNTS_SLOT = LAYOUT_SLOT + 8;

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

    /// @dev The pool's and the fund's margins live in the layout's first slot beside the market count and
    /// the reduce-only switch (Ledger.Layout: count in bits 0-15, switch 16-23, the pool's margin 24-135,
    /// the fund's 136-247, the bad-debt flag 248-255), not in the accounts map; every view reads them
    /// from there.
    function test_systemMargins_liveInSlotZero() public {
        fundAccount(alice, 1_000e6);
        usdc.mint(address(this), 3_000e6);
        usdc.approve(address(ch), 3_000e6);
        ch.deposit(address(pool), 1_000e6);
        ch.deposit(address(fund), 2_000e6);

        uint256 word = uint256(vm.load(address(ch), bytes32(LAYOUT_SLOT)));
        assertEq(word & 0xffff, 2, "market count");
        assertEq((word >> 16) & 0xff, 0, "reduce-only off");
        assertEq(uint256(int256(int112(uint112(word >> 24)))), 1_000e18, "pool margin in bits 24-135");
        assertEq(uint256(int256(int112(uint112(word >> 136)))), 2_000e18, "fund margin in bits 136-247");
        assertEq(word >> 248, 0, "no bad debt outstanding (top byte)");
        assertEq(ch.marginOf(address(pool)), 1_000e18, "pool's marginOf");
        assertEq(ch.marginOf(address(fund)), 2_000e18, "fund's marginOf");
        assertEq(ch.healthOf(address(fund)).equityWad, 2_000e18, "fund's equity is its margin");
        for (uint256 i; i < 2; ++i) {
            address system = i == 0 ? address(pool) : address(fund);
            assertEq(uint256(vm.load(address(ch), keccak256(abi.encode(system, ACCOUNTS_SLOT)))), 0, "no map entry");
        }
        assertEq(uint256(vm.load(address(ch), keccak256(abi.encode(alice, ACCOUNTS_SLOT)))), 1_000e18, "a trader's entry");

        // A trade's fee goes to both in that one slot: the fund's share to the fund, the rest to the pool.
        openPosition(alice, ETH, 1e18);
        uint256 fee = uint256(1_000e18 - ch.marginOf(alice));
        uint256 toFund = fee * riskParams().fundFeeShareWad / 1e18;
        assertGt(toFund, 0, "the fund takes a share");
        assertEq(ch.marginOf(address(fund)), int256(2_000e18 + toFund), "fund's share of the fee");
        assertEq(ch.marginOf(address(pool)), int256(1_000e18 + fee - toFund), "pool's share of the fee");
        address[] memory traders = new address[](1);
        traders[0] = alice;
        assertEq(vaultGap(traders), 0, "conserved");
    }

    /// @dev A system margin beyond its 112 bits reverts with SafeCast's error and credits nothing; a
    /// trader's margin (128 bits) takes the same deposit.
    function test_systemMargin_beyond112Bits_reverts() public {
        uint256 tokens = uint256(uint112(type(int112).max)) / SCALE + 1;
        usdc.mint(address(this), 2 * tokens);
        usdc.approve(address(ch), 2 * tokens);
        vm.expectRevert(
            abi.encodeWithSelector(SafeCast.SafeCastOverflowedIntDowncast.selector, 112, tokens * SCALE)
        );
        ch.deposit(address(fund), tokens);
        assertEq(ch.marginOf(address(fund)), 0, "nothing credited");
        ch.deposit(alice, tokens);
        assertEq(ch.marginOf(alice), int256(tokens * SCALE), "a trader's margin takes it");
    }
}
