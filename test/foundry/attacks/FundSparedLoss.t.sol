// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title A payout made after a request's cooldown is spared to that request: the other shares must bear
/// all of it. Two stakers of 10,000; `staker` asks to leave and its cooldown passes; 9 of fee income
/// reaches the fund (20,009); bob's short of 30 ETH goes bankrupt at 3,600 for 7,045: the fund pays its
/// window cap, half of its free assets, (20,009 - 10,000) / 2 = 5,004.5, and the 2,040.5 left as bad
/// debt in the next window, 12,964 remaining. Before the fix every share lost half of each payout and
/// the matured request was given its half back without anyone being charged for it: the 12,964 were
/// promised as 10,000 to the request plus 6,482 to the staker who stayed.
contract FundSparedLossTest is AttackBase {
    uint256 internal constant PAID = 5_004.5e6; // tokens

    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 0);
    }

    /// @dev Returns the matured request of `staker`; `stayer` also asks to leave if `stayerLeaves`. Ends
    /// with the bad debt covered, one day after the bankruptcy.
    function _scene(bool stayerLeaves) internal returns (uint256 id, uint256 stayerId) {
        id = maturedRequestBesideAStayer();
        if (stayerLeaves) stayerId = requestAll(stayer); // matures in 7 days: bears the payout
        fundAccount(bob, 11_000 * USDC);
        openPosition(bob, ETH, -30e18); // fee 45, of which 9 reach the fund
        setPrice(ETH, 3600);
        uint256 marginBefore = fundMargin();
        liquidateAs(keeper, bob, ETH);
        assertEq(marginBefore - fundMargin(), PAID * SCALE, "the fund paid its window cap");
        _settleDebt(); // claims wait while bad debt is outstanding
        assertEq(ch.totalBadDebtWad(), 0, "the next window covered the rest");
        assertEq(fund.totalAssets(), 12_964 * USDC, "two payouts: 7,045");
    }

    function _assertNear(uint256 a, uint256 b, uint256 tolerance, string memory message) internal pure {
        assertLe(a > b ? a - b : b - a, tolerance, message);
    }

    function _settleDebt() internal {
        vm.warp(block.timestamp + GRACE);
        refreshPrices();
        if (shortDebt(ETH) != 0) ch.socializeBadDebt(ETH, IClearingHouse.Side.Short);
    }

    /// @notice The state of `testFuzz_fundLimits_exactInEveryState(887)`, built by hand: a request that
    /// matured before the payout and one in its cooldown. What they may claim fits in the fund (before the
    /// fix: 10,000 + 7,502.25 against 15,004.5), and each claim, the last one included, pays its claimable.
    function test_claimable_neverExceedsAssets_afterALossSparesAMaturedRequest() public {
        (uint256 id, uint256 stayerId) = _scene(true);
        uint256 owedStaker = fund.claimable(id);
        uint256 owedStayer = fund.claimable(stayerId);
        assertEq(owedStaker, 10_000 * USDC, "the matured request is spared the payouts");
        _assertNear(owedStayer, 2_959.5e6, 1, "the request in its cooldown bears all of them");
        assertLe(owedStaker + owedStayer, fund.totalAssets(), "open requests may claim more than the fund holds");

        vm.prank(staker);
        assertEq(fund.claim(id), owedStaker, "the first claim pays its claimable");
        vm.warp(fund.unstakeRequest(stayerId).readyAt);
        refreshPrices();
        uint256 last = fund.claimable(stayerId);
        _assertNear(last, 2_964 * USDC, 1, "the last claim gets the 4.5 the first forfeited");
        vm.prank(stayer);
        assertEq(fund.claim(stayerId), last, "the last claim pays its claimable");
        _assertNear(usdc.balanceOf(staker) + usdc.balanceOf(stayer), 12_964 * USDC, 1, "the claims pay out the fund");
        assertLe(fund.assetsWad(), SCALE, "at most dust is left");
        assertLe(fund.sparedWad(), 2, "at most rounding dust is left spared");
    }

    /// @notice Worked example: one staker who stays, one matured request, payouts of 7,045. The liability
    /// is the 7,045 the request's half of the shares would have lost; the stayer's shares fall from
    /// 10,004.5 to 2,959.5; the request claims its 10,000 (its 4.5 of fees above it go to the stayer),
    /// leaving the stayer the whole fund, 2,964.
    function test_recordLoss_theStakerWhoStaysBearsThePayout() public {
        (uint256 id,) = _scene(false);
        // The virtual shares (1e6 against 1e16 each) bear 1e-10 of the payouts, within a token unit.
        _assertNear(fund.sparedWad(), 7_045 * WAD, SCALE, "the liability: the request's half of the payouts");
        _assertNear(fund.shareAssets(), 5_919 * USDC, 1, "the assets behind shares: margin - liability");
        uint256 stayerValue = fund.convertToAssets(fund.balanceOf(stayer));
        _assertNear(stayerValue, 2_959.5e6, 1, "the stayer bore the whole payouts");
        assertEq(fund.claimable(id), 10_000 * USDC, "the request claims its value at request");
        assertLe(stayerValue + fund.claimable(id), fund.totalAssets(), "the promises fit in the margin");

        vm.prank(staker);
        fund.claim(id);
        assertLe(fund.sparedWad(), 2, "the claim released its liability (wei of rounding left)");
        _assertNear(
            fund.convertToAssets(fund.balanceOf(stayer)), 2_964 * USDC, 1, "the forfeited fees went to the stayer"
        );
        assertEq(fund.totalAssets(), 2_964 * USDC, "the fund holds the stayer's value");
    }

    /// @notice A request that lapses gives up what it was spared: its shares come back at the price every
    /// share has after the payouts (the stayer's 2,959.5 and the request's 10,004.5 become 6,482 each).
    function test_lapse_givesTheSparedAddBackToTheStakers() public {
        (uint256 id,) = _scene(false);
        vm.warp(uint256(fund.unstakeRequest(id).readyAt) + fund.unstakeRequest(id).claimWindow);
        refreshPrices();
        fund.lapse(id);
        assertLe(fund.sparedWad(), 2, "the lapse released the liability (wei of rounding left)");
        _assertNear(fund.shareAssets(), fund.totalAssets(), 1, "shares are priced on the whole margin again");
        _assertNear(fund.convertToAssets(fund.balanceOf(staker)), 6_482 * USDC, 1, "half of the margin");
        _assertNear(fund.convertToAssets(fund.balanceOf(stayer)), 6_482 * USDC, 1, "half of the margin");
    }

    /// @notice Residual risk, bounded: both stakers' requests have matured and gained 4.5 each of fees
    /// above their value at request, so only those 9 are free and the fund pays half, 4.5. No share bears
    /// it but the virtual ones: the liability exceeds the margin, shares are priced at zero and staking
    /// closes, yet both claims (10,000 each, their values at request) fit and are paid in full.
    function test_recordLoss_everyShareMatured_claimsStillFit() public {
        stake(staker, 10_000 * USDC);
        stake(stayer, 10_000 * USDC);
        uint256 shares = fund.balanceOf(staker);
        vm.prank(staker);
        uint256 a = fund.requestUnstake(shares);
        vm.prank(stayer);
        uint256 b = fund.requestUnstake(shares);
        vm.warp(block.timestamp + FUND_COOLDOWN);
        refreshPrices();
        fundAccount(bob, 11_000 * USDC);
        openPosition(bob, ETH, -30e18); // 9 of fees: each request is worth 10,004.5
        setPrice(ETH, 3600);
        assertEq(fund.availableWad(), 4.5e18, "half of the 9 free");
        liquidateAs(keeper, bob, ETH);
        assertEq(fund.totalAssets(), 20_004.5e6, "the fund paid 4.5");
        assertGt(fund.sparedWad(), fund.assetsWad(), "the liability exceeds the margin");
        assertEq(fund.shareAssets(), 0, "shares priced at zero");
        assertEq(fund.maxDeposit(address(this)), 0, "staking closed");

        uint256 owedA = fund.claimable(a);
        uint256 owedB = fund.claimable(b);
        assertEq(owedA, 10_000 * USDC, "value at request");
        assertEq(owedB, 10_000 * USDC, "value at request");
        assertLe(owedA + owedB, fund.totalAssets(), "the claims fit in the margin");
        _settleDebt();
        vm.prank(staker);
        assertEq(fund.claim(a), owedA, "first claim paid in full");
        vm.prank(stayer);
        assertEq(fund.claim(b), owedB, "second claim paid in full");
        assertLe(fund.sparedWad(), 2, "both claims released the liability");
        assertEq(fund.totalSupply(), 0, "every share left");
        assertGt(fund.maxDeposit(address(this)), 0, "staking open again");
    }
}
