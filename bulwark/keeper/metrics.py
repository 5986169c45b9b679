"""Prometheus metrics and the ``/metrics`` + ``/healthz`` endpoint of the keeper.

Each keeper owns its registry, so several keepers in one process (tests, the stress runner) do not
collide. The HTTP server is a small threaded ``http.server``: ``/metrics`` is the Prometheus text
format, ``/healthz`` answers 200 with a JSON status while the keeper is live and has completed a pass
recently and nothing is degraded, 503 otherwise; ``/livez`` answers 200 until the keeper halts (for a
supervisor that restarts dead processes, not degraded ones).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

WAD = 10**18


class KeeperMetrics:
    """Every metric the keeper exports (names are listed in docs/keeper.md)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.accounts_tracked = Gauge(
            "bulwark_keeper_accounts_tracked", "Accounts in the index", registry=r
        )
        self.liquidatable = Gauge(
            "bulwark_keeper_liquidatable_accounts",
            "Accounts confirmed liquidatable on-chain in the last pass",
            registry=r,
        )
        self.liquidatable_left = Gauge(
            "bulwark_keeper_liquidatable_left",
            "Accounts still confirmed liquidatable when the last pass ended",
            registry=r,
        )
        self.pass_rounds = Histogram(
            "bulwark_keeper_pass_rounds",
            "Rounds (liquidate, then settle bad debt) one pass needed",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16),
            registry=r,
        )
        self.round_limit_hits = Counter(
            "bulwark_keeper_round_limit_hits",
            "Passes that stopped at max_rounds_per_pass with work still to do",
            registry=r,
        )
        self.candidates = Gauge(
            "bulwark_keeper_screen_candidates",
            "Accounts the vectorised screen flagged in the last pass",
            registry=r,
        )
        self.liquidations_sent = Counter(
            "bulwark_keeper_liquidations_sent",
            "Liquidation entries sent in liquidateBatch",
            registry=r,
        )
        self.liquidations_mined = Counter(
            "bulwark_keeper_liquidations_mined", "Liquidations that succeeded on-chain", registry=r
        )
        self.liquidations_failed = Counter(
            "bulwark_keeper_liquidations_failed",
            "Liquidation entries skipped or reverted on-chain",
            registry=r,
        )
        self.txs = Counter(
            "bulwark_keeper_transactions",
            "Transactions by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.replacements = Counter(
            "bulwark_keeper_fee_replacements", "Transactions re-sent with a higher fee", registry=r
        )
        self.races_lost = Counter(
            "bulwark_keeper_races_lost",
            "Sends dropped because simulation showed nothing left to do (another keeper was first)",
            registry=r,
        )
        self.oracle_refusals = Counter(
            "bulwark_keeper_oracle_refusals",
            "Sends dropped because the simulation's oracle read reverted (stale or invalid price)",
            ["market"],
            registry=r,
        )
        self.market_stale = Gauge(
            "bulwark_keeper_market_stale",
            "1 while the market's oracle price is stale or invalid (its accounts are not screened)",
            ["market"],
            registry=r,
        )
        self.unscreened = Gauge(
            "bulwark_keeper_unscreened_accounts",
            "Accounts with a position in a market whose price is stale (not screened)",
            registry=r,
        )
        self.rpc_latency = Histogram(
            "bulwark_keeper_rpc_latency_seconds",
            "Duration of each JSON-RPC request (a batch counts once), failed ones included",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.rpc_errors = Counter(
            "bulwark_keeper_rpc_errors",
            "JSON-RPC requests that got no answer (timeout, connection refused or reset)",
            ["method", "error"],
            registry=r,
        )
        self.seconds_since_pass = Gauge(
            "bulwark_keeper_seconds_since_pass",
            "Wall seconds since the last completed pass",
            registry=r,
        )
        self.block_interval = Gauge(
            "bulwark_keeper_block_interval_seconds",
            "Seconds between blocks, as the keeper has observed them",
            registry=r,
        )
        self.passes_late = Gauge(
            "bulwark_keeper_passes_late",
            "1 while no pass has completed for late_pass_blocks block intervals",
            registry=r,
        )
        self.adl_steps = Counter(
            "bulwark_keeper_adl_steps", "AutoDeleveraged events from own transactions", registry=r
        )
        self.requests_lapsed = Counter(
            "bulwark_keeper_requests_lapsed",
            "Unstake requests of the insurance fund lapsed by own transactions (claim window passed)",
            registry=r,
        )
        self.adl_score_mismatches = Counter(
            "bulwark_keeper_adl_score_mismatches",
            "Off-chain ADL scores that differed from adlScoresOf",
            registry=r,
        )
        self.fund_assets = Gauge(
            "bulwark_keeper_fund_assets_usd", "Insurance fund assets (quote units)", registry=r
        )
        self.fund_available = Gauge(
            "bulwark_keeper_fund_available_usd",
            "What the insurance fund could pay now (quote units)",
            registry=r,
        )
        self.bad_debt = Gauge(
            "bulwark_keeper_bad_debt_usd", "Outstanding bad debt (quote units)", registry=r
        )
        self.block_lag = Gauge(
            "bulwark_keeper_block_lag",
            "Head block minus the last block the index processed",
            registry=r,
        )
        self.head_age = Gauge(
            "bulwark_keeper_head_age_seconds",
            "Wall clock minus the head block's timestamp (negative: chain time ahead of the clock)",
            registry=r,
        )
        self.last_block = Gauge(
            "bulwark_keeper_last_block", "Last block a pass completed on", registry=r
        )
        self.tick_duration = Histogram(
            "bulwark_keeper_tick_duration_seconds",
            "Duration of one full pass",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.ticks = Counter("bulwark_keeper_ticks", "Passes by outcome", ["outcome"], registry=r)
        self.blocks_dropped = Counter(
            "bulwark_keeper_blocks_dropped",
            "New blocks skipped because a pass was still running",
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "bulwark_keeper_consecutive_failures",
            "Failed passes in a row (circuit breaker input)",
            registry=r,
        )
        self.node_up = Gauge("bulwark_keeper_node_up", "1 while the node answers", registry=r)
        self.signer_eth = Gauge(
            "bulwark_keeper_signer_eth", "ETH the keeper holds for gas", registry=r
        )
        self.in_flight = Gauge(
            "bulwark_keeper_in_flight_transactions", "Sent, not yet mined or dropped", registry=r
        )

    # What the transaction sender reports (bulwark.chain.sender.SendMetrics).

    def tx_outcome(self, action: str, outcome: str, in_flight: int) -> None:
        self.txs.labels(action=action, outcome=outcome).inc()
        self.in_flight.set(in_flight)

    def tx_replaced(self) -> None:
        self.replacements.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def wad_to_float(amount: int) -> float:
    return amount / WAD


class HealthState:
    """What /healthz reports; the daemon updates it.

    ``ok``: the node answers, the circuit breaker has not tripped, a pass completed within
    ``max_age`` seconds and nothing is degraded. ``degraded``: the keeper runs but cannot do all
    its work (passes late, a market's price stale); each reason has a name so the condition that
    set it clears it. ``unhealthy``: node away or no pass for ``max_age``. ``halted``: stopping."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.started = time.time()
        self.last_ok: float | None = None
        self.last_block: int | None = None
        self.node_up = True
        self.halted: str | None = None
        self.degraded: dict[str, str] = {}
        self._lock = threading.Lock()

    def ok(self, block: int) -> None:
        with self._lock:
            self.last_ok = time.time()
            self.last_block = block
            self.node_up = True

    def degrade(self, name: str, reason: str) -> None:
        with self._lock:
            self.degraded[name] = reason

    def recover(self, name: str) -> bool:
        """Clears a degraded reason; True if it was set."""
        with self._lock:
            return self.degraded.pop(name, None) is not None

    def status(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            now = time.time()
            age = None if self.last_ok is None else now - self.last_ok
            reference = self.last_ok if self.last_ok is not None else self.started
            live = self.halted is None and self.node_up and now - reference <= self.max_age
            if self.halted is not None:
                state = "halted"
            elif not live:
                state = "unhealthy"
            elif self.degraded:
                state = "degraded"
            else:
                state = "ok"
            return state == "ok", {
                "status": state,
                "last_block": self.last_block,
                "last_pass_age_seconds": None if age is None else round(age, 3),
                "node_up": self.node_up,
                "halted": self.halted,
                "degraded": sorted(self.degraded.values()),
            }


class MetricsServer:
    """Serves /metrics and /healthz on a background thread."""

    def __init__(self, metrics: KeeperMetrics, health: HealthState, host: str, port: int) -> None:
        handler = _handler(metrics, health)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="keeper-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _handler(metrics: KeeperMetrics, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path == "/healthz":
                healthy, body = health.status()
                self._reply(200 if healthy else 503, "application/json", json.dumps(body).encode())
            elif path == "/livez":
                _, body = health.status()
                live = body["status"] != "halted"
                self._reply(200 if live else 503, "application/json", json.dumps(body).encode())
            else:
                self._reply(404, "text/plain", b"not found: try /metrics, /healthz or /livez\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


# ---------------------------------------------------------------------------- RPC timing

_OBSERVERS = "_bulwark_rpc_observers"


def instrument_provider(provider: Any, metrics: KeeperMetrics) -> None:
    """Times every request of a web3 provider into ``metrics.rpc_latency`` (a batch counts once, as
    ``batch``) and counts the requests that got no answer. The provider's own methods are wrapped
    once; each keeper sharing the provider adds its metrics (held weakly: a keeper that is gone
    stops being fed)."""
    observers: weakref.WeakSet[KeeperMetrics] | None = getattr(provider, _OBSERVERS, None)
    if observers is None:
        observers = weakref.WeakSet()
        setattr(provider, _OBSERVERS, observers)
        single, batch = provider.make_request, provider.make_batch_request

        def timed(method: str, call: Any, *args: Any) -> Any:
            started = time.monotonic()
            try:
                return call(*args)
            except Exception as exc:
                for m in list(observers):
                    m.rpc_errors.labels(method=method, error=type(exc).__name__).inc()
                raise
            finally:
                elapsed = time.monotonic() - started
                for m in list(observers):
                    m.rpc_latency.labels(method=method).observe(elapsed)

        provider.make_request = lambda method, params: timed(str(method), single, method, params)
        provider.make_batch_request = lambda requests: timed("batch", batch, requests)
    observers.add(metrics)
