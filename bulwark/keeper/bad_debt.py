"""Bad-debt mechanics: for each market side with debt, ask :func:`decisions.side_action` what to do
(reading the ADL targets and the side's grace clock only when it asks), then cover it from the
fund, deleverage the targets :func:`decisions.adl_targets` names, or socialise it; repeated on
fresh state until nothing changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bulwark.chain.rpc import BlockRef
from bulwark.chain.sender import Simulation
from bulwark.core.logs import get_logger, human, kv
from bulwark.keeper import prorata
from bulwark.keeper.accounting import SIDES, Accounting
from bulwark.keeper.decisions import (
    Act,
    BadDebtPolicy,
    Sharding,
    SideState,
    adl_targets,
    bad_debt_sides,
    bad_debt_turn,
    side_action,
    socializable_at,
    trim_adl_targets,
)
from bulwark.keeper.parts import Parts
from bulwark.keeper.results import PassResult
from bulwark.keeper.screening import (
    MarketSnapshot,
    adl_scores,
    adl_side_holders,
    confirm_adl_scores,
)

log = get_logger()
BAD_DEBT_ROUNDS = 6  # cover/ADL/socialise steps within one round
BAD_DEBT_ACTIONS = frozenset({"coverBadDebt", "autoDeleverage", "socializeBadDebt"})


class BadDebtSettler:
    """Settles bad debt for one keeper; remembers since which block it is outstanding (backup
    keepers wait `backup_delay_blocks` from there)."""

    def __init__(
        self,
        parts: Parts,
        accounting: Accounting,
        advance: Callable[[], tuple[BlockRef, MarketSnapshot]],
    ) -> None:
        self.parts = parts
        self.accounting = accounting
        self.advance = advance  # after own transactions: the index and snapshot at the new head
        self.seen_at: int | None = None  # the block at which outstanding bad debt was first seen

    def settle(self, snap: MarketSnapshot, result: PassResult) -> tuple[MarketSnapshot, bool]:
        """Cover from the fund while it has something available; else ADL in score order; else,
        after the grace period with no target left, socialise. Repeats on fresh state until nothing
        changes; returns the last snapshot and whether any transaction succeeded."""
        settled = False
        for _ in range(BAD_DEBT_ROUNDS):
            if not self._mine(snap) or self.parts.stopping:
                break
            if any(
                k[0] in BAD_DEBT_ACTIONS
                for k in self.parts.sender.in_flight()
                if isinstance(k, tuple)
            ):
                log.info("bad debt: an earlier transaction is still pending; waiting for it")
                break
            acted = False
            for market, side, debt in bad_debt_sides(snap.bad_debt):
                acted |= self._settle_side(snap, market, side, debt, result)
            if not acted:
                break
            settled = True
            _, snap = self.advance()
        return snap, settled

    def _mine(self, snap: MarketSnapshot) -> bool:
        """Bad debt is outstanding and this keeper should act: keeper 0 at once, the others as
        backups once it has been outstanding for `backup_delay_blocks` (so they do not race)."""
        s = self.parts.settings
        sharding = Sharding(s.keeper_count, s.keeper_index, s.backup_delay_blocks)
        mine, self.seen_at = bad_debt_turn(
            snap.total_bad_debt, self.seen_at, snap.block.number, sharding
        )
        return mine

    def _settle_side(
        self, snap: MarketSnapshot, market: int, side: int, debt: int, result: PassResult
    ) -> bool:
        """One market side: asks :func:`decisions.side_action` what to do, reading the ADL targets
        and the side's grace clock only when it asks for them, and does it."""
        where = kv(market=market, side=SIDES[side], debt=human(debt))
        policy = BadDebtPolicy(
            adl_role=self.parts.adl_role, socialize=self.parts.settings.socialize
        )
        state = SideState(
            fund_available=snap.fund_available,
            price_fresh=market in snap.prices,
            now=snap.block.timestamp,
            grace_period=snap.risk.socialize_grace_period,
        )
        fns = self.parts.bw.ch.functions
        while (act := side_action(state, policy)) in (Act.NEED_TARGETS, Act.NEED_GRACE_CLOCK):
            if act is Act.NEED_TARGETS:
                targets = tuple(self._adl_targets(snap, market, side, debt))
                state = dataclasses.replace(state, targets=targets)
            else:
                # each market side's grace runs from the last debt recorded on it
                recorded_at = fns.badDebtRecordedAt(market, side).call(
                    block_identifier=snap.block.number
                )
                state = dataclasses.replace(state, recorded_at=int(recorded_at))
        if act is Act.COVER:
            return self._send_and_wait(fns.coverBadDebt(market, side), act.value, result)
        if act is Act.DELEVERAGE:
            return self._deleverage(market, list(state.targets or ()), result)
        if act is Act.SOCIALISE:
            log.warning("no ADL target left: socialising to the pool", extra=where)
            return self._send_and_wait(fns.socializeBadDebt(market, side), act.value, result)
        if act is Act.WAIT_STALE_PRICE:
            held = self.parts.repeats.due(("bad debt stale", market, side))
            if held is not None:
                log.warning(
                    "bad debt waits: the market's price is stale",
                    extra=kv(**where["fields"], repeats=held),
                )
            return False
        held = self.parts.repeats.due(("grace", market, side))
        if held is not None:
            at = socializable_at(state.recorded_at or 0, state.grace_period)
            log.info(
                "bad debt without ADL target; waiting for the grace period",
                extra=kv(**where["fields"], socializable_at=at, repeats=held),
            )
        return False

    def _adl_targets(self, snap: MarketSnapshot, market: int, side: int, debt: int) -> list[str]:
        """The side's holders scored off-chain, the scores confirmed with ``adlScoresOf`` (a
        mismatch is logged and counted, and the chain's scores are used), then the targets
        :func:`decisions.adl_targets` picks."""
        p = self.parts
        off_chain = adl_scores(p.index, snap, market, side)
        if not off_chain:
            return []
        candidates = sorted(off_chain)
        on_chain = confirm_adl_scores(p.bw, market, candidates, snap.block.number)
        mismatched = {
            a: (off_chain[a], on_chain[a]) for a in candidates if off_chain[a] != on_chain[a]
        }
        if mismatched:
            p.metrics.adl_score_mismatches.inc(len(mismatched))
            log.warning(
                "off-chain ADL scores differ from adlScoresOf; using the chain's",
                extra=kv(
                    market=market,
                    accounts=len(mismatched),
                    example=str(next(iter(mismatched.items()))),
                ),
            )
        policy = int(p.bw.ch.functions.adlPolicyOf(market).call(block_identifier=snap.block.number))
        positions = {a: p.index.accounts[a].positions[market] for a in on_chain}
        chosen = adl_targets(
            on_chain,
            positions,
            snap.prices[market],
            debt,
            p.settings.adl_max_targets,
            pro_rata=policy == prorata.PRO_RATA,
        )
        sign = adl_side_holders(side)
        assert all(positions[a].size * sign > 0 for a in chosen)
        return chosen

    def _deleverage(self, market: int, targets: list[str], result: PassResult) -> bool:
        """Sends autoDeleverage; a simulation that finds the order broken (funding moved a near tie)
        or a target ineligible trims the list (:func:`decisions.trim_adl_targets`) and tries again."""
        sender = self.parts.sender
        while targets:
            fn = self.parts.bw.ch.functions.autoDeleverage(market, targets)
            try:
                gas = sender.estimate(fn, "autoDeleverage")
            except Simulation as sim:
                log.warning(
                    "ADL simulation reverted", extra=kv(market=market, error=str(sim.error))
                )
                trimmed = trim_adl_targets(targets, sim.error.name, sim.error.args.get("target"))
                if trimmed is None:
                    return False
                targets = trimmed
                continue
            return self._send_and_wait(fn, "autoDeleverage", result, gas=sender.with_margin(gas))
        return False

    def _send_and_wait(
        self, fn: Any, action: str, result: PassResult, gas: int | None = None
    ) -> bool:
        if self.parts.stopping:
            return False
        try:
            pending = self.parts.sender.send(fn, action=action, gas=gas, keys=[(action,)])
        except Simulation as sim:
            args = getattr(fn, "args", None) or (None,)
            market = args[0] if isinstance(args[0], int) else None
            self.accounting.not_sending(sim.error, result, market, action=action)
            return False
        result.transactions.append(pending.hashes[0])
        outcome = self.parts.sender.wait(pending, self.parts.settings.receipt_timeout)
        self.accounting.finished(outcome, result)
        return outcome.ok
