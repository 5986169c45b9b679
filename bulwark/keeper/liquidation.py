"""Liquidation mechanics: choose the entries (by :func:`decisions.choose_liquidations`), simulate
each alone, size the batches to the block and find each one's gas limit with ``eth_call`` (by
:func:`decisions.plan_batches`, :func:`decisions.raised_gas` and :func:`decisions.fitted_gas`), send
them back to back, and wait once for them all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bulwark.chain.contracts import DecodedError
from bulwark.chain.rpc import BlockRef
from bulwark.chain.sender import Call, PendingTx
from bulwark.core.logs import get_logger, kv
from bulwark.keeper.accounting import Accounting
from bulwark.keeper.decisions import (
    BATCH_FALLBACK_MULTIPLE,
    AccountView,
    Sharding,
    choose_liquidations,
    fitted_gas,
    gas_per_entry,
    plan_batches,
    probe_entries,
    raised_gas,
)
from bulwark.keeper.parts import Parts
from bulwark.keeper.results import PassResult
from bulwark.keeper.screening import MarketSnapshot, shard_of

log = get_logger()
BATCH_GAS_STEPS = 6  # at most this many 15% raises of a batch whose eth_call fell short


@dataclass
class Batch:
    """One liquidateBatch transaction in the making: its entries, its gas limit, how many entries an
    eth_call at that limit liquidates, how many it should, and where the limit came from."""

    entries: list[tuple[str, int]]
    gas: int
    want: int
    count: int = 0
    source: str = "predicted"  # where the limit came from: predicted, raised, fallback
    predicted: int = 0  # the limit predicted from the probe's gas per entry


class Liquidator:
    """Sends liquidations for one keeper; remembers when other keepers' accounts were first seen
    liquidatable (the backup delay runs from there)."""

    def __init__(self, parts: Parts, accounting: Accounting) -> None:
        self.parts = parts
        self.accounting = accounting
        # other keepers' liquidatable accounts: the block each was first seen liquidatable
        self.first_seen: dict[str, int] = {}

    def forget_recovered(self, liquidatable: list[str]) -> None:
        """Accounts no longer liquidatable start their backup delay afresh next time."""
        for gone in set(self.first_seen) - set(liquidatable):
            del self.first_seen[gone]

    def choose(
        self,
        liquidatable: list[str],
        healths: dict[str, Any],
        snap: MarketSnapshot,
        result: PassResult,
    ) -> list[tuple[str, int]]:
        p = self.parts
        s = p.settings
        busy = {k[1] for k in p.sender.in_flight() if isinstance(k, tuple) and k[0] == "liquidate"}
        views = [
            AccountView(a, True, healths[a].equity, state.positions if state else {})
            for a in liquidatable
            for state in [p.index.accounts.get(a)]
        ]
        choice = choose_liquidations(
            views,
            snap.prices,
            snap.risk,
            indices=snap.indices,
            pool_margin=snap.pool_margin,
            me=p.signer.address,
            busy=busy,
            block=result.block,  # pass to pass: blocks of this pass's own rounds do not count
            first_seen=self.first_seen,
            sharding=Sharding(s.keeper_count, s.keeper_index, s.backup_delay_blocks),
            shard_of=shard_of,
        )
        self.first_seen = dict(choice.first_seen)
        result.deferred += [a for a in choice.deferred if a not in result.deferred]
        for account, first in choice.backups:
            log.info("backing up another keeper", extra=kv(account=account, since_block=first))
        return list(choice.entries)

    def send(
        self, entries: list[tuple[str, int]], snap: MarketSnapshot, result: PassResult
    ) -> set[str]:
        """Simulates each entry, sizes the batches to the block, sends them all back to back with
        consecutive nonces, then waits once for them all; returns the accounts liquidated."""
        before = len(result.liquidated)
        passing = self.simulate(entries, snap.block, result)
        sent: list[PendingTx] = []
        for batch in self.fit(passing, snap.block, result):
            if self.parts.stopping:
                break
            sent.append(self._send_batch(batch, snap.block, result))
        for outcome in self.parts.sender.wait_all(sent, self.parts.settings.receipt_timeout):
            self.accounting.finished(outcome, result)
        return {a for a, _ in result.liquidated[before:]}

    def simulate(
        self, entries: list[tuple[str, int]], head: BlockRef, result: PassResult
    ) -> list[tuple[str, int]]:
        """Each entry simulated alone (an eth_call of ``liquidate``, all in one batch): those that
        would pass. One that would revert is a lost race (or nothing left to do): logged, dropped."""
        calls = [self.parts.call("liquidate", [a, m]) for a, m in entries]
        outcomes = self.parts.sender.call_many(calls, after=head)
        passing = []
        for (account, market), outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, DecodedError):
                self.accounting.not_sending(outcome, result, market, account=account)
            else:
                passing.append((account, market))
        return passing

    def batch_call(self, chunk: list[tuple[str, int]]) -> Call:
        return self.parts.call("liquidateBatch", [[a for a, _ in chunk], [m for _, m in chunk]])

    def fit(
        self, passing: list[tuple[str, int]], head: BlockRef, result: PassResult
    ) -> list[Batch]:
        """Batches sized to the block, each with a gas limit at which an eth_call of it liquidates
        every entry it can.

        One eth_estimateGas of a probe batch gives the gas per entry and each batch's limit is
        predicted from it; an eth_call at that limit must then return the batch's count. Each entry
        runs in a try/catch self-call: one that fails for its own reason is skipped (the count is
        lower at any gas), one that runs out of gas reverts the batch (LiquidationBatchOutOfGas).
        So a batch that falls short learns what the block's whole gas limit would liquidate, and
        gets more gas until it does that. A batch is at most `max_batch` entries and a quarter of
        the block gas limit: several share a block, and the gas the last one reserves beyond what
        it uses (refunds, headroom) wastes little."""
        batches = self._plan_batches(passing, head, result)
        self._check_batches(batches, head)
        fitted = []
        for batch in batches:
            if batch.want == 0:
                self.accounting.batch_lost(
                    len(batch.entries), "the batch would liquidate nothing", result
                )
                continue
            gas, fallback = fitted_gas(
                batch.gas, batch.count >= batch.want, batch.predicted, head.gas_limit
            )
            if fallback is not None:
                batch.source = f"fallback: {BATCH_FALLBACK_MULTIPLE}x predicted"
                log.warning(
                    "batch: no checked gas limit below the block's fitted; capped fallback",
                    extra=kv(
                        entries=len(batch.entries),
                        predicted=batch.predicted,
                        gas=fallback,
                        would=batch.count,
                        want=batch.want,
                    ),
                )
            batch.gas = gas
            fitted.append(batch)
        return fitted

    def _plan_batches(
        self, passing: list[tuple[str, int]], head: BlockRef, result: PassResult
    ) -> list[Batch]:
        """Chunks and predicted gas limits, from one eth_estimateGas of a probe batch."""
        if not passing:
            return []
        probe = list(probe_entries(passing, self.parts.settings.max_batch))
        estimate = self.parts.sender.estimate_many([self.batch_call(probe)])[0]
        if isinstance(estimate, DecodedError):
            self.accounting.not_sending(
                estimate, result, probe[0][1], len(passing), step="batch estimate"
            )
            return []
        per_entry = gas_per_entry(estimate, len(probe))
        plans = plan_batches(passing, per_entry, head.gas_limit, self.parts.settings.max_batch)
        return [Batch(list(p.entries), p.gas, len(p.entries), predicted=p.gas) for p in plans]

    def _check_batches(self, batches: list[Batch], head: BlockRef) -> None:
        """An eth_call of each batch at its limit; one short of its count learns what the whole
        block's gas would liquidate, then gets 15% more gas at a time until it does that."""
        self.count(batches, head)
        short = [b for b in batches if b.count < b.want]
        if not short:
            return
        predicted = [(b.gas, b.count) for b in short]
        for b in short:
            b.gas = head.gas_limit
        self.count(short, head)
        for b, (gas, count) in zip(short, predicted, strict=True):
            b.want, b.gas, b.count = b.count, gas, count
        for _ in range(BATCH_GAS_STEPS):
            short = [b for b in short if b.count < b.want and b.gas < head.gas_limit]
            if not short:
                break
            for b in short:
                b.gas = raised_gas(b.gas, head.gas_limit)
                b.source = "raised"
            self.count(short, head)
        log.debug(
            "batches raised",
            extra=kv(gas=[b.gas for b in batches], would=[b.count for b in batches]),
        )

    def count(self, batches: list[Batch], head: BlockRef) -> None:
        """How many entries each batch would liquidate with its gas limit (eth_call, one batch)."""
        calls = [self.batch_call(b.entries) for b in batches]
        replies = self.parts.sender.call_many(calls, [b.gas for b in batches], head)
        for b, reply in zip(batches, replies, strict=True):
            b.count = 0 if isinstance(reply, DecodedError) else int(reply, 16)

    def _send_batch(self, batch: Batch, head: BlockRef, result: PassResult) -> PendingTx:
        chunk, gas = batch.entries, batch.gas
        accounts, markets = [a for a, _ in chunk], [m for _, m in chunk]
        keys = [("liquidate", a, m) for a, m in chunk]
        pending = self.parts.sender.send(
            self.batch_call(chunk), action="liquidateBatch", gas=gas, keys=keys, head=head
        )
        result.sent += chunk
        result.transactions.append(pending.hashes[0])
        self.parts.metrics.liquidations_sent.inc(len(chunk))
        log.info(
            "liquidating",
            extra=kv(
                tx=pending.hashes[0],
                nonce=pending.nonce,
                entries=len(chunk),
                would_succeed=batch.want,
                gas=gas,
                gas_source=batch.source,
                accounts=accounts,
                markets=markets,
            ),
        )
        return pending
