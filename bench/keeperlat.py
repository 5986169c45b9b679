"""Liquidation latency in blocks, with the keeper as a separate process.

A population of ETH-USD longs (notional 1,000-8,000 USDC, leverage 2x-19x, so every liquidation
closes the position in full) goes through a crash path from ``scenarios/``: Black Thursday's ETH
fall (12 March 2020, -45% in a day), resampled to hourly steps and rescaled to start at 3,000.
Anvil mines a block every second; one price step is published every two blocks. ``bulwark keeper``
runs as its own process, started from the command line as an operator starts it (settings from
``BULWARK_KEEPER_*``, state in its own XDG state directory).

A liquidation's latency is the number of blocks from the first block at whose end the account is
liquidatable with valid prices (``healthsOf`` read at that block) to the block of its
``Liquidated`` event: 1 is the floor (the keeper sees a block, its transaction goes into the next).
The figure is the distribution over every liquidatable episode that ended in a liquidation: p50,
p95, max. An episode that ends because the price recovered first (the batch, mined after the price
update in the same block, finds the account healthy) is counted apart; one still open at the end is
a miss. The soak test
(``tests/test_soak.py``) drives the same world with faults injected in turn.

``python -m bench.keeperlat [--accounts N]`` writes ``bench/results/keeper_latency.json`` and prints
the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchError, machine_line, write_result
from bulwark.devnet.world import World, bench_account, wad, world

ACCOUNTS = 150
BLOCK_TIME = 1
STEP_BLOCKS = 2
PATH_STEP_SECONDS = 3_600
START_PRICE = 3_000.0
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- the keeper process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KeeperProcess:
    """``bulwark keeper`` in a process of its own; its stdout and stderr (JSON log lines and the
    command line's own lines) go to `log`."""

    rpc_url: str
    deployment: Path
    state_home: Path
    log: Path
    dev_account: int = 3
    settings: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_mb: float = 0.0

    def start(self) -> KeeperProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
        env["XDG_STATE_HOME"] = str(self.state_home)
        env["OPENBLAS_NUM_THREADS"] = "1"
        for name, value in self.settings.items():
            env[f"BULWARK_KEEPER_{name.upper()}"] = str(value)
        argv = [
            sys.executable, "-m", "bulwark.cli", "keeper",
            "--rpc", self.rpc_url, "--deployment", str(self.deployment),
            "--dev-account", str(self.dev_account), "--log-format", "json",
        ]  # fmt: skip
        out = self.log.open("ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=REPO)
        finally:
            out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        """Resident memory now (and the peak seen so far is kept)."""
        if not self.alive():
            return 0.0
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    self.peak_rss_mb = max(self.peak_rss_mb, rss)
                    return rss
        except OSError:
            pass
        return 0.0

    def lines(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.log.is_file():
            return out
        for raw in self.log.read_text(errors="replace").splitlines():
            try:
                item = json.loads(raw)
            except json.JSONDecodeError:
                item = {"msg": raw, "level": "stderr"}
            out.append(item if isinstance(item, dict) else {"msg": raw, "level": "stderr"})
        return out

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [x for x in self.lines() if x.get("msg") == msg]

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return int(self.proc.wait(timeout))

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return int(self.proc.wait(timeout))
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def keeper_settings(metrics_port: int = 0) -> dict[str, Any]:
    """What the runs set through ``BULWARK_KEEPER_*``: a 1-second chain wants short polls and
    timeouts (the defaults are for 12-second blocks)."""
    return {
        "poll_interval": 0.2,
        "receipt_timeout": 8,
        "rpc_timeout": 2,
        "backoff_initial": 0.2,
        "backoff_max": 1,
        "checkpoint_interval": 2,
        "late_pass_blocks": 4,
        "metrics_port": metrics_port,
    }


# ---------------------------------------------------------------------------- the world


def crash_path() -> list[float]:
    """ETH-USD from Black Thursday in hourly steps, rescaled to start at 3,000, up to its low."""
    from bulwark.sim.scenarios import load

    _, path = load("black-thursday")
    eth = [(s.timestamp, s.prices["ETH-USD"]) for s in path.steps if "ETH-USD" in s.prices]
    buckets: dict[int, float] = {}
    for stamp, price in eth:
        buckets[(stamp - eth[0][0]) // PATH_STEP_SECONDS] = float(price)
    prices = [buckets[k] for k in sorted(buckets)]
    low = int(np.argmin(prices))
    return [round(START_PRICE * p / prices[0], 2) for p in prices[: low + 1]]


def setup(w: World, n: int, seed: int = 12) -> list[str]:
    """Pool, fund and `n` ETH longs; returns the trader addresses (automine on)."""
    w.rpc("evm_setAutomine", True)
    lp, staker = bench_account(0, "lat-lp"), bench_account(0, "lat-staker")
    w.give_ether([lp, staker])
    w.seed_pool(5_000_000, lp)
    w.stake(500_000, staker)
    rng = np.random.default_rng(seed)
    notional = rng.uniform(1_000, 8_000, n)
    leverage = rng.uniform(2, 19, n)
    traders = [bench_account(i, "lat") for i in range(n)]
    margins = [math.ceil(x / lev) + 5 for x, lev in zip(notional, leverage, strict=True)]
    w.fund_accounts(traders, margins)
    sizes = [wad(round(x / START_PRICE, 6)) for x in notional]
    w.open_positions([(t, "ETH-USD", s) for t, s in zip(traders, sizes, strict=True)])
    return [t.address for t in traders]


def publish(w: World, prices: dict[str, float]) -> int:
    """Publishes prices, all in one block; waits for it and returns its number."""
    for market, price in prices.items():
        fn = w.bw.feeds[market].functions.updateAnswer(round(price * 10**8))
        w.sender.send(w.admin, fn, gas=150_000)
    return max(int(r["blockNumber"]) for r in w.sender.wait(timeout=60))


def wait_blocks(w: World, until: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while w.w3.eth.block_number < until:
        if time.monotonic() > deadline:
            raise BenchError(f"the chain did not reach block {until}")
        time.sleep(0.1)


def liquidatable_by_block(w: World, traders: Sequence[str], start: int, end: int) -> dict[int, Any]:
    """Block -> the set of accounts liquidatable at its end, or None where a price was not valid
    (``healthsOf`` reverts then)."""
    ch = w.bw.ch.functions
    out: dict[int, Any] = {}
    for b in range(start, end + 1):
        try:
            healths = ch.healthsOf(list(traders)).call(block_identifier=b)
        except Exception:
            out[b] = None
            continue
        out[b] = {a for a, h in zip(traders, healths, strict=True) if h[3]}
    return out


def liquidation_blocks(w: World, since: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for e in w.bw.ch.events.Liquidated().get_logs(from_block=since):
        out.setdefault(e["args"]["account"], []).append(int(e["blockNumber"]))
    return out


@dataclass(frozen=True)
class Episode:
    """One stretch of blocks during which an account was liquidatable (valid prices only)."""

    account: str
    start: int  # the first block at whose end it was liquidatable
    blocks: int | None  # to the block that liquidated it, or that found it healthy; None: open
    liquidated: bool


def episodes(by_block: dict[int, Any], liquidated: dict[str, list[int]]) -> list[Episode]:
    """Every liquidatable episode of every account. An episode ends with the account's liquidation,
    or when a price move makes it healthy again first (the keeper's batch then finds it healthy:
    a race with the price, not a miss); one still liquidatable at the last block is open. Blocks
    whose prices were not valid neither start nor end an episode."""
    blocks = sorted(by_block)
    accounts = sorted({a for v in by_block.values() if v for a in v})
    out: list[Episode] = []
    for a in accounts:
        start: int | None = None
        for b in blocks:
            state = by_block[b]
            if state is None:
                continue
            if a in state:
                start = b if start is None else start
            elif start is not None:
                hit = [x for x in liquidated.get(a, []) if start < x <= b]
                out.append(Episode(a, start, (hit[0] if hit else b) - start, bool(hit)))
                start = None
        if start is not None:
            out.append(Episode(a, start, None, False))
    return out


def distribution(values: Sequence[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    arr = np.array(values)
    return {
        "count": len(values),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
        "histogram": {str(k): int((arr == k).sum()) for k in sorted(set(values))},
    }


@contextmanager
def crash_world(accounts: int) -> Iterator[tuple[World, list[str]]]:
    """A 1-second chain with the population set up; interval mining switched on."""
    with world(block_time=BLOCK_TIME) as w:
        traders = setup(w, accounts)
        w.rpc("evm_setAutomine", False)
        w.rpc("evm_setIntervalMining", BLOCK_TIME)
        yield w, traders


def run_path(
    w: World,
    prices: Sequence[float],
    hooks: dict[int, Callable[[], None]] | None = None,
    sample: Callable[[], None] | None = None,
) -> int:
    """Publishes each ETH-USD price, waits STEP_BLOCKS blocks, runs the hook of that step if any;
    returns the block before the first update."""
    start = int(w.w3.eth.block_number)
    for i, price in enumerate(prices):
        block = publish(w, {"ETH-USD": price})
        wait_blocks(w, block + STEP_BLOCKS)
        if sample is not None:
            sample()
        if hooks and i in hooks:
            hooks[i]()
    return start


def quiet(w: World, traders: Sequence[str], timeout: float = 60.0) -> None:
    """Waits until nothing is liquidatable at the head."""
    deadline = time.monotonic() + timeout
    while True:
        number = w.w3.eth.block_number
        healths = w.bw.ch.functions.healthsOf(list(traders)).call(block_identifier=number)
        if not any(h[3] for h in healths):
            return
        if time.monotonic() > deadline:
            raise BenchError("accounts still liquidatable at the end")
        time.sleep(0.5)


# ---------------------------------------------------------------------------- the benchmark


def run(accounts: int = ACCOUNTS, workdir: Path | None = None) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, crash_world(accounts) as (w, traders):
        work = workdir or Path(tmp)
        deployment = w.deployment.save(work / "deployment.json")
        keeper = KeeperProcess(
            w.node.rpc_url,
            deployment,
            work / "state",
            work / "keeper.log",
            settings=keeper_settings(),
        ).start()
        try:
            deadline = time.monotonic() + 60
            while not keeper.logged("startup checks passed"):
                if not keeper.alive() or time.monotonic() > deadline:
                    raise BenchError(f"the keeper did not start: {keeper.lines()[-3:]}")
                time.sleep(0.2)
            prices = crash_path()
            start = run_path(w, prices, sample=keeper.rss_mb)
            quiet(w, traders)
            end = int(w.w3.eth.block_number)
        finally:
            code = keeper.terminate()
        found = episodes(
            liquidatable_by_block(w, traders, start, end), liquidation_blocks(w, start)
        )
        missed = [e for e in found if e.blocks is None]
        if missed:
            raise BenchError(f"{len(missed)} liquidatable accounts were never liquidated")
        values = [e.blocks for e in found if e.liquidated and e.blocks is not None]
        return {
            "accounts": accounts,
            "block_time": BLOCK_TIME,
            "price_steps": len(prices),
            "path": f"black-thursday ETH-USD, {PATH_STEP_SECONDS // 60}-minute steps, "
            f"rescaled to {START_PRICE:.0f}, one step per {STEP_BLOCKS} blocks",
            "blocks": end - start,
            "latency_blocks": distribution(values),
            "episodes_recovered": sum(1 for e in found if not e.liquidated),
            "keeper_peak_rss_mb": round(keeper.peak_rss_mb, 1),
            "keeper_exit_code": code,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.keeperlat", description=__doc__.splitlines()[0]
    )
    p.add_argument("--accounts", type=int, default=ACCOUNTS)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    result = run(args.accounts)
    path = write_result("keeper_latency", result, args.out)
    d = result["latency_blocks"]
    print(f"Machine: {machine_line()}")
    print(
        f"{result['accounts']} accounts, {d['count']} liquidated over {result['price_steps']} "
        f"price steps: latency p50 {d['p50']:.0f}, p95 {d['p95']:.0f}, max {d['max']} blocks "
        f"({d['histogram']}); keeper peak RSS {result['keeper_peak_rss_mb']} MB -> {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
