// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Vm} from "../utils/Vm.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Bypassing the pool exposure cap with hedged legs, then taking the pool past insolvency.
/// @notice The attack: hedged long/short pairs are opened leg by leg, each opening within the cap; then the
/// short legs are closed, which reducing trades were allowed to do whatever the exposure. Before the fix
/// the attacker was net long 8.1M (2,700 ETH) against a 3.02M cap while a direct 1,200 ETH long was
/// refused; after +15% the pool's equity and margin were deeply negative, the attacker took out far more
/// than the pool held, and a bystander's withdrawal of her own 500k reverted: the tokens were gone.
/// Must hold: no trade sequence takes the pool's exposure past its cap; trader profits are never paid out
/// of other accounts' collateral; a bystander always gets her margin back.
contract HedgedExposureBypassAttackTest is AttackBase {
    int256 internal constant LEG = 900e18; // 2.7M at 3,000: within the cap on its own
    uint256 internal constant LEG_TOKENS = 137_000 * USDC; // 20x initial margin 135k + fee 1.35k

    uint256 internal attackerIn;
    bool internal checkCap = true;

    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 10_000 * USDC);
        fundAccount(carol, 500_000 * USDC); // the bystander: margin, no position
    }

    function leg(uint256 i) internal pure returns (address) {
        return address(uint160(0x1E90000 + i)); // 0-2 long legs, 3-5 short legs
    }

    function tryTrade(address who, int256 size) internal returns (bool ok) {
        vm.prank(who);
        try ch.trade(ETH, size, size > 0 ? type(uint256).max : 0) {
            ok = true;
        } catch {}
    }

    function capWad() internal view returns (uint256) {
        int256 equity = ch.poolEquityWad();
        return equity <= 0 ? 0 : uint256(equity) * ch.riskParams().poolExposureMultipleWad / WAD;
    }

    /// @dev The pool's worst-case exposure in ETH: the larger side's open interest at the price.
    function grossExposureWad() internal view returns (uint256) {
        IClearingHouse.MarketState memory st = ch.marketState(ETH);
        uint256 side = st.longOpenInterestWad > st.shortOpenInterestWad ? st.longOpenInterestWad : st.shortOpenInterestWad;
        return side * uint256(ethFeed.latestAnswer()) * 1e10 / WAD;
    }

    function netExposureWad() internal view returns (uint256) {
        int256 skew = ch.marketState(ETH).sumSizeWad;
        uint256 abs = skew >= 0 ? uint256(skew) : uint256(-skew);
        return abs * uint256(ethFeed.latestAnswer()) * 1e10 / WAD;
    }

    function assertWithinCap(string memory step) internal view {
        if (checkCap) assertLe(netExposureWad(), capWad(), step);
    }

    /// @dev Liquidates every attacker leg the price has put below maintenance, as any keeper would.
    function keeperSweep() internal {
        for (uint256 i; i < 6; ++i) {
            for (uint256 k; k < 4 && ch.healthOf(leg(i)).liquidatable; ++k) liquidateAs(keeper, leg(i), ETH);
        }
    }

    function test_hedgedExposureBypass_closingHedgeLegs_staysWithinCap() public {
        runAttack();
    }

    /// @notice The same attack judged by its outcome only: after +15% the bystander gets her 500k back, the
    /// pool paid no profit it did not hold, and the attacker made no more than one long at the cap would.
    function test_hedgedExposureBypass_afterFifteenPercent_bystanderIsWhole() public {
        checkCap = false;
        runAttack();
    }

    function runAttack() internal {
        assertTrue(!tryTrade(alice, 1_200e18), "a direct 1,200 ETH long passes the cap");

        for (uint256 i; i < 6; ++i) {
            fundAccount(leg(i), LEG_TOKENS);
            attackerIn += LEG_TOKENS;
        }
        // long, short, long, short, ...: each opening is checked against the cap on its own
        for (uint256 i; i < 3; ++i) {
            tryTrade(leg(i), LEG);
            assertWithinCap("an opening leg took the exposure past the cap");
            tryTrade(leg(3 + i), -LEG);
            assertWithinCap("an opening leg took the exposure past the cap");
        }
        // then the short legs are closed
        for (uint256 i; i < 3; ++i) {
            int256 size = ch.positionOf(leg(3 + i), ETH).sizeWad;
            if (size != 0) tryTrade(leg(3 + i), -size);
            assertWithinCap("closing a hedge leg took the exposure past the cap");
        }

        // +15% in 1% steps, keepers liquidating as the price goes
        for (uint256 p = 1; p <= 15; ++p) {
            setPrice(ETH, 3000 * (100 + p) / 100);
            keeperSweep();
            assertGe(ch.marginOf(address(pool)), int256(0), "the pool paid profits it did not hold");
        }
        uint256 attackerOut;
        for (uint256 i; i < 6; ++i) {
            int256 size = ch.positionOf(leg(i), ETH).sizeWad;
            if (size != 0) tryTrade(leg(i), -size);
            int256 margin = ch.marginOf(leg(i));
            if (margin < int256(SCALE)) continue;
            vm.prank(leg(i));
            ch.withdraw(uint256(margin) / SCALE, leg(i));
            attackerOut += uint256(margin) / SCALE;
        }
        assertGe(ch.marginOf(address(pool)), int256(0), "the pool's margin went negative");

        // the bystander takes her own 500k out, in full
        uint256 before = usdc.balanceOf(carol);
        vm.prank(carol);
        ch.withdraw(500_000 * USDC, carol);
        assertEq(usdc.balanceOf(carol) - before, 500_000 * USDC, "the bystander lost her margin");

        // What the attacker made is at most what one long at the cap makes on the same move.
        uint256 oneLegAtTheCap = 1_000e18 * 3000 * 15 / 100 / SCALE; // 1,000 ETH x +450 per ETH, in tokens
        assertLe(attackerOut, attackerIn + oneLegAtTheCap, "the hedged legs earned more than the cap allows");
        assertConserved(actors());
    }

    /// @notice The same legs in any order: neither a trade nor a close of a hedge leg can leave the pool's
    /// exposure above the cap, so the pool's worst case is bounded however the legs were built.
    function testFuzz_hedgedExposureBypass_anyLegOrder_neverPastCap(uint256 orderSeed) public {
        for (uint256 i; i < 6; ++i) fundAccount(leg(i), LEG_TOKENS);
        for (uint256 k; k < 12; ++k) {
            uint256 i = (orderSeed >> (4 * k)) % 6;
            int256 size = ch.positionOf(leg(i), ETH).sizeWad;
            tryTrade(leg(i), size != 0 ? -size : (i < 3 ? LEG : -LEG));
            assertWithinCap("a trade took the exposure past the cap");
        }
    }

    /// @notice Past what the cap protects (a move beyond 1 / k against a full-cap book), a winner is paid
    /// only what the pool holds: the rest is forfeited (`PoolPayoutCapped`), the pool's margin stops at zero,
    /// and the bystander still takes out all of her own margin.
    function test_poolPayout_beyondThePoolsMargin_isCapped_bystanderWhole() public {
        vm.warp(block.timestamp + POOL_COOLDOWN);
        refreshPrices();
        uint256 lpShares = pool.balanceOf(lp);
        vm.prank(lp);
        pool.redeem(lpShares * 9 / 10, lp, lp); // a 100k pool: the cap is about 300k
        fundAccount(alice, 20_000 * USDC);
        openPosition(alice, ETH, 100e18); // 300k, at the cap
        setPrice(ETH, 4_800); // +60%: alice is owed 180k, the pool holds about 100k
        int256 held = ch.marginOf(address(pool));
        int256 aliceBefore = ch.marginOf(alice);
        vm.recordLogs();
        closeAll(alice, ETH);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (uint256 owed, uint256 paid) = _capped(logs);
        assertEq(owed, 180_000 * WAD, "alice was owed her profit");
        assertEq(paid, uint256(held), "she was paid what the pool held");
        assertEq(ch.marginOf(address(pool)), int256(480_000 * WAD * 5 / 10_000 * 8 / 10), "the pool kept only the fee");
        assertEq(ch.marginOf(alice), aliceBefore + held - int256(480_000 * WAD * 5 / 10_000), "paid, less the fee");

        uint256 before = usdc.balanceOf(carol);
        vm.prank(carol);
        ch.withdraw(500_000 * USDC, carol);
        assertEq(usdc.balanceOf(carol) - before, 500_000 * USDC, "the bystander lost her margin");
        assertConserved(actors());
    }

    function _capped(Vm.Log[] memory logs) internal view returns (uint256 owed, uint256 paid) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(ch) && logs[i].topics[0] == IClearingHouse.PoolPayoutCapped.selector) {
                (owed, paid) = abi.decode(logs[i].data, (uint256, uint256));
            }
        }
    }
}
