"""The keeper daemon: follow blocks, liquidate, cover bad debt, deleverage, socialise; survive.

The lifecycle reads in five lines (see :meth:`Keeper.run_forever`)::

    life.on_startup(self.startup_when_reachable)         # chain id, code, funds, checkpoint, metrics
    life.on_block(self.on_block)                         # one full pass per new block
    life.every(s.resync_interval, self.resync)           # re-read every account
    life.every(s.fund_watch_interval, self.watch_fund)   # fund assets and bad debt
    life.every(s.metrics_interval, self.refresh_metrics) # slow gauges
    life.every(1, self.watch_passes)                     # passes late? (no chain reads)
    life.on_shutdown(self.shutdown)                      # checkpoint, lock, metrics server down

A block that arrives while a pass is still running is dropped, not queued: the next pass scans every
log since the last block it processed, so nothing is lost. Signals only set a flag; the pass in flight
(and the transactions it sent) finish before the process exits. Each job catches and logs its own
errors; a node that stops answering puts the keeper into exponential backoff without counting as a
failure, and ``max_failed_ticks`` other failures in a row trip the circuit breaker (exit code 3).
A node that serves another chain than the deployment's (a reset: no clearing-house code, another
genesis) is not a reorg: the keeper says so in one critical line and exits with code 4.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from bulwark.chain.contracts import Bulwark, BulwarkError, DecodedError, Deployment
from bulwark.chain.rpc import BlockRef, get_block, rpc_batch
from bulwark.chain.sender import (
    Call,
    Eip1559Strategy,
    GasStrategy,
    PendingTx,
    SendOutcome,
    Simulation,
    TxSender,
    is_oracle_refusal,
)
from bulwark.core import paths
from bulwark.core import riskmath as rm
from bulwark.core.logs import Throttle, get_logger, human, kv, setup_logging
from bulwark.core.units import format_units
from bulwark.keeper import prorata
from bulwark.keeper.config import KeeperSettings, load_settings
from bulwark.keeper.decisions import (
    BATCH_FALLBACK_MULTIPLE,
    AccountView,
    Act,
    BadDebtPolicy,
    Sharding,
    SideState,
    bad_debt_sides,
    bad_debt_turn,
    choose_liquidations,
    fitted_gas,
    gas_per_entry,
    plan_batches,
    probe_entries,
    side_action,
    socializable_at,
)
from bulwark.keeper.index import AccountIndex, SyncReport
from bulwark.keeper.metrics import (
    HealthState,
    KeeperMetrics,
    MetricsServer,
    instrument_provider,
    wad_to_float,
)
from bulwark.keeper.screening import (
    MarketSnapshot,
    adl_scores,
    adl_side_holders,
    confirm,
    confirm_adl_scores,
    read_markets,
    screen,
    shard_of,
)

log = get_logger()
EXIT_OK, EXIT_ERROR, EXIT_CIRCUIT_BREAKER, EXIT_CHAIN_RESET = 0, 2, 3, 4
SIDES = ("Long", "Short")
BATCH_GAS_STEPS = 6  # at most this many 15% raises of a batch whose eth_call fell short
BAD_DEBT_ROUNDS = 6  # cover/ADL/socialise steps within one round
BAD_DEBT_ACTIONS = frozenset({"coverBadDebt", "autoDeleverage", "socializeBadDebt"})
LOCAL_JOBS = frozenset({"watch_passes"})  # jobs that read no chain state: they run during a backoff


# ---------------------------------------------------------------------------- results


@dataclass
class AdlStep:
    account: str
    market: int
    score: int
    closed_size: int
    haircut: int
    remaining: int


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


class ChainReset(BulwarkError):
    """The chain under the deployment is gone: a new genesis, or no ClearingHouse code."""


@dataclass
class PassResult:
    """What one full pass saw and did."""

    block: int
    accounts_tracked: int = 0
    candidates: int = 0  # flagged by the pass's first screen
    liquidatable: list[str] = field(default_factory=list)  # confirmed in any round
    liquidatable_left: list[str] = field(default_factory=list)  # still so when the pass ended
    rounds: int = 0
    sent: list[tuple[str, int]] = field(default_factory=list)  # (account, market) entries sent
    liquidated: list[tuple[str, int]] = field(default_factory=list)  # Liquidated events of ours
    skipped: list[tuple[str, int, str]] = field(default_factory=list)  # entries the batch skipped
    deferred: list[str] = field(default_factory=list)  # other keepers' accounts, not yet due
    races_lost: int = 0
    oracle_refusals: int = 0  # simulations the oracle refused (stale or invalid price)
    unscreened: int = 0  # accounts not screened: they hold a market whose price is stale
    adl_steps: list[AdlStep] = field(default_factory=list)
    shortfall_covered_wad: int = 0  # paid by the fund inside liquidations (ShortfallSettled)
    covered_wad: int = 0  # outstanding bad debt the fund paid later (coverBadDebt)
    socialized_wad: int = 0
    bad_debt_wad: int = 0
    transactions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def fund_paid_wad(self) -> int:
        """Everything the insurance fund paid in this pass: shortfalls covered inside liquidations
        and bad debt covered afterwards."""
        return self.shortfall_covered_wad + self.covered_wad

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """What ``--once --json`` prints: counts as numbers, every amount an exact decimal string
        in human units (as every ``--json`` of the command line), addresses and hashes as text."""
        return {
            "block": self.block,
            "accounts_tracked": self.accounts_tracked,
            "candidates": self.candidates,
            "liquidatable": list(self.liquidatable),
            "liquidatable_left": list(self.liquidatable_left),
            "rounds": self.rounds,
            "sent": [{"account": a, "market": m} for a, m in self.sent],
            "liquidated": [{"account": a, "market": m} for a, m in self.liquidated],
            "skipped": [{"account": a, "market": m, "reason": r} for a, m, r in self.skipped],
            "deferred": list(self.deferred),
            "races_lost": self.races_lost,
            "oracle_refusals": self.oracle_refusals,
            "unscreened": self.unscreened,
            "adl_steps": [
                {
                    "account": st.account,
                    "market": st.market,
                    "score": human(st.score),
                    "closed_size": human(st.closed_size),
                    "haircut": human(st.haircut),
                    "bad_debt_remaining": human(st.remaining),
                }
                for st in self.adl_steps
            ],
            "fund_paid": human(self.fund_paid_wad),
            "shortfall_covered": human(self.shortfall_covered_wad),
            "bad_debt_covered": human(self.covered_wad),
            "socialized": human(self.socialized_wad),
            "bad_debt": human(self.bad_debt_wad),
            "transactions": list(self.transactions),
            "errors": list(self.errors),
            "seconds": f"{self.duration:.3f}",
        }

    def summary(self) -> dict[str, Any]:
        """The one-line summary (plain ``--once`` output and the INFO ``pass`` line); amounts in
        human units, exact."""
        return {
            "block": self.block,
            "accounts": self.accounts_tracked,
            "candidates": self.candidates,
            "liquidatable": len(self.liquidatable),
            "left": len(self.liquidatable_left),
            "rounds": self.rounds,
            "sent": len(self.sent),
            "liquidated": len(self.liquidated),
            "races_lost": self.races_lost,
            "oracle_refusals": self.oracle_refusals,
            "unscreened": self.unscreened,
            "adl_steps": len(self.adl_steps),
            "fund_paid_usd": human(self.fund_paid_wad),
            "shortfall_covered_usd": human(self.shortfall_covered_wad),
            "bad_debt_covered_usd": human(self.covered_wad),
            "socialized_usd": human(self.socialized_wad),
            "bad_debt_usd": human(self.bad_debt_wad),
            "seconds": round(self.duration, 3),
        }


# ---------------------------------------------------------------------------- resilience


_NODE_DOWN = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


def node_unreachable(exc: BaseException) -> bool:
    """True for connection refused, resets and timeouts, however deeply web3 wrapped them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _NODE_DOWN):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class CircuitBreaker:
    """Trips after `limit` consecutive failures; a success resets the count."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0

    def success(self) -> None:
        self.failures = 0

    def failure(self) -> bool:
        self.failures += 1
        return self.failures >= self.limit


class Backoff:
    """Exponential wait while the node is away: initial, 2x, 4x ... up to `maximum` seconds."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = 0.0
        self.retry_at = 0.0

    @property
    def active(self) -> bool:
        return self.delay > 0

    def waiting(self) -> bool:
        return time.monotonic() < self.retry_at

    def fail(self) -> float:
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        self.retry_at = time.monotonic() + self.delay
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0
        self.retry_at = 0.0


# ---------------------------------------------------------------------------- lifecycle


class Lifecycle:
    """pymaker-style lifecycle on APScheduler 3: register callbacks inside ``with``; leaving the block
    runs startup, the jobs until a signal (or :meth:`stop`), then shutdown."""

    def __init__(
        self,
        head: Callable[[], tuple[int, str]],
        poll_interval: float,
        stop: threading.Event,
        guard: Callable[[str, Callable[[], Any]], Any],
        dropped: Callable[[int], Any] | None = None,
    ) -> None:
        self._head = head
        self._dropped = dropped
        self._poll_interval = poll_interval
        self._stop = stop
        self._guard = guard
        self._startup: list[Callable[[], Any]] = []
        self._shutdown: list[Callable[[], Any]] = []
        self._on_block: Callable[[int], Any] | None = None
        self._every: list[tuple[float, Callable[[], Any]]] = []
        self._handled: tuple[int, str] | None = None  # the last head handed to a pass
        self._busy = threading.Lock()

    def on_startup(self, fn: Callable[[], Any]) -> None:
        self._startup.append(fn)

    def on_block(self, fn: Callable[[int], Any]) -> None:
        self._on_block = fn

    def every(self, seconds: float, fn: Callable[[], Any]) -> None:
        self._every.append((seconds, fn))

    def on_shutdown(self, fn: Callable[[], Any]) -> None:
        self._shutdown.append(fn)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.run()

    def run(self) -> None:
        previous = self._install_signals()
        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="keeper-pass")
        try:
            for fn in self._startup:
                fn()
            scheduler = BackgroundScheduler(
                executors={"default": ThreadPoolExecutor(4)},
                job_defaults={"coalesce": True, "max_instances": 1},
            )
            if self._on_block is not None:
                scheduler.add_job(
                    self._poll,
                    "interval",
                    seconds=self._poll_interval,
                    id="on_block",
                    args=(worker,),
                    next_run_time=_now(),
                )
            for n, (seconds, fn) in enumerate(self._every):
                name = getattr(fn, "__name__", f"job{n}")
                scheduler.add_job(
                    self._guard, "interval", seconds=seconds, id=f"{name}-{n}", args=(name, fn)
                )
            scheduler.start()
            try:
                while not self._stop.wait(0.2):
                    pass
            finally:
                log.info("shutting down: letting the pass in flight finish")
                scheduler.shutdown(wait=True)
                worker.shutdown(wait=True)
        finally:
            for fn in self._shutdown:
                try:
                    fn()
                except Exception as exc:  # shutdown goes on
                    log.error(
                        "shutdown step failed", extra=kv(error=f"{type(exc).__name__}: {exc}")
                    )
            self._restore_signals(previous)

    def _poll(self, worker: concurrent.futures.Executor) -> None:
        """Cheap and never blocking: hands the newest block to the pass worker if it is idle. Blocks
        that arrive while a pass runs are not queued: the next pass takes the newest and counts the
        ones in between as dropped (its log scan still covers them). A head is new when its number
        or its hash differs from the last one handled: a node back on a shorter chain, or a reorg
        at the same height, is served at once, not when the chain grows past the old head."""
        head = self._guard("poll", self._head)
        if head is None or self._on_block is None or head == self._handled:
            return
        if not self._busy.acquire(blocking=False):
            return
        number = head[0]
        last = self._handled[0] if self._handled is not None else None
        if last is not None and number > last + 1 and self._dropped is not None:
            self._dropped(number - last - 1)
        self._handled = head
        worker.submit(self._run_pass, self._on_block, number)

    def _run_pass(self, on_block: Callable[[int], Any], number: int) -> None:
        try:
            self._guard("on_block", lambda: on_block(number))
        finally:
            self._busy.release()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _signal(self, signum: int, frame: Any) -> None:
        log.info("signal received", extra=kv(signal=signal.Signals(signum).name))
        self._stop.set()


def _now() -> Any:
    from datetime import datetime

    return datetime.now(UTC)


# ---------------------------------------------------------------------------- the keeper


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
        # other keepers' liquidatable accounts: the block each was first seen liquidatable
        self.first_seen: dict[str, int] = {}
        # the block at which outstanding bad debt was first seen
        self.bad_debt_seen_at: int | None = None
        # autoDeleverage needs ADL_KEEPER_ROLE; read at startup (a keeper driven without its startup
        # checks tries, and a refused simulation is logged like any other)
        self._adl_role = True
        self.index.on_mismatch = self.check_chain
        self.exit_code = EXIT_OK
        self.last_result: PassResult | None = None
        self.genesis: str | None = None  # hash of block 0, read at startup
        self.lock_file: Path | None = None
        self._lock_fd: int | None = None
        self.repeats = Throttle(s.log_repeat_seconds)
        # heads the block poll saw: the newest, and the block interval it observed (EMA, seconds)
        self.seen_head: BlockRef | None = None
        self.block_interval: float | None = None
        self._last_pass_at = time.monotonic()
        self._last_pass_block: int | None = None
        self._stop = threading.Event()
        self._work = threading.Lock()
        self._reset_lock = threading.Lock()
        self._started = False
        self._resync_due = False
        self._server: MetricsServer | None = None

    def tune_provider(self) -> None:
        """For the daemon and the command line: the node's requests time out after `rpc_timeout`
        (a hung node shows up within a block or two, not after web3's default) and are never
        retried behind the keeper's back: a request that gets no answer fails the job at once,
        and the backoff decides when to try again. A program that embeds the keeper and calls
        :meth:`run_once` (the stress runner, the benchmarks) keeps its own client settings."""
        provider: Any = self.bw.w3.provider
        kwargs = getattr(provider, "_request_kwargs", None)
        if isinstance(kwargs, dict):
            current = kwargs.get("timeout")
            limit = self.settings.rpc_timeout
            kwargs["timeout"] = min(current, limit) if isinstance(current, int | float) else limit
        if hasattr(provider, "exception_retry_configuration"):
            provider.exception_retry_configuration = None

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
        bw, d = self.bw, self.bw.deployment
        chain_id = int(bw.w3.eth.chain_id)
        if chain_id != d.chain_id:
            raise BulwarkError(
                f"the node is on chain {chain_id} but the deployment is for chain {d.chain_id}"
            )
        addresses = dict(d.contracts) | {f"feed {n}": m.feed for n, m in d.markets.items()}
        codes = rpc_batch(bw.w3, [("eth_getCode", [a, "latest"]) for a in addresses.values()])
        missing = [
            f"{name} at {a}"
            for (name, a), code in zip(addresses.items(), codes, strict=True)
            if not isinstance(code, str) or code in ("0x", "0x0")
        ]
        if missing:
            raise BulwarkError(
                f"no contract code for {', '.join(missing)}: wrong deployment file or chain?"
            )
        balance = int(bw.w3.eth.get_balance(self.signer.address))
        if balance < self.settings.min_eth_balance_wei:
            raise BulwarkError(
                f"keeper {self.signer.address} holds {balance / 1e18:.6f} ETH, needs at least "
                f"{self.settings.min_eth_balance_wei / 1e18:.6f} ETH for gas"
            )
        genesis = get_block(bw.w3, 0).hash
        if self.genesis is not None and genesis != self.genesis:
            raise ChainReset(
                f"chain reset: the node's genesis is {genesis}, was {self.genesis}; "
                "deploy again and point the keeper at the new deployment"
            )
        self.genesis = self.index.genesis = genesis
        self.index.prepare()
        if self.signer.address in self.index.protected:
            raise BulwarkError(
                f"{self.signer.address} is the pool or fund account and cannot act as keeper"
            )
        adl_role = bool(
            bw.ch.functions.hasRole(keccak(text="ADL_KEEPER_ROLE"), self.signer.address).call()
        )
        log.info(
            "startup checks passed",
            extra=kv(
                chain_id=chain_id,
                genesis=genesis,
                keeper=self.signer.address,
                eth=human(balance),
                clearing_house=bw.ch.address,
                shard=f"{self.settings.keeper_index}/{self.settings.keeper_count}",
                roles="ADL_KEEPER_ROLE held: liquidation, cover, socialise and ADL"
                if adl_role
                else "no ADL_KEEPER_ROLE: liquidation, cover and socialise only; ADL is left to "
                "the holders of the role",
            ),
        )
        self._adl_role = adl_role

    def _state_files(self) -> None:
        """With a state directory: the lock of this signer on this chain (a second keeper on the
        same key would race the first for its nonces) and, unless `checkpoint_file` names one, the
        checkpoint keyed by genesis hash and deployment. Both are said at startup."""
        s = self.settings
        if not s.state_dir:
            return
        root = Path(s.state_dir).expanduser()
        chain = f"{self.bw.deployment.chain_id}-{(self.genesis or '0x')[2:14]}"
        self._lock_signer(root / "locks" / f"{chain}-{self.signer.address.lower()}.lock")
        if s.checkpoint_file is None:
            d = self.bw.deployment
            deployment = f"{self.bw.ch.address[2:12].lower()}-{d.deploy_block}"
            name = f"{chain}-{deployment}-{self.signer.address[2:10].lower()}.json"
            self.index.path = root / "checkpoints" / name
        log.info(
            "state",
            extra=kv(
                checkpoint=str(self.index.path) if self.index.path else "memory only",
                lock=str(self.lock_file),
            ),
        )

    def _lock_signer(self, path: Path) -> None:
        if self._lock_fd is not None:  # a startup retried after the node came back
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BulwarkError(
                f"another keeper (pid {holder}) already runs as {self.signer.address} on chain "
                f"{self.bw.deployment.chain_id} (lock {path}): two keepers on one key race for its "
                "nonces; give each keeper its own key (docs/keeper.md, Redundancy)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd, self.lock_file = fd, path

    def _unlock_signer(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def check_chain(self) -> None:
        """The node still serves the deployment's chain: the genesis hash read at startup, and code
        at the clearing house. Run on every reconnect, when the last processed block's hash is
        gone, and before a failed job counts; raises :class:`ChainReset` otherwise."""
        if self.genesis is None:
            return
        address = self.bw.ch.address
        genesis, code = rpc_batch(
            self.bw.w3,
            [("eth_getBlockByNumber", ["0x0", False]), ("eth_getCode", [address, "latest"])],
        )
        if not isinstance(code, str) or code in ("0x", "0x0"):
            raise ChainReset(f"chain reset: no ClearingHouse at {address}")
        now = genesis.get("hash") if isinstance(genesis, dict) else None
        if now != self.genesis:
            raise ChainReset(f"chain reset: genesis {now} is not {self.genesis}")

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
            self._unlock_signer()
            return
        if self.exit_code != EXIT_CHAIN_RESET:  # the checkpoint of the old chain stays as it was
            self.index.maybe_save(force=True)
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._unlock_signer()
        log.info("keeper stopped", extra=kv(block=self.index.block, exit_code=self.exit_code))

    # ------------------------------------------------------------------ jobs

    def _head(self) -> tuple[int, str]:
        head = get_block(self.bw.w3)
        self._observe_head(head)
        return head.number, head.hash

    def _observe_head(self, head: BlockRef) -> None:
        """Learns the block interval from the heads the poll sees (the chain's own timestamps)."""
        last = self.seen_head
        if last is not None and head.number > last.number and head.timestamp >= last.timestamp:
            step = (head.timestamp - last.timestamp) / (head.number - last.number)
            self.block_interval = (
                step if self.block_interval is None else 0.8 * self.block_interval + 0.2 * step
            )
            self.metrics.block_interval.set(self.block_interval)
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
        limit = self.settings.late_pass_blocks
        late = interval is not None and (
            since > limit * max(interval, 1.0) and (behind > 0 or self.backoff.active)
        )
        late = late or behind >= limit
        if not late:
            self.metrics.passes_late.set(0)
            if self.health.recover("passes_late"):
                log.info("passes on time again", extra=kv(block=self._last_pass_block))
            self.repeats.clear("passes_late")
            return
        self.metrics.passes_late.set(1)
        reason = f"no pass for {since:.0f} s ({behind} blocks behind the head)"
        self.health.degrade("passes_late", reason)
        held = self.repeats.due("passes_late")
        if held is not None:
            log.warning(
                "passes late: no pass completed for several blocks",
                extra=kv(
                    seconds=round(since, 1),
                    blocks_behind=behind,
                    block_interval=None if interval is None else round(interval, 2),
                    node_up=self.health.node_up,
                    repeats=held,
                ),
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
        self._fund_metrics(snap)
        if snap.total_bad_debt == 0 or self.stopping or not self._work.acquire(blocking=False):
            return
        try:
            result = PassResult(head.number)
            self._sync(head)
            self._settle_bad_debt(snap, result)
        finally:
            self._work.release()

    def refresh_metrics(self) -> None:
        head = get_block(self.bw.w3)
        m = self.metrics
        # not clamped: a negative age says the chain's clock runs ahead of this machine's
        m.head_age.set(time.time() - head.timestamp)
        m.block_lag.set(
            head.number - self.index.block if self.index.block is not None else head.number
        )
        m.accounts_tracked.set(len(self.index.accounts))
        m.in_flight.set(len(self.sender.pending))
        balance = int(self.bw.w3.eth.get_balance(self.signer.address))
        m.signer_eth.set(balance / 1e18)
        if balance < self.settings.min_eth_balance_wei:
            log.warning(
                "keeper is low on ETH for gas",
                extra=kv(keeper=self.signer.address, eth=human(balance)),
            )

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
            self._note_outcome(outcome, result)
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
        m = self.metrics
        m.tick_duration.observe(result.duration)
        m.ticks.labels(outcome="ok").inc()
        m.accounts_tracked.set(result.accounts_tracked)
        m.candidates.set(result.candidates)
        m.liquidatable.set(len(result.liquidatable))
        m.liquidatable_left.set(len(result.liquidatable_left))
        m.pass_rounds.observe(result.rounds)
        m.last_block.set(result.block)
        m.block_lag.set(0)
        m.node_up.set(1)
        self._fund_metrics(snap)
        self.health.ok(result.block)
        self._last_pass_at = time.monotonic()
        self._last_pass_block = max(result.block, self.index.block or 0)
        self.last_result = result
        busy = result.sent or result.adl_steps or result.fund_paid_wad or result.socialized_wad
        (log.info if busy else log.debug)("pass", extra=kv(**result.summary()))

    def _note_stale(self, snap: MarketSnapshot, unscreened: int, result: PassResult) -> None:
        """Per-market stale gauges, the unscreened-accounts gauge, /healthz degraded while a
        market is stale; the warning when it starts (then at most one per `log_repeat_seconds`,
        with the count held back) and one line when the price is fresh again."""
        names = {m.id: n for n, m in self.bw.deployment.markets.items()}
        result.unscreened = unscreened
        self.metrics.unscreened.set(unscreened)
        for market in snap.configs:
            name = names.get(market, str(market))
            stale = market in snap.stale
            self.metrics.market_stale.labels(market=name).set(1 if stale else 0)
            key = ("stale", market)
            if not stale:
                if self.repeats.clear(key):
                    log.info("market price fresh again", extra=kv(market=name))
                continue
            held = self.repeats.due(key)
            if held is not None:
                log.warning(
                    "market price stale or invalid: its accounts are not screened",
                    extra=kv(
                        market=name, error=snap.stale[market], unscreened=unscreened, repeats=held
                    ),
                )
        if snap.stale:
            stale_names = ", ".join(names.get(m, str(m)) for m in sorted(snap.stale))
            self.health.degrade(
                "stale_markets", f"price stale: {stale_names} ({unscreened} accounts unscreened)"
            )
        else:
            self.health.recover("stale_markets")

    def _fund_metrics(self, snap: MarketSnapshot) -> None:
        self.metrics.fund_assets.set(wad_to_float(snap.fund_assets))
        self.metrics.fund_available.set(wad_to_float(snap.fund_available))
        self.metrics.bad_debt.set(wad_to_float(snap.total_bad_debt))

    # ------------------------------------------------------------------ liquidation

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
            snap, settled = self._settle_bad_debt(snap, result)
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
            self._note_stale(snap, scr.skipped_stale, result)
        healths = confirm(self.bw, scr.candidates, "latest", s.confirm_chunk)
        liquidatable = [a for a, h in healths.items() if h.liquidatable]
        seen = set(result.liquidatable)
        result.liquidatable += [a for a in liquidatable if a not in seen]
        if round_ == 1:
            for gone in set(self.first_seen) - set(liquidatable):
                del self.first_seen[gone]
        todo = [a for a in liquidatable if a not in attempted]
        entries = self._choose_entries(todo, healths, snap, result)
        if not entries or self.stopping:
            return False, liquidatable, snap
        sent_before = len(result.sent)
        done = self._send_entries(entries, snap, result)
        attempted |= {a for a, _ in result.sent[sent_before:]} - done
        if not done:
            return False, liquidatable, snap
        _, snap = self._advance()
        return True, liquidatable, snap

    def _send_entries(
        self, entries: list[tuple[str, int]], snap: MarketSnapshot, result: PassResult
    ) -> set[str]:
        """Simulates each entry, sizes the batches to the block, sends them all back to back with
        consecutive nonces, then waits once for them all; returns the accounts liquidated."""
        before = len(result.liquidated)
        passing = self._simulate_entries(entries, snap.block, result)
        sent: list[PendingTx] = []
        for batch in self._fit_batches(passing, snap.block, result):
            if self.stopping:
                break
            sent.append(self._send_batch(batch, snap.block, result))
        for outcome in self.sender.wait_all(sent, self.settings.receipt_timeout):
            self._note_outcome(outcome, result)
        return {a for a, _ in result.liquidated[before:]}

    @property
    def _sharding(self) -> Sharding:
        s = self.settings
        return Sharding(s.keeper_count, s.keeper_index, s.backup_delay_blocks)

    def _choose_entries(
        self,
        liquidatable: list[str],
        healths: dict[str, Any],
        snap: MarketSnapshot,
        result: PassResult,
    ) -> list[tuple[str, int]]:
        busy = {
            k[1] for k in self.sender.in_flight() if isinstance(k, tuple) and k[0] == "liquidate"
        }
        views = [
            AccountView(a, True, healths[a].equity, state.positions if state else {})
            for a in liquidatable
            for state in [self.index.accounts.get(a)]
        ]
        choice = choose_liquidations(
            views,
            snap.prices,
            snap.risk,
            me=self.signer.address,
            busy=busy,
            block=result.block,  # pass to pass: blocks of this pass's own rounds do not count
            first_seen=self.first_seen,
            sharding=self._sharding,
            shard_of=shard_of,
        )
        self.first_seen = dict(choice.first_seen)
        result.deferred += [a for a in choice.deferred if a not in result.deferred]
        for account, first in choice.backups:
            log.info("backing up another keeper", extra=kv(account=account, since_block=first))
        return list(choice.entries)

    def _simulate_entries(
        self, entries: list[tuple[str, int]], head: BlockRef, result: PassResult
    ) -> list[tuple[str, int]]:
        """Each entry simulated alone (an eth_call of ``liquidate``, all in one batch): those that
        would pass. One that would revert is a lost race (or nothing left to do): logged, dropped."""
        calls = [self._call("liquidate", [a, m]) for a, m in entries]
        outcomes = self.sender.call_many(calls, after=head)
        passing = []
        for (account, market), outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, DecodedError):
                self._not_sending(outcome, result, market, account=account)
            else:
                passing.append((account, market))
        return passing

    def _not_sending(
        self,
        error: DecodedError,
        result: PassResult | None,
        market: int | None,
        entries: int = 1,
        **where: Any,
    ) -> None:
        """A simulation reverted, so nothing is sent. The oracle refusing its price (stale,
        invalid) is not a lost race: counted apart, per market, and its repeats throttled."""
        if is_oracle_refusal(error):
            names = {m.id: n for n, m in self.bw.deployment.markets.items()}
            name = names.get(market, "?") if market is not None else "?"
            self.metrics.oracle_refusals.labels(market=name).inc(entries)
            if result is not None:
                result.oracle_refusals += entries
            held = self.repeats.due(("oracle", name))
            if held is not None:
                log.warning(
                    "not sending: the oracle refuses the price in the simulation",
                    extra=kv(market=name, entries=entries, error=str(error), repeats=held, **where),
                )
            return
        if result is not None:
            result.races_lost += entries
        self.metrics.races_lost.inc(entries)
        log.info(
            "not sending: simulation shows nothing to do (race lost)",
            extra=kv(market=market, entries=entries, error=str(error), **where),
        )

    def _call(self, fn: str, args: list[Any]) -> Call:
        return Call(self.bw.ch.address, self.index.calls.data(fn, args))

    def _batch_call(self, chunk: list[tuple[str, int]]) -> Call:
        return self._call("liquidateBatch", [[a for a, _ in chunk], [m for _, m in chunk]])

    def _fit_batches(
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
                self._batch_lost(len(batch.entries), "the batch would liquidate nothing", result)
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
        probe = list(probe_entries(passing, self.settings.max_batch))
        estimate = self.sender.estimate_many([self._batch_call(probe)])[0]
        if isinstance(estimate, DecodedError):
            self._not_sending(estimate, result, probe[0][1], len(passing), step="batch estimate")
            return []
        per_entry = gas_per_entry(estimate, len(probe))
        plans = plan_batches(passing, per_entry, head.gas_limit, self.settings.max_batch)
        return [Batch(list(p.entries), p.gas, len(p.entries), predicted=p.gas) for p in plans]

    def _check_batches(self, batches: list[Batch], head: BlockRef) -> None:
        """An eth_call of each batch at its limit; one short of its count learns what the whole
        block's gas would liquidate, then gets 15% more gas at a time until it does that."""
        self._count(batches, head)
        short = [b for b in batches if b.count < b.want]
        if not short:
            return
        predicted = [(b.gas, b.count) for b in short]
        for b in short:
            b.gas = head.gas_limit
        self._count(short, head)
        for b, (gas, count) in zip(short, predicted, strict=True):
            b.want, b.gas, b.count = b.count, gas, count
        for _ in range(BATCH_GAS_STEPS):
            short = [b for b in short if b.count < b.want and b.gas < head.gas_limit]
            if not short:
                break
            for b in short:
                b.gas = min(head.gas_limit, b.gas * 115 // 100)
                b.source = "raised"
            self._count(short, head)
        log.debug(
            "batches raised",
            extra=kv(gas=[b.gas for b in batches], would=[b.count for b in batches]),
        )

    def _count(self, batches: list[Batch], head: BlockRef) -> None:
        """How many entries each batch would liquidate with its gas limit (eth_call, one batch)."""
        calls = [self._batch_call(b.entries) for b in batches]
        replies = self.sender.call_many(calls, [b.gas for b in batches], head)
        for b, reply in zip(batches, replies, strict=True):
            b.count = 0 if isinstance(reply, DecodedError) else int(reply, 16)

    def _batch_lost(
        self, entries: int, why: str, result: PassResult, error: str | None = None
    ) -> None:
        result.races_lost += entries
        self.metrics.races_lost.inc(entries)
        log.info(f"not sending: {why}", extra=kv(entries=entries, error=error))

    def _send_batch(self, batch: Batch, head: BlockRef, result: PassResult) -> PendingTx:
        chunk, gas = batch.entries, batch.gas
        accounts, markets = [a for a, _ in chunk], [m for _, m in chunk]
        keys = [("liquidate", a, m) for a, m in chunk]
        pending = self.sender.send(
            self._batch_call(chunk), action="liquidateBatch", gas=gas, keys=keys, head=head
        )
        result.sent += chunk
        result.transactions.append(pending.hashes[0])
        self.metrics.liquidations_sent.inc(len(chunk))
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

    def _note_outcome(self, outcome: SendOutcome, result: PassResult | None) -> None:
        """Counts what a finished transaction did (events of a liquidation or an ADL batch)."""
        receipt = outcome.receipt
        if receipt is None:
            return
        if result is not None and outcome.pending.hashes[-1] not in result.transactions:
            result.transactions.append(outcome.pending.hashes[-1])
        if receipt["status"] != 1:
            if outcome.pending.action == "liquidateBatch":
                self.metrics.liquidations_failed.inc(len(outcome.pending.keys))
            if result is not None:
                result.errors.append(f"{outcome.pending.action}: {outcome.error}")
            return
        ch = self.bw.ch
        me = self.signer.address
        for ev in ch.events.Liquidated().process_receipt(receipt, errors=DISCARD):
            if ev["args"]["keeper"] != me:
                continue
            self.metrics.liquidations_mined.inc()
            entry = (ev["args"]["account"], int(ev["args"]["marketId"]))
            log.info(
                "liquidated",
                extra=kv(
                    account=entry[0],
                    market=entry[1],
                    bankrupt=ev["args"]["bankrupt"],
                    reward=human(ev["args"]["rewardWad"]),
                    penalty=human(ev["args"]["penaltyWad"]),
                    shortfall=human(ev["args"]["shortfallWad"]),
                    block=receipt["blockNumber"],
                ),
            )
            if result is not None:
                result.liquidated.append(entry)
        for ev in ch.events.LiquidationSkipped().process_receipt(receipt, errors=DISCARD):
            self.metrics.liquidations_failed.inc()
            reason = str(self.bw.errors.decode(ev["args"]["reason"]))
            log.warning(
                "batch entry skipped",
                extra=kv(
                    account=ev["args"]["account"], market=int(ev["args"]["marketId"]), error=reason
                ),
            )
            if result is not None:
                result.skipped.append((ev["args"]["account"], int(ev["args"]["marketId"]), reason))
        for ev in ch.events.AutoDeleveraged().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            self.metrics.adl_steps.inc()
            step = AdlStep(
                a["account"],
                int(a["marketId"]),
                int(a["scoreWad"]),
                int(a["closedSizeWad"]),
                int(a["haircutWad"]),
                int(a["badDebtRemainingWad"]),
            )
            log.info(
                "deleveraged",
                extra=kv(
                    account=step.account,
                    market=step.market,
                    score=human(step.score),
                    closed_size=human(step.closed_size),
                    haircut=human(step.haircut),
                    bad_debt_remaining=human(step.remaining),
                ),
            )
            if result is not None:
                result.adl_steps.append(step)
        for ev in ch.events.ShortfallSettled().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            if result is not None:
                result.shortfall_covered_wad += int(a["coveredWad"])
            log.info(
                "shortfall settled",
                extra=kv(
                    account=a["account"],
                    shortfall=human(a["shortfallWad"]),
                    fund_paid=human(a["coveredWad"]),
                    bad_debt=human(a["badDebtWad"]),
                ),
            )
        for name, attr in (
            ("BadDebtCovered", "covered_wad"),
            ("BadDebtSocialized", "socialized_wad"),
        ):
            for ev in getattr(ch.events, name)().process_receipt(receipt, errors=DISCARD):
                if result is not None:
                    setattr(result, attr, getattr(result, attr) + int(ev["args"]["amountWad"]))
                log.info(
                    name,
                    extra=kv(
                        market=int(ev["args"]["marketId"]),
                        side=SIDES[ev["args"]["side"]],
                        amount=human(ev["args"]["amountWad"]),
                        remaining=human(ev["args"]["totalBadDebtWad"]),
                    ),
                )

    # ------------------------------------------------------------------ bad debt

    def _settle_bad_debt(
        self, snap: MarketSnapshot, result: PassResult
    ) -> tuple[MarketSnapshot, bool]:
        """Cover from the fund while it has something available; else ADL in score order; else, after
        the grace period with no target left, socialise. Repeats on fresh state until nothing changes;
        returns the last snapshot and whether any transaction succeeded."""
        settled = False
        for _ in range(BAD_DEBT_ROUNDS):
            if not self._bad_debt_mine(snap) or self.stopping:
                break
            if any(
                k[0] in BAD_DEBT_ACTIONS for k in self.sender.in_flight() if isinstance(k, tuple)
            ):
                log.info("bad debt: an earlier transaction is still pending; waiting for it")
                break
            acted = False
            for market, side, debt in bad_debt_sides(snap.bad_debt):
                acted |= self._settle_side(snap, market, side, debt, result)
            if not acted:
                break
            settled = True
            _, snap = self._advance()
        return snap, settled

    def _bad_debt_mine(self, snap: MarketSnapshot) -> bool:
        """Bad debt is outstanding and this keeper should act: keeper 0 at once, the others as
        backups once it has been outstanding for `backup_delay_blocks` (so they do not race)."""
        mine, self.bad_debt_seen_at = bad_debt_turn(
            snap.total_bad_debt, self.bad_debt_seen_at, snap.block.number, self._sharding
        )
        return mine

    def _settle_side(
        self, snap: MarketSnapshot, market: int, side: int, debt: int, result: PassResult
    ) -> bool:
        """One market side: asks :func:`bulwark.keeper.decisions.side_action` what to do, reading the ADL
        targets and the side's grace clock only when it asks for them, and does it."""
        where = kv(market=market, side=SIDES[side], debt=human(debt))
        policy = BadDebtPolicy(adl_role=self._adl_role, socialize=self.settings.socialize)
        state = SideState(
            fund_available=snap.fund_available,
            price_fresh=market in snap.prices,
            now=snap.block.timestamp,
            grace_period=snap.risk.socialize_grace_period,
        )
        while (act := side_action(state, policy)) in (
            Act.NEED_TARGETS,
            Act.NEED_GRACE_CLOCK,
        ):
            if act is Act.NEED_TARGETS:
                targets = tuple(self._adl_targets(snap, market, side, debt))
                state = dataclasses.replace(state, targets=targets)
            else:
                # each market side's grace runs from the last debt recorded on it
                recorded_at = self.bw.ch.functions.badDebtRecordedAt(market, side).call(
                    block_identifier=snap.block.number
                )
                state = dataclasses.replace(state, recorded_at=int(recorded_at))
        fns = self.bw.ch.functions
        if act is Act.COVER:
            return self._send_and_wait(fns.coverBadDebt(market, side), act.value, result)
        if act is Act.DELEVERAGE:
            return self._deleverage(market, list(state.targets or ()), result)
        if act is Act.SOCIALISE:
            log.warning("no ADL target left: socialising to the pool", extra=where)
            return self._send_and_wait(fns.socializeBadDebt(market, side), act.value, result)
        if act is Act.WAIT_STALE_PRICE:
            held = self.repeats.due(("bad debt stale", market, side))
            if held is not None:
                log.warning(
                    "bad debt waits: the market's price is stale",
                    extra=kv(**where["fields"], repeats=held),
                )
            return False
        held = self.repeats.due(("grace", market, side))
        if held is not None:
            at = socializable_at(state.recorded_at or 0, state.grace_period)
            log.info(
                "bad debt without ADL target; waiting for the grace period",
                extra=kv(**where["fields"], socializable_at=at, repeats=held),
            )
        return False

    def _adl_targets(self, snap: MarketSnapshot, market: int, side: int, debt: int) -> list[str]:
        """Eligible targets in the contract's order, as many as the debt needs (plus one), capped;
        under the market's pro-rata policy every eligible target, in ascending address order."""
        off_chain = adl_scores(self.index, snap, market, side)
        if not off_chain:
            return []
        candidates = sorted(off_chain)
        on_chain = confirm_adl_scores(self.bw, market, candidates, snap.block.number)
        mismatched = {
            a: (off_chain[a], on_chain[a]) for a in candidates if off_chain[a] != on_chain[a]
        }
        if mismatched:
            self.metrics.adl_score_mismatches.inc(len(mismatched))
            log.warning(
                "off-chain ADL scores differ from adlScoresOf; using the chain's",
                extra=kv(
                    market=market,
                    accounts=len(mismatched),
                    example=str(next(iter(mismatched.items()))),
                ),
            )
        if self._adl_policy(snap, market) == prorata.PRO_RATA:
            # pro rata: every eligible position pays its share, so the whole side is presented
            return prorata.pro_rata_set(on_chain)
        ranked = rm.rank_adl(on_chain)
        price = snap.prices[market]
        chosen: list[str] = []
        covered = 0
        for account in ranked[: self.settings.adl_max_targets]:
            chosen.append(account)
            p = self.index.accounts[account].positions[market]
            covered += max(0, rm.unrealized_pnl(p.size, p.open_notional, price))
            if covered > debt and len(chosen) > 1:
                break
        sign = adl_side_holders(side)
        assert all(self.index.accounts[a].positions[market].size * sign > 0 for a in chosen)
        return chosen

    def _adl_policy(self, snap: MarketSnapshot, market: int) -> int:
        """The market's ADL policy (``adlPolicyOf``) at the snapshot's block."""
        return int(
            self.bw.ch.functions.adlPolicyOf(market).call(block_identifier=snap.block.number)
        )

    def _deleverage(self, market: int, targets: list[str], result: PassResult) -> bool:
        """Sends autoDeleverage; a simulation that finds the order broken (funding moved a near tie)
        or a target ineligible trims the list and tries again."""
        while targets:
            fn = self.bw.ch.functions.autoDeleverage(market, targets)
            try:
                gas = self.sender.estimate(fn, "autoDeleverage")
            except Simulation as sim:
                bad = sim.error.args.get("target")
                log.warning(
                    "ADL simulation reverted", extra=kv(market=market, error=str(sim.error))
                )
                if sim.error.name == "AdlOutOfOrder" and bad in targets:
                    targets = targets[: targets.index(bad)]
                elif sim.error.name == "AdlTargetIneligible" and bad in targets:
                    targets = [t for t in targets if t != bad]
                else:
                    return False
                continue
            return self._send_and_wait(
                fn, "autoDeleverage", result, gas=self.sender.with_margin(gas)
            )
        return False

    def _send_and_wait(
        self, fn: Any, action: str, result: PassResult, gas: int | None = None
    ) -> bool:
        if self.stopping:
            return False
        try:
            pending = self.sender.send(fn, action=action, gas=gas, keys=[(action,)])
        except Simulation as sim:
            args = getattr(fn, "args", None) or (None,)
            market = args[0] if isinstance(args[0], int) else None
            self._not_sending(sim.error, result, market, action=action)
            return False
        result.transactions.append(pending.hashes[0])
        outcome = self.sender.wait(pending, self.settings.receipt_timeout)
        self._note_outcome(outcome, result)
        return outcome.ok


# ---------------------------------------------------------------------------- command line


def run_from_cli(bw: Bulwark, signer: LocalAccount, args: Any) -> int:
    """``bulwark keeper [--once] [--config FILE] [--metrics-port N] [--log-format plain|json]``.

    The command line keeps the keeper's state (checkpoint, lock) in the user's state directory
    unless the settings say otherwise, and says where at startup."""
    try:
        settings = load_settings(
            getattr(args, "config", None),
            None,  # the settings loader reads BULWARK_KEEPER_* from the environment
            {
                "metrics_port": getattr(args, "metrics_port", None),
                "log_format": getattr(args, "log_format", None),
            },
        )
        if settings.state_dir is None:
            settings = settings.replace(state_dir=str(paths.keeper_state_dir()))
        setup_logging(settings.log_format, settings.log_level)
        keeper = Keeper(bw, signer, settings)
        keeper.tune_provider()
        if not getattr(args, "once", False):
            return keeper.run_forever()
        try:
            result = keeper.run_once()
        finally:
            keeper.shutdown()
        if getattr(args, "json", False):
            print(json.dumps(result.to_json()))
        else:
            print(" ".join(f"{k}={v}" for k, v in result.summary().items()))
        return EXIT_OK if not result.errors else EXIT_ERROR
    except ChainReset as exc:
        print(f"bulwark keeper: {exc}", file=sys.stderr)
        return EXIT_CHAIN_RESET
    except BulwarkError as exc:
        print(f"bulwark keeper: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if node_unreachable(exc):
            print(
                f"bulwark keeper: the node stopped answering ({type(exc).__name__})",
                file=sys.stderr,
            )
            return EXIT_ERROR
        raise


def refused_at_startup(ctx: Any, exc: BulwarkError) -> int:
    """The command line could not set the keeper up (``ctx`` is the CLI's context): one line on
    stderr and the keeper's exit code, 4 when the node answers but has no ClearingHouse at the
    deployment's address (the chain was reset), else 2."""
    address = path = None
    try:
        w3 = ctx.web3()
        path = ctx.deployment_path(int(w3.eth.chain_id))
        address = Deployment.load(path).contracts["ClearingHouse"]
        gone = len(w3.eth.get_code(address)) == 0
    except Exception:
        gone = False
    if gone:
        print(
            f"bulwark keeper: chain reset: no ClearingHouse at {address} on the node's chain "
            f"(deployment file {path}): deploy again or pass the right --deployment",
            file=sys.stderr,
        )
        return EXIT_CHAIN_RESET
    print(f"bulwark keeper: {exc}", file=sys.stderr)
    return EXIT_ERROR
