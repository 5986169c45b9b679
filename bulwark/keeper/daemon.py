"""The keeper daemon: follow blocks, liquidate, cover bad debt, deleverage, socialise; survive.

The lifecycle reads in five lines (see :meth:`Keeper.run_forever`)::

    life.on_startup(self.startup_when_reachable)         # chain id, code, funds, checkpoint, metrics
    life.on_block(self.on_block)                         # one full pass per new block
    life.every(s.resync_interval, self.resync)           # re-read every account
    life.every(s.fund_watch_interval, self.watch_fund)   # fund assets and bad debt
    life.every(s.metrics_interval, self.refresh_metrics) # slow gauges
    life.every(1, self.watch_passes)                     # passes late? (no chain reads)
    life.on_shutdown(self.shutdown)                      # checkpoint, lock, metrics server down

This module is the orchestrator: it reads the chain, asks the pure decisions
(:mod:`bulwark.keeper.decisions`) what to do, and hands the doing to its parts: liquidations
(:mod:`~bulwark.keeper.liquidation`), bad debt (:mod:`~bulwark.keeper.bad_debt`), lapsed unstake
requests (:mod:`~bulwark.keeper.lapses`), receipts (:mod:`~bulwark.keeper.accounting`), gauges
(:mod:`~bulwark.keeper.reporting`), startup checks and state files (:mod:`~bulwark.keeper.startup`),
backoff and circuit breaker (:mod:`~bulwark.keeper.resilience`), the scheduler
(:mod:`~bulwark.keeper.lifecycle`).

A block that arrives while a pass is still running is dropped, not queued: the next pass scans every
log since the last block it processed, so nothing is lost. Signals only set a flag; the pass in flight
(and the transactions it sent) finish before the process exits. Each job catches and logs its own
errors; a node that stops answering puts the keeper into exponential backoff without counting as a
failure, and ``max_failed_ticks`` other failures in a row trip the circuit breaker (exit code 3).
A node that serves another chain than the deployment's (a reset: no clearing-house code, another
genesis) is not a reorg: the keeper says so in one critical line and exits with code 4.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from bulwark.chain.contracts import Bulwark
from bulwark.chain.rpc import BlockRef, get_block, node_unreachable
from bulwark.chain.sender import Eip1559Strategy, GasStrategy, TxSender
from bulwark.core.logs import Throttle, get_logger, human, kv
from bulwark.core.units import format_units
from bulwark.keeper import reporting
from bulwark.keeper.accounting import Accounting
from bulwark.keeper.bad_debt import BadDebtSettler
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.decisions import block_interval, passes_late
from bulwark.keeper.index import AccountIndex, SyncReport
from bulwark.keeper.lapses import Lapser
from bulwark.keeper.lifecycle import Lifecycle
from bulwark.keeper.liquidation import Liquidator
from bulwark.keeper.metrics import HealthState, KeeperMetrics, MetricsServer, instrument_provider
from bulwark.keeper.parts import Parts
from bulwark.keeper.resilience import (
    Backoff,
    ChainReset,
    CircuitBreaker,
    tune_provider,
)
from bulwark.keeper.results import AdlStep, PassResult
from bulwark.keeper.screening import MarketSnapshot, confirm, read_markets, screen
from bulwark.keeper.startup import SignerLock, check_chain, startup_checks, state_paths

__all__ = [
    "EXIT_CHAIN_RESET",
    "EXIT_CIRCUIT_BREAKER",
    "EXIT_ERROR",
    "EXIT_OK",
    "AdlStep",
    "ChainReset",
    "Keeper",
    "PassResult",
]

log = get_logger()
EXIT_OK, EXIT_ERROR, EXIT_CIRCUIT_BREAKER, EXIT_CHAIN_RESET = 0, 2, 3, 4
LOCAL_JOBS = frozenset({"watch_passes"})  # jobs that read no chain state: they run during a backoff


class Keeper:
    """One keeper bound to a deployment and a signer. ``run_once()`` is one full pass;
    ``run_forever()`` is the daemon."""

    def __init__(
        self,
        bw: Bulwark,
        signer: LocalAccount,
        settings: KeeperSettings | None = None,
        *,
        gas: GasStrategy | None = None,
        metrics: KeeperMetrics | None = None,
    ) -> None:
        self.bw = bw
        self.signer = signer
        self.settings = s = settings or KeeperSettings()
        self.metrics = metrics or KeeperMetrics()
        self.health = HealthState(s.healthz_max_age)
        if hasattr(bw.w3.provider, "make_batch_request"):
            instrument_provider(bw.w3.provider, self.metrics)
        self.gas = gas or Eip1559Strategy(
            s.priority_fee_wei, s.base_fee_multiple, s.max_fee_cap_wei, s.bump_bps
        )
        self.sender = TxSender(
            bw,
            signer,
            self.gas,
            metrics=self.metrics,
            replace_after_blocks=s.replace_after_blocks,
            replace_after_seconds=s.replace_after_seconds,
            gas_margin_bps=s.gas_margin_bps,
            poll_interval=min(s.poll_interval, 0.25),
        )
        self.index = AccountIndex(
            bw,
            s.checkpoint_file,
            log_chunk_blocks=s.log_chunk_blocks,
            rpc_batch_size=s.rpc_batch_size,
            checkpoint_interval=s.checkpoint_interval,
        )
        self.breaker = CircuitBreaker(s.max_failed_ticks)
        self.backoff = Backoff(s.backoff_initial, s.backoff_max)
        self.repeats = Throttle(s.log_repeat_seconds)
        self._stop = threading.Event()
        self.parts = Parts(
            bw, signer, s, self.sender, self.index, self.metrics, self.repeats, self._stop
        )
        self.accounting = Accounting(self.parts)
        self.liquidator = Liquidator(self.parts, self.accounting)
        self.bad_debt = BadDebtSettler(self.parts, self.accounting, self._advance)
        self.lapser = Lapser(self.parts, self.accounting)
        self.index.on_mismatch = self.check_chain
        self.exit_code = EXIT_OK
        self.last_result: PassResult | None = None
        self.genesis: str | None = None  # hash of block 0, read at startup
        self.lock = SignerLock()
        # heads the block poll saw: the newest, and the block interval it observed (EMA, seconds)
        self.seen_head: BlockRef | None = None
        self.block_interval: float | None = None
        self._last_pass_at = time.monotonic()
        self._last_pass_block: int | None = None
        self._work = threading.Lock()
        self._reset_lock = threading.Lock()
        self._started = False
        self._resync_due = False
        self._server: MetricsServer | None = None

    @property
    def lock_file(self) -> Path | None:
        return self.lock.path

    def tune_provider(self) -> None:
        """For the daemon and the command line: see :func:`resilience.tune_provider` (a program
        that embeds the keeper and calls :meth:`run_once` keeps its own client settings)."""
        tune_provider(self.bw.w3.provider, self.settings.rpc_timeout)

    # ------------------------------------------------------------------ lifecycle

    def run_forever(self) -> int:
        """The daemon; returns the exit code (0 after a signal, 3 when the circuit breaker tripped,
        4 after a chain reset)."""
        s = self.settings
        self.tune_provider()
        with Lifecycle(
            self._head,
            s.poll_interval,
            self._stop,
            self._guard,
            self.metrics.blocks_dropped.inc,
        ) as life:
            life.on_startup(self.startup_when_reachable)
            life.on_block(self.on_block)
            life.every(s.resync_interval, self.resync)
            life.every(s.fund_watch_interval, self.watch_fund)
            life.every(s.metrics_interval, self.refresh_metrics)
            life.every(min(s.metrics_interval, 1.0), self.watch_passes)
            life.on_shutdown(self.shutdown)
        return self.exit_code

    def stop(self) -> None:
        """Asks the daemon to finish the pass in flight and exit (what SIGINT/SIGTERM do)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def startup(self) -> None:
        """Checks the chain, the contracts and the signer; resumes the index; starts /metrics."""
        if self._started:
            return
        self.startup_checks()
        self._state_files()
        self.index.load()
        s = self.settings
        if s.metrics_port and self._server is None:
            self._server = MetricsServer(
                self.metrics, self.health, s.metrics_host, s.metrics_port
            ).start()
            log.info(
                "metrics listening",
                extra=kv(url=f"http://{s.metrics_host}:{self._server.port}/metrics"),
            )
        self._started = True

    def startup_when_reachable(self) -> None:
        """:meth:`startup`, waiting with backoff while the node does not answer (until a stop)."""
        while not self.stopping:
            try:
                self.startup()
                self.backoff.reset()
                return
            except Exception as exc:
                if not node_unreachable(exc):
                    raise
                delay = self.backoff.fail()
                self.health.node_up = False
                self.metrics.node_up.set(0)
                log.warning(
                    "node unreachable at startup; retrying",
                    extra=kv(retry_in=delay, error=type(exc).__name__),
                )
                self._stop.wait(delay)

    def startup_checks(self) -> None:
        self.genesis, self.parts.adl_role = startup_checks(
            self.bw, self.signer, self.settings, self.index, self.genesis
        )

    def _state_files(self) -> None:
        """With a state directory: the lock of this signer on this chain (a second keeper on the
        same key would race the first for its nonces) and, unless `checkpoint_file` names one, the
        checkpoint keyed by genesis hash and deployment. Both are said at startup."""
        s = self.settings
        if not s.state_dir:
            return
        me = self.signer.address
        lock, checkpoint = state_paths(
            s.state_dir, self.bw, self.genesis, me, s.checkpoint_file is None
        )
        self.lock.acquire(lock, me, self.bw.deployment.chain_id)
        if checkpoint is not None:
            self.index.path = checkpoint
        log.info(
            "state",
            extra=kv(
                checkpoint=str(self.index.path) if self.index.path else "memory only",
                lock=str(self.lock_file),
            ),
        )

    def check_chain(self) -> None:
        """The node still serves the deployment's chain (run on every reconnect, when the last
        processed block's hash is gone, and before a failed job counts)."""
        check_chain(self.bw, self.genesis)

    def _chain_reset(self, exc: ChainReset) -> None:
        with self._reset_lock:  # two jobs may find it at once: one line
            if self.exit_code == EXIT_CHAIN_RESET:
                return
            self.exit_code = EXIT_CHAIN_RESET
        self.health.halted = str(exc)
        log.critical(
            str(exc),
            extra=kv(
                rpc=str(getattr(self.bw.w3.provider, "endpoint_uri", "")),
                chain_id=self.bw.deployment.chain_id,
                exit_code=EXIT_CHAIN_RESET,
                next_step="deploy again (or point --deployment at this chain's deployment)",
            ),
        )
        self._stop.set()

    def shutdown(self) -> None:
        if not self._started:  # the startup checks refused: nothing ran, nothing to save or report
            self.lock.release()
            return
        if self.exit_code != EXIT_CHAIN_RESET:  # the checkpoint of the old chain stays as it was
            self.index.maybe_save(force=True)
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.lock.release()
        log.info("keeper stopped", extra=kv(block=self.index.block, exit_code=self.exit_code))

    # ------------------------------------------------------------------ jobs

    def _head(self) -> tuple[int, str]:
        head = get_block(self.bw.w3)
        self._observe_head(head)
        return head.number, head.hash

    def _observe_head(self, head: BlockRef) -> None:
        """Learns the block interval from the heads the poll sees (the chain's own timestamps)."""
        last = self.seen_head
        interval = block_interval(
            self.block_interval,
            None if last is None else (last.number, last.timestamp),
            (head.number, head.timestamp),
        )
        if interval is not None and interval is not self.block_interval:
            self.block_interval = interval
            self.metrics.block_interval.set(interval)
        if last is None or head.number != last.number or head.hash != last.hash:
            self.seen_head = head

    def watch_passes(self) -> None:
        """No pass completed for `late_pass_blocks` block intervals, while the node answers and
        blocks come: a warning (then at most one per `log_repeat_seconds`), the passes_late gauge
        and a degraded /healthz, until a pass completes. Reads no chain state, so it runs on time
        even while the node hangs."""
        since = time.monotonic() - self._last_pass_at
        self.metrics.seconds_since_pass.set(since)
        interval = self.block_interval
        head = self.seen_head
        behind = (
            head.number - self._last_pass_block
            if head is not None and self._last_pass_block is not None
            else 0
        )
        late = passes_late(
            since, interval, behind, self.settings.late_pass_blocks, self.backoff.active
        )
        reporting.note_late(
            self.parts, self.health, late, since, behind, interval, self._last_pass_block
        )

    def _sync(self, head: BlockRef) -> SyncReport:
        """Brings the index to `head`; after a rewind the sender's nonces are re-read from the node
        (a reorg may have undone a mined transaction of ours, leaving a hole)."""
        report = self.index.sync(head)
        if report.rewound_to is not None:
            self.sender.rewound()
        return report

    def on_block(self, number: int) -> PassResult | None:
        """A new block: one full pass, unless one is already running (then this block is dropped)."""
        if not self._work.acquire(blocking=False):
            self.metrics.blocks_dropped.inc()
            return None
        try:
            return self._pass()
        finally:
            self._work.release()

    def resync(self) -> None:
        """Re-reads every tracked account at the head (the catch-all behind the event-driven reads)."""
        if not self._work.acquire(timeout=self.settings.resync_interval):
            self._resync_due = True
            return
        try:
            head = get_block(self.bw.w3)
            self._sync(head)
            count = self.index.refresh_all(head.number)
            log.info("resync", extra=kv(block=head.number, accounts=count))
        finally:
            self._work.release()

    def watch_fund(self) -> None:
        """Fund assets and bad debt into the metrics; settles bad debt if a pass has not."""
        head = get_block(self.bw.w3)
        snap = read_markets(self.bw, self.index.market_count, head)
        reporting.fund_metrics(self.parts, snap)
        if snap.total_bad_debt == 0 or self.stopping or not self._work.acquire(blocking=False):
            return
        try:
            result = PassResult(head.number)
            self._sync(head)
            self.bad_debt.settle(snap, result)
        finally:
            self._work.release()

    def refresh_metrics(self) -> None:
        head = get_block(self.bw.w3)
        reporting.refresh_gauges(self.parts, head, self.index.block)

    def _guard(self, name: str, fn: Callable[[], Any]) -> Any:
        """Runs one job: errors are logged, node outages back off, repeated failures halt."""
        local = name in LOCAL_JOBS
        if self.stopping or (self.backoff.waiting() and not local):
            return None
        try:
            value = fn()
            if self.backoff.active and not local:
                self._node_back()
        except Exception as exc:  # a job must never take the daemon down
            self._job_failed(name, exc)
            return None
        if name == "on_block" and value is not None:
            self.breaker.success()
            self.metrics.consecutive_failures.set(0)
        return value

    def _job_failed(self, name: str, exc: Exception) -> None:
        if isinstance(exc, ChainReset):
            self._chain_reset(exc)
            return
        if node_unreachable(exc):
            delay = self.backoff.fail()
            self.health.node_up = False
            self.metrics.node_up.set(0)
            log.warning(
                "node unreachable; backing off",
                extra=kv(job=name, retry_in=delay, error=type(exc).__name__),
            )
            return
        try:  # a job failing on a chain that is no longer the deployment's is not a failure
            self.check_chain()
        except ChainReset as reset:
            self._chain_reset(reset)
            return
        except Exception:  # noqa: S110 - the node is flaky: the failure below is what counts
            pass
        decoded = self.bw.errors.from_exception(exc)
        self.metrics.ticks.labels(outcome="failed").inc()
        log.error(
            "job failed",
            extra=kv(job=name, error=str(decoded) if decoded else f"{type(exc).__name__}: {exc}"),
        )
        tripped = self.breaker.failure()
        self.metrics.consecutive_failures.set(self.breaker.failures)
        if tripped:
            self.exit_code = EXIT_CIRCUIT_BREAKER
            self.health.halted = f"{self.breaker.failures} failed jobs in a row"
            log.critical(
                "circuit breaker tripped: stopping", extra=kv(failures=self.breaker.failures)
            )
            self._stop.set()

    def _node_back(self) -> None:
        self.backoff.reset()
        self.health.node_up = True
        self.metrics.node_up.set(1)
        chain_id = int(self.bw.w3.eth.chain_id)
        if chain_id != self.bw.deployment.chain_id:
            self.exit_code = EXIT_ERROR
            self.health.halted = f"node came back on chain {chain_id}"
            log.critical("node came back on another chain: stopping", extra=kv(chain_id=chain_id))
            self._stop.set()
            return
        self.check_chain()
        self._resync_due = True
        log.info("node reachable again; resyncing", extra=kv(chain_id=chain_id))

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> PassResult:
        """One full pass: sync the index, screen, confirm, liquidate, cover, deleverage, socialise."""
        self.startup()
        with self._work:
            return self._pass()

    def _pass(self) -> PassResult:
        started = time.monotonic()
        w3 = self.bw.w3
        finished = self.sender.poll()  # transactions of earlier passes
        head = get_block(w3)
        result = PassResult(head.number)
        for outcome in finished:
            self.accounting.finished(outcome, result)
        sync = self._sync(head)
        for update in sync.price_updates:
            log.info(
                "oracle update",
                extra=kv(
                    market=update.market,
                    price=format_units(
                        update.answer, self.index.feed_decimals.get(update.market, 8)
                    ),
                    block=update.block,
                ),
            )
        if self._resync_due:
            self.index.refresh_all(head.number)
            self._resync_due = False
        snap = read_markets(self.bw, self.index.market_count, head)
        snap = self._rounds(snap, result)
        if not self.stopping:  # low priority: after liquidations and bad debt
            self.lapser.run(snap.block, result)
        result.accounts_tracked = len(self.index.accounts)
        result.bad_debt_wad = snap.total_bad_debt
        result.duration = time.monotonic() - started
        self._record_pass(result, snap)
        return result

    def _advance(self) -> tuple[BlockRef, MarketSnapshot]:
        """After own transactions: bring the index and the market snapshot to the new head."""
        head = get_block(self.bw.w3)
        self._sync(head)
        return head, read_markets(self.bw, self.index.market_count, head)

    def _record_pass(self, result: PassResult, snap: MarketSnapshot) -> None:
        reporting.record_pass(self.parts, self.health, result, snap)
        self._last_pass_at = time.monotonic()
        self._last_pass_block = max(result.block, self.index.block or 0)
        self.last_result = result

    def _rounds(self, snap: MarketSnapshot, result: PassResult) -> MarketSnapshot:
        """Rounds of liquidate, then cover/ADL/socialise, each on the state the previous one left,
        until a round does nothing or `max_rounds_per_pass` is reached: a liquidation can leave an
        account still below maintenance (a partial close, another market's position), and a
        liquidation or an ADL step changes bad debt and other accounts' margin."""
        limit = self.settings.max_rounds_per_pass
        attempted: set[str] = set()  # sent this pass and not liquidated: never sent again
        for round_ in range(1, limit + 1):
            if self.stopping:
                break
            result.rounds = round_
            before = self._progress(result)
            liquidated, left, snap = self._liquidation_round(snap, result, round_, attempted)
            snap, settled = self.bad_debt.settle(snap, result)
            if not (liquidated or settled):
                result.liquidatable_left = left
                return snap
            after = self._progress(result)
            log.info(
                "round",
                extra=kv(
                    round=round_,
                    liquidated=after[0] - before[0],
                    adl_steps=after[1] - before[1],
                    transactions=after[2] - before[2],
                    bad_debt=human(snap.total_bad_debt),
                ),
            )
        if self.stopping:
            return snap
        result.liquidatable_left = self._still_liquidatable(snap)
        if result.liquidatable_left or snap.total_bad_debt:
            self.metrics.round_limit_hits.inc()
            log.warning(
                "pass ended at max_rounds_per_pass with work left; the next block goes on",
                extra=kv(
                    rounds=result.rounds,
                    liquidatable=len(result.liquidatable_left),
                    bad_debt=human(snap.total_bad_debt),
                ),
            )
        return snap

    @staticmethod
    def _progress(result: PassResult) -> tuple[int, int, int]:
        return len(result.liquidated), len(result.adl_steps), len(result.transactions)

    def _still_liquidatable(self, snap: MarketSnapshot) -> list[str]:
        scr = screen(self.index, snap, self.settings.screen_buffer)
        healths = confirm(self.bw, scr.candidates, "latest", self.settings.confirm_chunk)
        return [a for a, h in healths.items() if h.liquidatable]

    def _liquidation_round(
        self, snap: MarketSnapshot, result: PassResult, round_: int, attempted: set[str]
    ) -> tuple[bool, list[str], MarketSnapshot]:
        """Screens every account, confirms the candidates, sends what is liquidatable and waits.
        Returns whether anything was liquidated, the accounts confirmed liquidatable, and the
        snapshot (advanced to the new head after liquidations)."""
        s = self.settings
        scr = screen(self.index, snap, s.screen_buffer)
        if round_ == 1:
            result.candidates = len(scr.candidates)
            reporting.note_stale(self.parts, self.health, snap, scr.skipped_stale, result)
        healths = confirm(self.bw, scr.candidates, "latest", s.confirm_chunk)
        liquidatable = [a for a, h in healths.items() if h.liquidatable]
        seen = set(result.liquidatable)
        result.liquidatable += [a for a in liquidatable if a not in seen]
        if round_ == 1:
            self.liquidator.forget_recovered(liquidatable)
        todo = [a for a in liquidatable if a not in attempted]
        entries = self.liquidator.choose(todo, healths, snap, result)
        if not entries or self.stopping:
            return False, liquidatable, snap
        sent_before = len(result.sent)
        done = self.liquidator.send(entries, snap, result)
        attempted |= {a for a, _ in result.sent[sent_before:]} - done
        if not done:
            return False, liquidatable, snap
        _, snap = self._advance()
        return True, liquidatable, snap
