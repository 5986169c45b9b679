"""The daemon on chains of its own with one-second blocks: a crash liquidated within two blocks,
/metrics and /healthz, two keepers sharing accounts without double-sending, a backup keeper, and the
circuit breaker."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Self

import pytest
from support import crash_book, own_chain, wait_for

from bulwark.chain.contracts import dev_account
from bulwark.devnet.world import World
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import EXIT_CIRCUIT_BREAKER, Keeper
from bulwark.keeper.screening import shard_of


@pytest.fixture
def chain() -> Iterator[World]:
    with own_chain() as c:
        c.seed_pool(500_000)
        c.stake(20_000)
        yield c


class Running:
    """A keeper daemon on a thread (no signal handlers there: stop() is what a signal does)."""

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.code = self.keeper.run_forever()

    def __enter__(self) -> Self:
        self.thread.start()
        wait_for(
            lambda: self.keeper.last_result is not None or self.code is not None,
            20,
            what="first pass",
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.keeper.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def settings(**changes: object) -> KeeperSettings:
    return KeeperSettings(
        poll_interval=0.1, fund_watch_interval=1.0, metrics_interval=1.0, **changes
    )  # type: ignore[arg-type]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_daemon_liquidates_within_two_blocks_and_reports_metrics(chain: World) -> None:
    # given a book of longs, one-second blocks and a running keeper with metrics on a free port
    traders = [t.address for t in crash_book(chain, 10)]
    chain.interval_mining(1)
    keeper = Keeper(chain.bw, dev_account(3), settings(metrics_port=_free_port()))
    with Running(keeper):
        port = keeper.settings.metrics_port
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"

        # when the price falls
        update = chain.set_price("ETH-USD", 2850)["blockNumber"]
        healths = chain.bw.ch.functions.healthsOf(traders).call(block_identifier=update)
        doomed = [a for a, h in zip(traders, healths, strict=True) if h[3]]
        assert len(doomed) >= 3

        # then each was liquidated within two blocks of the update
        wait_for(lambda: not chain.liquidatable(traders), 15, what="liquidations")
        events = chain.events("Liquidated", update)
        first = {}
        for e in events:
            first.setdefault(e["args"]["account"], e["blockNumber"])
        assert set(doomed) <= set(first)
        assert all(first[a] <= update + 2 for a in doomed), (update, first)

        # and the metrics say so
        wait_for(
            lambda: (
                b"bulwark_keeper_liquidations_mined_total"
                in get(f"http://127.0.0.1:{port}/metrics")[1]
                and _metric(port, "bulwark_keeper_liquidations_mined_total") >= len(doomed)
            ),
            10,
            what="metrics",
        )
        assert _metric(port, "bulwark_keeper_accounts_tracked") >= len(traders)
        assert _metric(port, "bulwark_keeper_fund_assets_usd") > 20_000
        assert _metric(port, "bulwark_keeper_bad_debt_usd") == 0
        wait_for(
            lambda: _metric(port, "bulwark_keeper_tick_duration_seconds_count") >= 2,
            5,
            what="passes",
        )
        assert _metric(port, "bulwark_keeper_block_lag") >= 0
        assert get(f"http://127.0.0.1:{port}/nothing")[0] == 404
    assert keeper.exit_code == 0


def test_two_keepers_share_the_accounts_without_double_sending(chain: World) -> None:
    # given two keepers splitting accounts by hash, on one chain with one-second blocks
    traders = [t.address for t in crash_book(chain, 12, smallest=3.5, largest=5.5, margin=1_000)]
    keepers = [
        Keeper(
            chain.bw,
            dev_account(3 + i),
            settings(keeper_count=2, keeper_index=i, backup_delay_blocks=3),
        )
        for i in range(2)
    ]
    shards = {a: shard_of(a, 2) for a in traders}
    assert set(shards.values()) == {0, 1}
    chain.interval_mining(1)
    with Running(keepers[0]), Running(keepers[1]):
        # when the price falls
        update = chain.set_price("ETH-USD", 2850)["blockNumber"]
        wait_for(lambda: not chain.liquidatable(traders), 20, what="liquidations")

    # then each account was liquidated by its own keeper, never twice in a block, nothing skipped
    events = chain.events("Liquidated", update)
    assert events
    keeper_of = {dev_account(3 + i).address: i for i in range(2)}
    for e in events:
        assert keeper_of[e["args"]["keeper"]] == shards[e["args"]["account"]]
    per_block = [(e["args"]["account"], e["blockNumber"]) for e in events]
    assert len(per_block) == len(set(per_block))
    assert chain.events("LiquidationSkipped", update) == []
    assert {keeper_of[e["args"]["keeper"]] for e in events} == {0, 1}
    for k in keepers:
        failed = k.metrics.txs.labels(action="liquidateBatch", outcome="failed")._value.get()
        assert failed == 0


def test_a_keeper_backs_up_the_others_accounts_after_a_delay(chain: World) -> None:
    # given keeper 0 of 2 alone, and liquidatable accounts of both shards
    traders = [t.address for t in crash_book(chain, 8, smallest=4.0, largest=5.0)]
    keeper = Keeper(
        chain.bw, dev_account(3), settings(keeper_count=2, keeper_index=0, backup_delay_blocks=2)
    )
    keeper.run_once()
    chain.set_price("ETH-USD", 2850)
    doomed = chain.liquidatable(traders)
    theirs = {a for a in doomed if shard_of(a, 2) == 1}
    assert theirs and theirs != set(doomed)

    # when it runs, it takes its own accounts and defers the others'
    first = keeper.run_once()
    assert {a for a, _ in first.liquidated} == set(doomed) - theirs
    assert set(first.deferred) == theirs

    # then it takes the others' too, but only once they stayed liquidatable for the delay
    taken_at = None
    for _ in range(5):
        chain.rpc("evm_mine")
        result = keeper.run_once()
        taken = {a for a, _ in result.liquidated}
        assert taken <= theirs
        if taken:
            assert taken == theirs
            taken_at = result.block
            break
        assert set(result.deferred) == theirs and result.block - first.block < 2
    assert taken_at is not None and taken_at - first.block >= 2
    assert chain.liquidatable(traders) == []


def test_circuit_breaker_stops_the_keeper_after_repeated_failures(chain: World) -> None:
    # given a running keeper, liquidatable accounts, and a signer that has run out of gas money
    traders = [t.address for t in crash_book(chain, 4, smallest=4.0, largest=5.0)]
    keeper = Keeper(chain.bw, dev_account(3), settings(max_failed_ticks=3))
    chain.interval_mining(1)
    runner = Running(keeper).__enter__()
    chain.rpc("anvil_setBalance", dev_account(3).address, "0x0")
    chain.set_price("ETH-USD", 2850)
    assert chain.liquidatable(traders)

    # when every pass fails to send, then after three in a row it stops by itself with exit code 3
    runner.thread.join(timeout=30)
    assert not runner.thread.is_alive() and runner.code == EXIT_CIRCUIT_BREAKER
    assert keeper.health.halted and keeper.breaker.failures == 3
    assert keeper.health.status()[0] is False
    assert keeper.metrics.ticks.labels(outcome="failed")._value.get() == 3


def _metric(port: int, name: str) -> float:
    text = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
