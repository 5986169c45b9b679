// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {ClearingHouse} from "../../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockUSDC} from "../../../contracts/mocks/MockUSDC.sol";
import {Vm} from "../utils/Vm.sol";
import {HandlerBase} from "./HandlerBase.sol";
import {LiquidationChecks} from "./LiquidationChecks.sol";

/// @title Bad debt: cover from the fund, auto-deleverage, socialise, and the haircut on a profitable close.
abstract contract AdlChecks is LiquidationChecks {
    /// @dev The ADL conditions a trade on the opposite side of bad debt met before it ran.
    struct AdlContext {
        IClearingHouse.Side debtSide;
        uint256 debt;
        uint256 available;
        bool adlConditions; // the debt exceeds what the fund can pay now
    }

    /// @dev One ADL target before the call.
    struct Target {
        address account;
        uint256 score;
        int256 pnl;
        int256 equity;
    }

    constructor(
        ClearingHouse ch_,
        LiquidityPool pool_,
        InsuranceFund fund_,
        MockUSDC usdc_,
        MockAggregator eth,
        MockAggregator btc
    ) HandlerBase(ch_, pool_, fund_, usdc_, eth, btc) {}

    function _flatNow(address a) internal view returns (bool) {
        return ch.openMarketsOf(a).length == 0;
    }

    // ================================================================ closing during ADL

    function _adlContext(uint256 m, int256 size) internal view returns (AdlContext memory c) {
        if (size == 0) return c;
        c.debtSide = size > 0 ? IClearingHouse.Side.Short : IClearingHouse.Side.Long;
        c.debt = ch.badDebtOf(m, c.debtSide);
        c.available = fund.availableWad();
        c.adlConditions = c.debt > c.available;
    }

    /// @dev A fill that closes profitable size opposite outstanding bad debt, while ADL could run, pays the
    /// part of the debt the fund cannot pay now from that profit first, exactly as ADL would: closing,
    /// reducing or flipping cannot dodge ADL, and no donation below the debt switches it off.
    function _checkCloseHaircut(Vm.Log[] memory logs, AdlContext memory c, int256 old, int256 delta) internal {
        int256 realized;
        uint256 haircut;
        bool haircutSeen;
        for (uint256 i; i < logs.length; ++i) {
            if (_isCh(logs[i], IClearingHouse.PositionChanged.selector)) {
                (,,,, realized,) = abi.decode(logs[i].data, (int256, int256, uint256, uint256, int256, int256));
            } else if (_isCh(logs[i], IClearingHouse.ProfitHaircutOnClose.selector)) {
                (haircut,) = abi.decode(logs[i].data, (uint256, uint256));
                haircutSeen = true;
            }
        }
        bool closesSome = old != 0 && (old > 0) != (delta > 0);
        if (closesSome && realized > 0 && c.adlConditions) {
            uint256 uncovered = c.debt - c.available;
            uint256 expected = uint256(realized) < uncovered ? uint256(realized) : uncovered;
            assertTrue(haircutSeen, "ADL dodged: profit closed opposite bad debt without a haircut");
            assertEq(haircut, expected, "close haircut != min(profit, debt)");
        } else {
            assertTrue(!haircutSeen, "haircut outside the ADL conditions");
        }
        ghostBadDebtRepaid += haircut;
        if (haircutSeen) ++successes["closeHaircut"];
    }

    // ================================================================ bad debt entry points

    /// @dev The first market side with bad debt, starting from the seed; else the seed's own.
    function _debtSide(uint256 seed) internal view returns (uint256 m, IClearingHouse.Side side) {
        for (uint256 k; k < 4; ++k) {
            uint256 i = (seed % 4 + k) % 4;
            m = i / 2;
            side = IClearingHouse.Side(i % 2);
            if (ch.badDebtOf(m, side) != 0) return (m, side);
        }
        return (seed % 4 / 2, IClearingHouse.Side(seed % 2));
    }

    function coverBadDebt(uint256 seed) external {
        (uint256 m, IClearingHouse.Side side) = _debtSide(seed);
        uint256 debt = ch.badDebtOf(m, side);
        FundView memory f = _fundView();
        try ch.coverBadDebt(m, side) returns (uint256 covered) {
            assertGt(covered, 0, "cover paid nothing");
            assertLe(covered, debt, "cover above the debt");
            assertLe(covered, f.available, "cover above what the fund had available");
            assertLe(covered, _payoutBound(f, 0), "cover beyond the window cap");
            assertEq(ch.badDebtOf(m, side), debt - covered, "debt after cover");
            assertEq(ch.marginOf(address(fund)), f.margin - int256(covered), "fund after cover");
            ghostBadDebtRepaid += covered;
            ghostFundPaidWad += covered;
            _count("coverBadDebt", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            if (s == IClearingHouse.BadDebtNone.selector) assertEq(debt, 0, "BadDebtNone with debt");
            else if (s == IClearingHouse.BadDebtFundEmpty.selector) assertEq(f.available, 0, "FundEmpty with funds");
            else _unexpected("coverBadDebt", reason);
            _count("coverBadDebt", false);
        }
    }

    /// @notice Each market side's own grace (from its last recorded debt); the fund pays what it can first,
    /// the pool the rest, at most its margin: neither goes negative.
    function socializeBadDebt(uint256 seed) external {
        (uint256 m, IClearingHouse.Side side) = _debtSide(seed);
        uint256 debt = ch.badDebtOf(m, side);
        uint256 recordedAt = ch.badDebtRecordedAt(m, side);
        FundView memory f = _fundView();
        int256 poolMargin = ch.marginOf(address(pool));
        vm.recordLogs();
        try ch.socializeBadDebt(m, side) returns (uint256 amount) {
            assertGe(block.timestamp, recordedAt + ch.riskParams().socializeGracePeriod, "socialised inside the grace");
            uint256 covered = _pos(f.margin - ch.marginOf(address(fund)));
            assertEq(covered, f.available < debt ? f.available : debt, "the fund did not pay what it could first");
            assertLe(amount, debt - covered, "socialised more than the fund left");
            assertLe(amount, _pos(poolMargin), "socialised beyond the pool's margin");
            assertEq(ch.marginOf(address(pool)), poolMargin - int256(amount), "pool charged");
            assertEq(ch.badDebtOf(m, side), debt - covered - amount, "debt after socialising");
            ghostBadDebtRepaid += covered + amount;
            ghostFundPaidWad += covered;
            _count("socialize", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            if (s == IClearingHouse.BadDebtNone.selector) assertEq(debt, 0, "BadDebtNone with debt");
            else if (s == IClearingHouse.BadDebtGracePeriod.selector) assertTrue(debt != 0, "grace without debt");
            else _unexpected("socializeBadDebt", reason);
            _count("socialize", false);
        }
    }

    // ================================================================ ADL

    /// @notice The ADL keeper ranks every trader by the contract's own `adlScoresOf`, highest first, and
    /// deleverages; one time in five the order is reversed, which must revert unless the first target alone
    /// suffices. Global rank order: the targets that absorbed anything are a prefix of the ranking of every
    /// eligible trader, in this call and (each call starting from the ranking of its own state) across calls.
    function autoDeleverage(uint256 seed) external {
        (uint256 m, IClearingHouse.Side side) = _debtSide(seed);
        Target[] memory targets = _rankTargets(m, side);
        if (targets.length == 0) return;
        if (ch.adlPolicyOf(m) == IClearingHouse.AdlPolicy.ProRata) {
            return _autoDeleverageProRata(seed, m, side, targets);
        }
        bool reversed = seed % 5 == 0 && targets.length > 1 && targets[0].score > targets[targets.length - 1].score;
        if (reversed) _reverse(targets);
        address[] memory list = new address[](targets.length);
        for (uint256 i; i < list.length; ++i) list[i] = targets[i].account;

        uint256 debt = ch.badDebtOf(m, side);
        uint256 available = fund.availableWad();
        uint256 total = ch.totalBadDebtWad();
        (int256[] memory margins, bool[] memory flat) = (_margins(), _flat());
        vm.recordLogs();
        vm.prank(keepers[0]);
        try ch.autoDeleverage(m, list) returns (uint256 absorbed) {
            assertTrue(debt > available, "ADL ran while the fund could pay the debt");
            assertTrue(_fresh(m), "ADL on a stale price");
            assertLe(absorbed, debt - available, "ADL took what the fund could pay");
            assertEq(ch.badDebtOf(m, side), debt - absorbed, "debt after ADL");
            assertEq(ch.totalBadDebtWad(), total - absorbed, "total debt after ADL");
            _checkAdlLogs(vm.getRecordedLogs(), targets, absorbed);
            _checkBystanders(margins, flat, address(0));
            ghostBadDebtRepaid += absorbed;
            _count("adl", true);
        } catch (bytes memory reason) {
            _adlReverted(reason, debt, available, reversed, m);
            _count("adl", false);
        }
    }

    /// @notice The risk admin switches a market's ADL policy: accepted exactly when neither side of the
    /// market carries bad debt, and then read back; anyone else is refused.
    function setAdlPolicy(uint256 seed) external {
        uint256 m = seed % 2;
        IClearingHouse.AdlPolicy policy = IClearingHouse.AdlPolicy((seed >> 1) % 2);
        uint256 debt = ch.badDebtOf(m, IClearingHouse.Side.Long) + ch.badDebtOf(m, IClearingHouse.Side.Short);
        vm.prank(_pick(traders, seed >> 2));
        try ch.setAdlPolicy(m, policy) {
            revert("a trader set the ADL policy");
        } catch {}
        try ch.setAdlPolicy(m, policy) {
            assertEq(debt, 0, "ADL policy changed while the market carries bad debt");
            assertTrue(ch.adlPolicyOf(m) == policy, "ADL policy not stored");
            _count("adlPolicy", true);
        } catch (bytes memory reason) {
            assertTrue(_sel(reason) == IClearingHouse.AdlPolicyLocked.selector, "policy refused, not for debt");
            assertTrue(debt != 0, "AdlPolicyLocked without debt");
            _count("adlPolicy", false);
        }
    }

    /// @notice Pro rata: the ADL keeper presents every eligible trader on the winning side in ascending
    /// address order; one time in five one of them is listed twice, which must revert. On success: each
    /// haircut is at most debtTaken x its profit / the presented profit (rounded up), within its profit,
    /// taken from profit only; the haircuts add up to what the debt fell by, never above the debt the fund
    /// could not pay; the coverage event reports the presented size.
    function _autoDeleverageProRata(uint256 seed, uint256 m, IClearingHouse.Side side, Target[] memory targets)
        internal
    {
        _sortByAddress(targets);
        bool duplicate = seed % 5 == 0;
        address[] memory list = new address[](targets.length + (duplicate ? 1 : 0));
        for (uint256 i; i < targets.length; ++i) list[i] = targets[i].account;
        if (duplicate) list[targets.length] = targets[(seed >> 8) % targets.length].account;
        uint256 debt = ch.badDebtOf(m, side);
        uint256 available = fund.availableWad();
        (int256[] memory margins, bool[] memory flat) = (_margins(), _flat());
        vm.recordLogs();
        vm.prank(keepers[0]);
        try ch.autoDeleverage(m, list) returns (uint256 absorbed) {
            assertTrue(!duplicate, "a target listed twice was accepted");
            assertTrue(debt > available, "ADL ran while the fund could pay the debt");
            assertLe(absorbed, debt - available, "ADL took what the fund could pay");
            assertEq(ch.badDebtOf(m, side), debt - absorbed, "debt after ADL");
            _checkProRataLogs(vm.getRecordedLogs(), targets, absorbed, debt - available);
            _checkBystanders(margins, flat, address(0));
            ghostBadDebtRepaid += absorbed;
            _count("adlProRata", true);
        } catch (bytes memory reason) {
            bytes4 sel = _sel(reason);
            if (sel == IClearingHouse.AdlTargetsNotAscending.selector) assertTrue(duplicate, "ascending set refused");
            else _adlReverted(reason, debt, available, false, m);
            _count("adlProRata", false);
        }
    }

    /// @dev Invariant of the pro-rata policy: nobody pays more than its share of the set presented.
    function _checkProRataLogs(Vm.Log[] memory logs, Target[] memory targets, uint256 absorbed, uint256 owed)
        internal
    {
        uint256 sumPnl;
        for (uint256 i; i < targets.length; ++i) sumPnl += _pos(targets[i].pnl);
        uint256 taken = owed < sumPnl ? owed : sumPnl;
        uint256 sum;
        for (uint256 i; i < logs.length; ++i) {
            if (_isCh(logs[i], IClearingHouse.AdlProRataApplied.selector)) {
                (,, uint256 presentedPnl,,, uint256 debtTaken, uint256 reported) =
                    abi.decode(logs[i].data, (uint8, uint256, uint256, uint256, uint256, uint256, uint256));
                assertEq(presentedPnl, sumPnl, "presented profit");
                assertEq(debtTaken, taken, "debt taken");
                assertEq(reported, absorbed, "reported absorbed");
                continue;
            }
            if (!_isCh(logs[i], IClearingHouse.AutoDeleveraged.selector)) continue;
            address account = _topicAddress(logs[i], 1);
            Target memory t = targets[_targetIndex(targets, account)];
            (,,, uint256 haircut,) = abi.decode(logs[i].data, (uint256, int256, uint256, uint256, uint256));
            uint256 ceilShare = (taken * _pos(t.pnl) + sumPnl - 1) / sumPnl;
            assertLe(haircut, ceilShare, "a target paid more than its pro-rata share");
            assertLe(haircut, _pos(t.pnl), "ADL took more than the profit");
            int256 drop = t.equity - ch.healthOf(account).equityWad;
            assertApproxEq(_abs(drop), haircut + _capped(logs, account), uint256(DUST), "ADL took principal");
            sum += haircut;
            ++successes["adlStep"];
        }
        assertEq(sum, absorbed, "haircuts != absorbed");
    }

    function _sortByAddress(Target[] memory t) internal pure {
        for (uint256 i = 1; i < t.length; ++i) {
            Target memory x = t[i];
            uint256 j = i;
            while (j > 0 && t[j - 1].account > x.account) {
                t[j] = t[j - 1];
                --j;
            }
            t[j] = x;
        }
    }

    /// @notice Anyone but an ADL keeper, on any target list (lowest-ranked first, or one low target):
    /// always refused, whatever the debt and however long it has been outstanding.
    function adlAnyCaller(uint256 seed) external {
        (uint256 m, IClearingHouse.Side side) = _debtSide(seed);
        address caller = seed % 3 == 0 ? keepers[1] : _pick(traders, seed / 3);
        Target[] memory targets = _rankTargets(m, side);
        address[] memory list = new address[](targets.length == 0 ? 1 : 1 + (seed >> 8) % targets.length);
        if (targets.length == 0) list[0] = _pick(traders, seed >> 16);
        for (uint256 i; i < list.length && targets.length != 0; ++i) {
            list[i] = targets[targets.length - 1 - i].account; // lowest ranked first
        }
        uint256 debt = ch.badDebtOf(m, side);
        vm.prank(caller);
        try ch.autoDeleverage(m, list) {
            revert("a caller without ADL_KEEPER_ROLE deleveraged");
        } catch (bytes memory reason) {
            assertTrue(_sel(reason) == IAccessControl.AccessControlUnauthorizedAccount.selector, "refused, not for the role");
            assertEq(ch.badDebtOf(m, side), debt, "a refused ADL changed the debt");
        }
        _count("adlAnyCaller", true);
    }

    function _adlReverted(bytes memory reason, uint256 debt, uint256 available, bool reversed, uint256 m)
        internal
        view
    {
        bytes4 s = _sel(reason);
        if (s == IClearingHouse.AdlNotRequired.selector) {
            assertTrue(debt <= available, "AdlNotRequired while the fund cannot pay the debt");
        } else if (s == IClearingHouse.AdlOutOfOrder.selector) {
            assertTrue(reversed, "AdlOutOfOrder for targets in the contract's own order");
        } else if (s != IOracleAdapter.OracleStalePrice.selector || (_fresh(0) && _fresh(1) && _fresh(m))) {
            _unexpected("autoDeleverage", reason);
        }
    }

    /// @dev Invariants 5, 6, 10: scores non-increasing, each haircut within that target's profit, the
    /// target's equity falls by its haircut only (never principal), and the haircuts add up to `absorbed`.
    function _checkAdlLogs(Vm.Log[] memory logs, Target[] memory targets, uint256 absorbed) internal {
        uint256 previous = type(uint256).max;
        uint256 sum;
        uint256 step;
        for (uint256 i; i < logs.length; ++i) {
            if (!_isCh(logs[i], IClearingHouse.AutoDeleveraged.selector)) continue;
            address account = _topicAddress(logs[i], 1);
            // global rank order: the k-th step is the k-th ranked eligible trader (ties in either order)
            assertEq(targets[step++].score, targets[_targetIndex(targets, account)].score, "ADL skipped a higher rank");
            (uint256 score,,, uint256 haircut,) = abi.decode(logs[i].data, (uint256, int256, uint256, uint256, uint256));
            assertLe(score, previous, "ADL scores rose within one call");
            previous = score;
            Target memory t = targets[_targetIndex(targets, account)];
            assertEq(score, t.score, "ADL score != adlScoresOf");
            assertLe(haircut, _pos(t.pnl), "ADL took more than the profit");
            int256 drop = t.equity - ch.healthOf(account).equityWad;
            // principal untouched: the equity falls by the haircut, plus any profit the pool could not pay
            assertApproxEq(_abs(drop), haircut + _capped(logs, account), uint256(DUST), "ADL took principal");
            sum += haircut;
            ++successes["adlStep"];
        }
        assertEq(sum, absorbed, "haircuts != absorbed");
    }

    /// @dev What `PoolPayoutCapped` events in `logs` withheld from `account`.
    function _capped(Vm.Log[] memory logs, address account) internal view returns (uint256 withheld) {
        for (uint256 i; i < logs.length; ++i) {
            if (!_isCh(logs[i], IClearingHouse.PoolPayoutCapped.selector) || _topicAddress(logs[i], 1) != account) {
                continue;
            }
            (uint256 owed, uint256 paid) = abi.decode(logs[i].data, (uint256, uint256));
            withheld += owed - paid;
        }
    }

    function _rankTargets(uint256 m, IClearingHouse.Side side) internal view returns (Target[] memory out) {
        uint256[] memory scores;
        try ch.adlScoresOf(m, traders) returns (uint256[] memory s) {
            scores = s;
        } catch {
            return out;
        }
        uint256 n;
        Target[] memory all = new Target[](traders.length);
        for (uint256 i; i < traders.length; ++i) {
            IClearingHouse.Position memory p = ch.positionOf(traders[i], m);
            bool opposite = side == IClearingHouse.Side.Short ? p.sizeWad > 0 : p.sizeWad < 0;
            if (scores[i] == 0 || !opposite) continue;
            all[n++] = Target(traders[i], scores[i], _upnl(p, m), ch.healthOf(traders[i]).equityWad);
        }
        out = new Target[](n);
        for (uint256 i; i < n; ++i) out[i] = all[i];
        _sortDesc(out);
    }

    /// @dev size x price (rounded toward -inf) - open notional, as the contract marks it.
    function _upnl(IClearingHouse.Position memory p, uint256 m) internal view returns (int256) {
        uint256 price = _feedPrice(m);
        int256 size = p.sizeWad;
        int256 mark = size >= 0
            ? int256(uint256(size) * price / WAD)
            : -int256((uint256(-size) * price + WAD - 1) / WAD);
        return mark - p.openNotionalWad;
    }

    function _sortDesc(Target[] memory t) internal pure {
        for (uint256 i = 1; i < t.length; ++i) {
            Target memory x = t[i];
            uint256 j = i;
            while (j > 0 && t[j - 1].score < x.score) {
                t[j] = t[j - 1];
                --j;
            }
            t[j] = x;
        }
    }

    function _reverse(Target[] memory t) internal pure {
        for (uint256 i; i < t.length / 2; ++i) (t[i], t[t.length - 1 - i]) = (t[t.length - 1 - i], t[i]);
    }

    function _targetIndex(Target[] memory t, address a) internal pure returns (uint256) {
        for (uint256 i; i < t.length; ++i) {
            if (t[i].account == a) return i;
        }
        revert("ADL closed an account that was not a target");
    }
}
