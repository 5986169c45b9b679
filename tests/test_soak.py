"""Soak: the keeper as a separate process on an interval-mined chain, through a crash path from
scenarios/, with faults injected in turn.

The world is bench/keeperlat.py's: an Anvil mining a block every second, 120 ETH-USD longs (notional
1,000-8,000 USDC, so every liquidation closes a position in full), Black Thursday's ETH fall in hourly
steps rescaled to 3,000, one step every two blocks, and ``bulwark keeper`` started from the command
line in its own process. In turn, between price steps:

1. the keeper is killed with SIGKILL right after a crash step, mid-pass, and started again; the
   miner is paused from the kill until the new process has made its first pass, so the bound below
   counts blocks a running keeper saw, not Python's start-up on a loaded machine;
2. the node hangs (SIGSTOP for four seconds, then SIGCONT): the keeper must say so;
3. the feeds go stale (the chain's clock jumps past the heartbeat), then fresh prices come;
4. a second keeper on the same key is started: it must refuse to run (exit 2, one line);
5. a second keeper on another key joins and runs to the end (redundancy);
6. at the end, the node is replaced by a fresh chain on the same port: both keepers stop with exit
   code 4 and one critical line each.

Asserted, from the chain: every liquidatable episode (valid prices) ends within LATENCY_BLOCKS
blocks, by the account's liquidation or by a price move that makes it healthy first, and none is
left open; no keeper transaction reverted; each keeper's nonces ran without a gap or a
repeat; no (account, market) was liquidated twice; no bad debt is left; conservation holds; and
each keeper process stayed under RSS_MB resident. Nothing is asserted on wall-clock durations.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is run from the checkout, not installed
    sys.path.insert(0, str(ROOT))

from bench.keeperlat import (  # noqa: E402
    KeeperProcess,
    crash_path,
    crash_world,
    distribution,
    episodes,
    free_port,
    keeper_settings,
    liquidatable_by_block,
    liquidation_blocks,
    publish,
    quiet,
    run_path,
    wait_blocks,
)
from bulwark.chain.contracts import dev_account  # noqa: E402
from bulwark.devnet.node import AnvilNode  # noqa: E402
from bulwark.keeper import invariants  # noqa: E402

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

ACCOUNTS = 120
LATENCY_BLOCKS = 10  # one to see the block, one to be mined in, the rest for a busy machine
RSS_MB = 400
KEEPERS = {3: dev_account(3).address, 4: dev_account(4).address}


def started(keeper: KeeperProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not keeper.logged("startup checks passed"):
        assert keeper.alive(), keeper.lines()[-5:]
        assert time.monotonic() < deadline, "the keeper did not start"
        time.sleep(0.2)


def first_pass(keeper: KeeperProcess, port: int, timeout: float = 120.0) -> None:
    """Until the keeper has sent its first batch or completed its first pass (its /metrics)."""
    deadline = time.monotonic() + timeout
    while not keeper.logged("liquidating"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
            if re.search(r'^bulwark_keeper_ticks_total\{outcome="ok"\} [1-9]', text, re.M):
                return
        except OSError:
            pass
        assert keeper.alive(), keeper.lines()[-5:]
        assert time.monotonic() < deadline, "no first pass"
        time.sleep(0.2)


@pytest.fixture
def keepers() -> Iterator[list[KeeperProcess]]:
    """The keeper processes a test starts; killed at its end, whatever happened."""
    processes: list[KeeperProcess] = []
    try:
        yield processes
    finally:
        for k in processes:
            k.kill()


def test_soak_crash_with_faults_in_turn(tmp_path: Path, keepers: list[KeeperProcess]) -> None:
    with crash_world(ACCOUNTS) as (w, traders):
        deployment = w.deployment.save(tmp_path / "deployment.json")
        state = tmp_path / "state"

        def start(name: str, dev: int = 3, metrics_port: int = 0) -> KeeperProcess:
            k = KeeperProcess(
                w.node.rpc_url,
                deployment,
                state,
                tmp_path / f"{name}.log",
                dev,
                keeper_settings(metrics_port),
            )
            keepers.append(k.start())
            return k

        running = {"main": start("keeper-1")}
        started(running["main"])
        first_block = int(w.w3.eth.block_number)
        first_nonce = {
            a: int(w.w3.eth.get_transaction_count(a, "pending")) for a in KEEPERS.values()
        }
        prices = crash_path()
        seen: dict[str, list[str]] = {}

        def kill_and_restart() -> None:
            # a crash step, and the keeper killed while it works on it
            publish(w, {"ETH-USD": prices[3] * 0.97})
            time.sleep(0.3)
            w.rpc("evm_setIntervalMining", 0)
            running["main"].kill()
            port = free_port()
            running["main"] = start("keeper-2", metrics_port=port)
            started(running["main"])
            # the first pass done (its batch sent, or nothing to send), on the paused chain
            first_pass(running["main"], port)
            w.rpc("evm_setIntervalMining", 1)

        def hang_node() -> None:
            os.kill(w.node.pid, signal.SIGSTOP)
            try:
                time.sleep(4)
            finally:
                os.kill(w.node.pid, signal.SIGCONT)
            wait_blocks(w, int(w.w3.eth.block_number) + 2)
            seen["hang"] = [
                x["msg"]
                for x in running["main"].lines()
                if x.get("msg") in ("node unreachable; backing off", "passes late: no pass "
                                    "completed for several blocks")
            ]  # fmt: skip

        def stale_feeds() -> None:
            heartbeat = int(w.bw.oracle.functions.feedConfig(0).call()[1])
            w.rpc("evm_increaseTime", heartbeat + 60)
            wait_blocks(w, int(w.w3.eth.block_number) + 3)
            btc = w.bw.feeds["BTC-USD"].functions.latestAnswer().call() / 10**8
            eth = w.bw.feeds["ETH-USD"].functions.latestAnswer().call() / 10**8
            publish(w, {"ETH-USD": eth, "BTC-USD": btc})
            wait_blocks(w, int(w.w3.eth.block_number) + 2)
            seen["stale"] = [
                x["msg"]
                for x in running["main"].lines()
                if x.get("msg") == "market price stale or invalid: its accounts are not screened"
            ]

        def same_key() -> None:
            twin = start("same-key", 3)
            assert twin.wait(120) == 2
            seen["twin"] = [x["msg"] for x in twin.lines() if "another keeper" in x["msg"]]

        def other_key() -> None:
            running["other"] = start("other-key", 4)
            started(running["other"])

        hooks = {3: kill_and_restart, 6: hang_node, 9: stale_feeds, 12: same_key, 13: other_key}

        def sample() -> None:
            for k in keepers:
                k.rss_mb()

        start_block = run_path(w, prices, hooks, sample)
        quiet(w, traders)
        end = int(w.w3.eth.block_number)

        # every liquidatable account liquidated within the bound once prices were valid
        by_block = liquidatable_by_block(w, traders, start_block, end)
        assert any(v is None for v in by_block.values()), "the stale window was not seen"
        found = episodes(by_block, liquidation_blocks(w, start_block))
        assert len({e.account for e in found}) >= ACCOUNTS // 2, "most must become liquidatable"
        missed = [e for e in found if e.blocks is None]
        assert not missed, missed
        slow = [e for e in found if e.blocks is not None and e.blocks > LATENCY_BLOCKS]
        spread = distribution([e.blocks for e in found if e.liquidated and e.blocks is not None])
        recovered = sum(1 for e in found if not e.liquidated)
        print(f"soak: {len(found)} episodes ({recovered} recovered first), latency {spread}")
        assert not slow, (slow, spread)
        # nothing liquidated twice
        twice = {
            k: n
            for k, n in Counter(
                (e["args"]["account"], int(e["args"]["marketId"]))
                for e in w.bw.ch.events.Liquidated().get_logs(from_block=first_block)
            ).items()
            if n > 1
        }
        assert not twice, twice
        # no reverted keeper transaction; nonces without a gap or a repeat
        mined: dict[str, list[int]] = {a: [] for a in KEEPERS.values()}
        for number in range(first_block, int(w.w3.eth.block_number) + 1):
            block = w.w3.eth.get_block(number, full_transactions=True)
            for t in block["transactions"]:
                if t["from"] in mined:
                    mined[t["from"]].append(int(t["nonce"]))
                    receipt = w.w3.eth.get_transaction_receipt(t["hash"])
                    assert receipt["status"] == 1, (t["hash"].hex(), t["from"])
        for address, nonces in mined.items():
            start_nonce = first_nonce[address]
            assert nonces == list(range(start_nonce, start_nonce + len(nonces))), nonces
        assert mined[KEEPERS[3]], "the keeper sent nothing"
        # bad debt settled, conservation, memory
        assert int(w.bw.ch.functions.totalBadDebtWad().call()) == 0
        report = invariants.check(w.bw)
        assert report.ok, report.as_dict()
        assert all(k.peak_rss_mb < RSS_MB for k in keepers), [k.peak_rss_mb for k in keepers]
        # the faults were seen for what they were
        assert seen["hang"], "the hung node went unnoticed"
        assert seen["stale"], "the stale feed went unnoticed"
        assert len(seen["twin"]) == 1, seen
        assert all(k.alive() for k in running.values())

        # the chain reset: a fresh, empty chain on the same port
        port = w.node.port
        w.node.stop()
        fresh = AnvilNode(port=port, block_time=1).start()
        try:
            for k in running.values():
                assert k.wait(120) == 4, k.lines()[-5:]
                critical = [x for x in k.lines() if x.get("level") == "critical"]
                assert len(critical) == 1, critical
                assert critical[0]["msg"].startswith("chain reset: no ClearingHouse at ")
                assert not k.logged("reorg: rewinding the index")
        finally:
            fresh.stop()
