// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../../../contracts/interfaces/IInsuranceFund.sol";
import {Console} from "../utils/Console.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Attack 4: a staker whose unstake request has matured claims in the block a bankruptcy becomes
/// visible, before the keeper settles it. Two stakers of 10,000; 9 of fee income reaches the fund after
/// the request; bob's short of 30 ETH goes bankrupt at 3,600 with a shortfall of 7,050.
/// Before the fix the early claimer took 10,000 instead of 6,479.5, the staker who stayed was left
/// 5,004.5 instead of 6,479.5 and 2,045.5 more became bad debt.
contract StaleUnstakeClaimTest is AttackBase {
    struct Outcome {
        uint256 claimerTokens;
        uint256 stayerValue;
        uint256 badDebtWad;
    }

    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 0);
    }

    /// @dev Both stake 10,000; `staker` asks to leave; the cooldown passes; bob's short goes bankrupt.
    function _scene() internal returns (uint256 requestId) {
        requestId = _sceneBeforeTheMove();
        setPrice(ETH, 3600); // bob: 10,955 - 18,000 = -7,045, bankrupt
        assertLt(equityOf(bob), int256(0), "bob bankrupt");
    }

    function _sceneBeforeTheMove() internal returns (uint256 requestId) {
        requestId = maturedRequestBesideAStayer();
        fundAccount(bob, 11_000 * USDC);
        openPosition(bob, ETH, -30e18); // fee 45, of which 9 reach the fund
    }

    /// @dev Bad debt left by the liquidation is socialised after its grace period, the same in both orders.
    function _settleDebt() internal {
        vm.warp(block.timestamp + GRACE);
        refreshPrices();
        if (shortDebt(ETH) != 0) ch.socializeBadDebt(ETH, IClearingHouse.Side.Short);
    }

    function _outcome() internal view returns (Outcome memory o) {
        o.claimerTokens = usdc.balanceOf(staker);
        o.stayerValue = fund.convertToAssets(fund.balanceOf(stayer));
    }

    /// @notice The claim lands before the liquidation (the attack) or after it (the honest order): the
    /// claimer gets no more, the staker who stayed keeps no less and no more bad debt is left.
    function test_claim_inTheBankruptcyBlock_gainsNothing() public {
        uint256 id = _scene();
        uint256 snap = vm.snapshotState();

        vm.prank(staker);
        fund.claim(id); // front-runs the keeper
        liquidateAs(keeper, bob, ETH);
        uint256 debtAttack = ch.totalBadDebtWad();
        _settleDebt();
        Outcome memory attack = _outcome();
        attack.badDebtWad = debtAttack;

        vm.revertToState(snap);
        liquidateAs(keeper, bob, ETH);
        uint256 debtHonest = ch.totalBadDebtWad();
        _settleDebt();
        vm.prank(staker);
        fund.claim(id);
        Outcome memory honest = _outcome();
        honest.badDebtWad = debtHonest;

        Console.log("attack: claimer tokens", attack.claimerTokens);
        Console.log("attack: stayer value", attack.stayerValue);
        Console.log("attack: bad debt (wad)", attack.badDebtWad);
        Console.log("honest: claimer tokens", honest.claimerTokens);
        Console.log("honest: stayer value", honest.stayerValue);
        Console.log("honest: bad debt (wad)", honest.badDebtWad);
        assertLe(attack.claimerTokens, honest.claimerTokens + 1, "the early claim paid more");
        assertGe(attack.stayerValue + 1, honest.stayerValue, "the staker who stayed lost more");
        assertLe(attack.badDebtWad, honest.badDebtWad, "the early claim left more bad debt");
        assertConserved(actors());
    }

    /// @notice The informed claim (in the bankruptcy block) leaves everyone where a claim made before the
    /// price moved would have: nothing about the coming loss is worth knowing.
    function test_claim_informedOrNot_samePayoutAndSameStayer() public {
        uint256 id = _sceneBeforeTheMove();
        uint256 snap = vm.snapshotState();
        vm.prank(staker);
        fund.claim(id); // uninformed: before the price moves
        setPrice(ETH, 3600);
        liquidateAs(keeper, bob, ETH);
        Outcome memory early = _outcome();
        early.badDebtWad = ch.totalBadDebtWad();

        vm.revertToState(snap);
        setPrice(ETH, 3600);
        vm.prank(staker);
        fund.claim(id); // informed: the bankruptcy is visible
        liquidateAs(keeper, bob, ETH);
        Outcome memory informed = _outcome();
        informed.badDebtWad = ch.totalBadDebtWad();

        assertEq(informed.claimerTokens, early.claimerTokens, "knowing the loss paid more");
        assertEq(informed.stayerValue, early.stayerValue, "knowing the loss cost the stayer");
        assertEq(informed.badDebtWad, early.badDebtWad, "knowing the loss left more bad debt");
    }

    /// @notice A matured request does not back the fund's promise: available and the window cap are
    /// computed on the assets of the staker who stays, so the claim cannot change what the fund pays.
    function test_availableWad_excludesMaturedRequests() public {
        uint256 id = _scene();
        uint256 reserved = fund.unstakeRequest(id).assetsAtRequest;
        assertEq(reserved, 10_000 * USDC, "value at request");
        assertEq(fund.freeAssetsWad(), fund.assetsWad() - reserved * SCALE, "free = assets - reserve");
        uint256 available = fund.availableWad();
        assertEq(available, (20_009 - 10_000) * WAD / 2, "half of the free assets");
        vm.prank(staker);
        fund.claim(id);
        assertEq(fund.availableWad(), available, "the claim did not change the promise");
    }

    /// @notice A request made in the block a bankruptcy becomes visible still backs the payout: it matures
    /// after the current window, and bears its share of the loss.
    function test_requestUnstake_inTheBankruptcyBlock_stillBacksThePayout() public {
        stake(staker, 10_000 * USDC);
        stake(stayer, 10_000 * USDC);
        fundAccount(bob, 11_000 * USDC);
        openPosition(bob, ETH, -30e18);
        setPrice(ETH, 3600);
        uint256 available = fund.availableWad();
        uint256 shares = fund.balanceOf(staker);
        vm.prank(staker);
        uint256 id = fund.requestUnstake(shares); // front-runs the keeper
        assertEq(fund.availableWad(), available, "a request in its cooldown still counts");
        liquidateAs(keeper, bob, ETH);
        assertEq(ch.totalBadDebtWad(), 0, "the fund paid the whole shortfall");
        vm.warp(fund.unstakeRequest(id).readyAt);
        refreshPrices();
        vm.prank(staker);
        uint256 paid = fund.claim(id);
        assertApproxEq(paid, fund.convertToAssets(fund.balanceOf(stayer)), 1, "the loss is shared");
        assertLt(paid, 10_000 * USDC - 3_500 * USDC, "the requester bore half of the 7,050");
    }

    /// @notice After its claim window a request cannot be claimed; anyone may lapse it, which returns the
    /// shares to their owner and releases the reserve.
    function test_claim_afterTheWindow_revertsAndTheRequestLapses() public {
        uint256 shares = stake(staker, 10_000 * USDC);
        vm.prank(staker);
        uint256 id = fund.requestUnstake(shares);
        IInsuranceFund.UnstakeRequest memory r = fund.unstakeRequest(id);
        uint256 endsAt = uint256(r.readyAt) + r.claimWindow;
        assertEq(r.claimWindow, fund.claimWindow(), "window recorded");
        assertEq(fund.reservedAssets(), 10_000 * USDC, "reserved");

        vm.warp(endsAt - 1);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IInsuranceFund.FundClaimWindowOpen.selector, id, endsAt));
        fund.lapse(id);

        vm.warp(endsAt);
        vm.prank(staker);
        vm.expectRevert(abi.encodeWithSelector(IInsuranceFund.FundClaimWindowPassed.selector, id, endsAt));
        fund.claim(id);
        vm.prank(keeper);
        fund.lapse(id);
        assertEq(fund.balanceOf(staker), shares, "shares back with their owner");
        assertEq(fund.reservedAssets(), 0, "reserve released");
        assertEq(fund.freeAssetsWad(), fund.assetsWad(), "the shares back the promise again");
        vm.expectRevert(abi.encodeWithSelector(IInsuranceFund.FundUnknownRequest.selector, id));
        fund.lapse(id);
    }

    /// @notice The claim window is a risk parameter with hard bounds.
    function test_setClaimWindow_outOfBounds_reverts() public {
        vm.expectRevert(
            abi.encodeWithSelector(IInsuranceFund.FundParamOutOfBounds.selector, bytes32("claimWindow"), 1 days - 1, 1 days, 30 days)
        );
        fund.setClaimWindow(1 days - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IInsuranceFund.FundParamOutOfBounds.selector, bytes32("claimWindow"), 30 days + 1, 1 days, 30 days)
        );
        fund.setClaimWindow(30 days + 1);
        fund.setClaimWindow(2 days);
        assertEq(fund.claimWindow(), 2 days, "set");
    }
}
