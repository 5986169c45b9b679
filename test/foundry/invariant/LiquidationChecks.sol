// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Vm} from "../utils/Vm.sol";
import {HandlerBase} from "./HandlerBase.sol";

/// @title What a successful liquidation must satisfy, read from its events and the state around it.
abstract contract LiquidationChecks is HandlerBase {
    /// @dev One `Liquidated` event, decoded.
    struct Liq {
        address account;
        uint256 marketId;
        address keeper;
        uint256 penalty;
        uint256 reward;
        uint256 padding;
        uint256 shortfall;
        bool bankrupt;
    }

    /// @dev One `ShortfallSettled` event, decoded.
    struct Settled {
        address account;
        uint256 shortfall;
        uint256 covered;
        uint256 badDebt;
    }

    /// @dev What a batch or a single liquidation added up to.
    struct Totals {
        uint256 count;
        uint256 rewards;
        uint256 paddings;
        uint256 covered;
        uint256 badDebt;
        uint256 recorded;
    }

    function _decodeLiq(Vm.Log memory log) internal pure returns (Liq memory l) {
        l.account = _topicAddress(log, 1);
        l.marketId = uint256(log.topics[2]);
        l.keeper = _topicAddress(log, 3);
        (l.penalty, l.reward, l.padding, l.shortfall, l.bankrupt) =
            abi.decode(log.data, (uint256, uint256, uint256, uint256, bool));
    }

    function _decodeSettled(Vm.Log memory log) internal pure returns (Settled memory s) {
        s.account = _topicAddress(log, 1);
        (s.shortfall, s.covered, s.badDebt) = abi.decode(log.data, (uint256, uint256, uint256));
    }

    /// @dev Invariant 9 for one liquidation: the reward within [floor, ceiling] and never above the equity
    /// the account had; the account pays at most its positive equity; a bankrupt account's shortfall is
    /// exactly its negative equity. So the fund pays nothing to a keeper: it covers only an account's real
    /// trading shortfall, which it would cover whoever liquidated.
    /// `capped` is what the pool owed the account in this liquidation but could not pay (`PoolPayoutCapped`:
    /// the pool pays profit and funding only from its margin), which the account's equity counted.
    function _checkReward(Liq memory l, AccountView memory before, uint256 capped) internal view {
        IClearingHouse.RiskParams memory r = ch.riskParams();
        uint256 equity = _pos(before.equity);
        uint256 floor = r.rewardFloorWad < equity ? r.rewardFloorWad : equity;
        assertGe(l.reward, floor, "keeper reward below the floor the account could pay");
        assertLe(l.reward, r.rewardCeilingWad, "keeper reward above ceiling");
        assertLe(l.reward, equity, "keeper reward beyond the account's equity: the fund paid a keeper");
        assertLe(l.penalty, equity, "penalty above the equity left");
        assertLe(l.reward + l.padding, equity, "account charged beyond its equity");
        if (!l.bankrupt) {
            assertEq(l.shortfall, 0, "shortfall on a solvent liquidation");
            assertGe(before.equity, int256(uint256(r.rewardFloorWad)), "solvent path below the floor");
        } else {
            assertLt(before.equity, int256(uint256(r.rewardFloorWad)), "bankrupt path above the floor");
            // The account was closed at the mark: its shortfall is its negative equity plus what the pool
            // could not pay it, nothing on top.
            assertApproxEq(
                l.shortfall, _pos(-before.equity) + capped, uint256(4 * DUST), "shortfall beyond the negative equity"
            );
        }
    }

    /// @dev Invariant 4 after one liquidation, on the account's state after it.
    function _checkLiquidatedAccount(Liq memory l, AccountView memory before, uint256 capped) internal view {
        if (l.bankrupt) {
            // Invariant 8: a shortfall is settled on a flat account, whose margin is reset to zero.
            assertEq(ch.openMarketsOf(l.account).length, 0, "bankrupt account left with a position");
            if (l.shortfall != 0) assertEq(ch.marginOf(l.account), 0, "bankrupt account margin not reset");
            return;
        }
        AccountView memory afterwards = _account(l.account);
        assertTrue(afterwards.ok, "health unreadable after liquidation");
        int256 drop = before.equity - afterwards.equity;
        assertApproxEq(_abs(drop), l.reward + l.padding + capped, uint256(DUST), "equity drop != charge");
        if (ch.positionOf(l.account, l.marketId).sizeWad != 0) {
            int256 deficitBefore = int256(before.mmr) - before.equity;
            int256 deficitAfter = int256(afterwards.mmr) - afterwards.equity;
            assertLt(deficitAfter, deficitBefore, "partial liquidation did not leave the account healthier");
        }
    }

    /// @dev Sums the events of one call and checks each liquidation and settlement in it.
    function _checkLiquidationLogs(Vm.Log[] memory logs, AccountView[] memory before, address[] memory who)
        internal
        returns (Totals memory t)
    {
        uint256 capped; // owed but unpaid by the pool since the last Liquidated event (one entry's events)
        for (uint256 i; i < logs.length; ++i) {
            if (_isCh(logs[i], IClearingHouse.PoolPayoutCapped.selector)) {
                (uint256 owed, uint256 paid) = abi.decode(logs[i].data, (uint256, uint256));
                capped += owed - paid;
            } else if (_isCh(logs[i], IClearingHouse.Liquidated.selector)) {
                Liq memory l = _decodeLiq(logs[i]);
                AccountView memory b = before[_indexOf(who, l.account)];
                assertTrue(b.ok && b.liquidatable, "liquidated an account that was not liquidatable");
                assertTrue(b.fresh, "liquidated on a stale price");
                _checkReward(l, b, capped);
                _checkLiquidatedAccount(l, b, capped);
                capped = 0;
                ++t.count;
                t.rewards += l.reward;
                t.paddings += l.padding;
                if (l.bankrupt) ++successes["bankrupt"];
                else if (ch.positionOf(l.account, l.marketId).sizeWad != 0) ++successes["partial"];
            } else if (_isCh(logs[i], IClearingHouse.ShortfallSettled.selector)) {
                Settled memory s = _decodeSettled(logs[i]);
                assertEq(s.covered + s.badDebt, s.shortfall, "shortfall split");
                assertEq(ch.openMarketsOf(s.account).length, 0, "shortfall settled on an open account");
                t.covered += s.covered;
                t.badDebt += s.badDebt;
            } else if (_isCh(logs[i], IClearingHouse.BadDebtRecorded.selector)) {
                (, uint256 amount,) = abi.decode(logs[i].data, (IClearingHouse.Side, uint256, uint256));
                t.recorded += amount;
            }
        }
        assertEq(t.recorded, t.badDebt, "bad debt recorded != bad debt settled");
        ghostBadDebtRecorded += t.badDebt;
        ghostFundPaidWad += t.covered;
    }

    /// @dev Invariant 3 for the fund across one call: it received the padding, paid at most what the
    /// shortfalls, its assets and the window allowed, and never went negative.
    function _checkFundAfter(FundView memory f, Totals memory t) internal view {
        int256 expected = f.margin + int256(t.paddings) - int256(t.covered);
        assertEq(ch.marginOf(address(fund)), expected, "fund margin != before + padding - covered");
        assertLe(t.covered, _payoutBound(f, t.paddings), "fund paid beyond its assets or window cap");
        assertGe(ch.marginOf(address(fund)), int256(0), "fund went negative");
    }

    function _indexOf(address[] memory list, address a) internal pure returns (uint256) {
        for (uint256 i; i < list.length; ++i) {
            if (list[i] == a) return i;
        }
        revert("liquidated an account outside the call");
    }
}
