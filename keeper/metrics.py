"""Prometheus metrics and the ``/metrics`` + ``/healthz`` endpoint of the keeper.

Each keeper owns its registry, so several keepers in one process (tests, the stress runner) do not
collide. The HTTP server is a small threaded ``http.server``: ``/metrics`` is the Prometheus text
format, ``/healthz`` answers 200 with a JSON status while the keeper is live and has completed a pass
recently, 503 otherwise.
"""

from __future__ import annotations

import json
import threading
import time
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
            "Sends dropped because simulation showed nothing left to do",
            registry=r,
        )
        self.adl_steps = Counter(
            "bulwark_keeper_adl_steps", "AutoDeleveraged events from own transactions", registry=r
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
            "Wall clock minus the head block's timestamp",
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

    def render(self) -> bytes:
        return generate_latest(self.registry)


def wad_to_float(amount: int) -> float:
    return amount / WAD


class HealthState:
    """What /healthz reports; the daemon updates it."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.started = time.time()
        self.last_ok: float | None = None
        self.last_block: int | None = None
        self.node_up = True
        self.halted: str | None = None
        self._lock = threading.Lock()

    def ok(self, block: int) -> None:
        with self._lock:
            self.last_ok = time.time()
            self.last_block = block
            self.node_up = True

    def status(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            now = time.time()
            age = None if self.last_ok is None else now - self.last_ok
            reference = self.last_ok if self.last_ok is not None else self.started
            healthy = self.halted is None and self.node_up and now - reference <= self.max_age
            return healthy, {
                "status": "ok" if healthy else "unhealthy",
                "last_block": self.last_block,
                "last_pass_age_seconds": None if age is None else round(age, 3),
                "node_up": self.node_up,
                "halted": self.halted,
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
            else:
                self._reply(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
