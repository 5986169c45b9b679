"""The keeper under faults, on real Anvil nodes: the node killed mid-batch and restarted from an
older state, a reorg of the blocks holding a liquidation, an RPC endpoint answering errors, garbage
and nothing at all, a stuck or priced-out transaction, and nonces taken by another sender.

Every test ends with the same three checks, read from the chain: every account that was liquidatable
is liquidated (none missed), no (account, market) is liquidated twice (no double send took effect),
and the keeper's nonces run without a gap (nothing of its own is stuck behind a hole).

The book: six ETH longs of 500 USDC from 2.0 to 3.0 ETH. A move from 3,000 to 2,850 makes the larger
ones liquidatable; each is closed in full (notional under the partial minimum) and none is bankrupt,
so one liquidation per account is exactly right.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest
from faultproxy import Fault, FaultProxy
from support import Book, crash_book, reverted, seeded_book, wait_for

from bulwark.chain.contracts import Bulwark, connect, dev_account
from bulwark.core.logs import LOGGER_NAME, PlainFormatter
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import Keeper

KEEPER = dev_account(3)
GWEI = 10**9
CRASH_PRICE = 2_850
BOOK_SIZE = 6


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared() -> Iterator[Book]:
    """One chain for the module: a pool, a stake and the book, reverted to after every test."""
    with seeded_book(lambda chain: [t.address for t in open_book(chain, "faults")]) as b:
        yield b


@pytest.fixture
def book(shared: Book) -> Iterator[Book]:
    with reverted(shared) as b:
        yield b


@pytest.fixture(autouse=True)
def keeper_log() -> Iterator[None]:
    """The keeper's log lines with their fields (decoded errors, hashes, nonces) on stderr, which
    pytest shows with a failing test."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def open_book(chain: World, salt: str) -> list[Any]:
    return crash_book(chain, BOOK_SIZE, salt=salt, margin=500, smallest=2.0, largest=3.0)


def settings(**changes: Any) -> KeeperSettings:
    base: dict[str, Any] = {
        "poll_interval": 0.1,
        "backoff_initial": 0.1,
        "backoff_max": 0.4,
        "fund_watch_interval": 1.0,
        "metrics_interval": 1.0,
        "receipt_timeout": 1.5,
        "max_failed_ticks": 10,
    }
    return KeeperSettings(**(base | changes))


class Running:
    """A keeper daemon on a thread (stop() is what SIGTERM does); counts its backoffs."""

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self.code: int | None = None
        self.backoffs = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        fail = keeper.backoff.fail

        def counted() -> float:
            self.backoffs += 1
            return fail()

        keeper.backoff.fail = counted  # type: ignore[method-assign]

    def _run(self) -> None:
        self.code = self.keeper.run_forever()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.keeper.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


# ---------------------------------------------------------------------------- the three checks


def liquidatable(chain: World, accounts: list[str]) -> list[str]:
    """The accounts liquidatable at the head, read at its number (a call at "latest" while Anvil
    mines on an interval now and then panics in the funding accrual, with a block time below the
    market's last accrual)."""
    number = chain.w3.eth.block_number
    healths = chain.bw.ch.functions.healthsOf(list(accounts)).call(block_identifier=number)
    return [a for a, h in zip(accounts, healths, strict=True) if h[3]]


def liquidations(chain: World, since: int) -> Counter[tuple[str, int]]:
    """(account, market) -> Liquidated events on the canonical chain since block `since`."""
    return Counter(
        (e["args"]["account"], int(e["args"]["marketId"]))
        for e in chain.events("Liquidated", since)
    )


def assert_none_missed_none_twice(
    chain: World, traders: list[str], doomed: list[str], since: int
) -> Counter[tuple[str, int]]:
    done = liquidations(chain, since)
    assert set(doomed) <= {a for a, _ in done}, f"missed: {set(doomed) - {a for a, _ in done}}"
    twice = {k: n for k, n in done.items() if n > 1}
    assert not twice, f"liquidated more than once: {twice}"
    assert liquidatable(chain, traders) == []
    return done


def keeper_nonces(chain: World, since: int) -> list[int]:
    """Nonces of the keeper's transactions mined since block `since`, in chain order."""
    head = chain.w3.eth.block_number
    out = []
    for number in range(since, head + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        out += [int(t["nonce"]) for t in block["transactions"] if t["from"] == KEEPER.address]
    return out


def assert_nonces_in_step(chain: World, keeper: Keeper, first_nonce: int, since: int) -> None:
    """The keeper's mined nonces run from `first_nonce` without a hole, nothing of its own waits in
    the pool, and its sender tracks nothing in flight."""
    mined = keeper_nonces(chain, since)
    assert mined == list(range(first_nonce, first_nonce + len(mined))), mined
    latest = chain.w3.eth.get_transaction_count(KEEPER.address, "latest")
    assert latest == first_nonce + len(mined)
    assert chain.w3.eth.get_transaction_count(KEEPER.address, "pending") == latest
    pool = chain.rpc("txpool_content")
    for part in ("pending", "queued"):
        assert not any(k.lower() == KEEPER.address.lower() for k in pool[part]), pool
    assert keeper.sender.pending == {}


def crash(chain: World, traders: list[str]) -> tuple[int, list[str]]:
    """ETH to 2,850; the block of the update and the accounts liquidatable at it."""
    update = int(chain.set_price("ETH-USD", CRASH_PRICE)["blockNumber"])
    healths = chain.bw.ch.functions.healthsOf(traders).call(block_identifier=update)
    doomed = [a for a, h in zip(traders, healths, strict=True) if h[3]]
    assert 2 <= len(doomed) < len(traders)
    return update, doomed


def crash_pending(chain: World, traders: list[str]) -> tuple[int, list[str]]:
    """The price update on a node that mines only on request: sent, mined at once, then checked."""
    feed = chain.bw.feeds["ETH-USD"]
    fn = feed.functions.updateAnswer(CRASH_PRICE * 10**8)
    tx = fn.build_transaction(
        {
            "from": chain.admin.address,
            "nonce": chain.w3.eth.get_transaction_count(chain.admin.address, "pending"),
            "gas": 200_000,
        }
    )
    chain.w3.eth.send_raw_transaction(chain.admin.sign_transaction(tx).raw_transaction)
    chain.rpc("evm_mine")
    update = int(chain.w3.eth.block_number)
    healths = chain.bw.ch.functions.healthsOf(traders).call(block_identifier=update)
    doomed = [a for a, h in zip(traders, healths, strict=True) if h[3]]
    assert 2 <= len(doomed) < len(traders)
    return update, doomed


def nonce_of(chain: World) -> int:
    return int(chain.w3.eth.get_transaction_count(KEEPER.address, "pending"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- a. node killed


def test_node_killed_mid_batch_restarts_from_older_state_and_the_keeper_finishes(
    tmp_path: Path,
) -> None:
    node = AnvilNode(port=_free_port(), state_file=tmp_path / "anvil-state.json").start()
    try:
        w3 = connect(node.rpc_url)
        chain = World(node, Bulwark(w3, deploy_all(w3, dev_account(0))))
        chain.seed_pool(500_000)
        chain.stake(20_000)
        traders = [t.address for t in open_book(chain, "kill")]
        keeper = Keeper(chain.bw, KEEPER, settings(checkpoint_file=str(tmp_path / "cp.json")))
        keeper.run_once()
        first_nonce = nonce_of(chain)
        update, doomed = crash(chain, traders)

        # given the chain on disk as of the price update (SIGTERM writes the state), then two more
        # blocks that only the running node knows, and a node that holds transactions in its pool
        node.stop()
        node.start()
        chain.rpc("evm_setAutomine", False)
        chain.rpc("evm_mine")
        chain.rpc("evm_mine")
        with Running(keeper) as running:
            # when the keeper has sent its batch and the node is killed before mining it
            wait_for(lambda: keeper.sender.pending, 20, what="the batch sent")
            (lost,) = keeper.sender.pending.values()
            assert lost.keys == {("liquidate", a, 0) for a in doomed}
            assert len(chain.rpc("txpool_content")["pending"]) == 1
            os.kill(node.pid, signal.SIGKILL)
            node.stop()
            wait_for(lambda: running.backoffs > 0, 10, what="the outage noticed")

            # and it comes back from its state file, two blocks and the pool poorer, mining again
            node.start()
            assert chain.w3.eth.block_number == update
            assert chain.rpc("txpool_content")["pending"] == {}
            chain.interval_mining(1)

            # then the keeper rewinds its index, drops the lost transaction, and liquidates again
            wait_for(lambda: not liquidatable(chain, traders), 30, what="liquidations")
            wait_for(lambda: keeper.sender.pending == {}, 10, what="nothing in flight")
        assert running.code == 0 and keeper.breaker.failures == 0
        chain.automine()
        assert_none_missed_none_twice(chain, traders, doomed, update)
        assert_nonces_in_step(chain, keeper, first_nonce, update)
        assert keeper.index.block is not None
        canonical = chain.w3.eth.get_block(keeper.index.block)["hash"].to_0x_hex()
        assert keeper.index.block_hash == canonical
        dropped = keeper.metrics.txs.labels(action="liquidateBatch", outcome="dropped")
        assert dropped._value.get() == 1
    finally:
        node.stop()


def test_a_node_back_on_a_shorter_chain_is_served_at_its_next_block(book: Book) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    chain.rpc("evm_setAutomine", False)
    with Running(keeper):
        wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")
        # given a keeper that followed the chain five blocks further than the node will remember
        saved = chain.rpc("evm_snapshot")
        top = chain.w3.eth.block_number + 5
        for _ in range(5):
            chain.rpc("evm_mine")
        wait_for(
            lambda: keeper.last_result is not None and keeper.last_result.block == top,
            10,
            what="the keeper at the old head",
        )
        # when the node comes back on the older state and the next block holds a price fall
        assert chain.rpc("evm_revert", saved) is True
        update, doomed = crash_pending(chain, traders)
        assert update + 2 < top
        chain.interval_mining(1)
        wait_for(lambda: not liquidatable(chain, traders), 20, what="liquidations")
        wait_for(lambda: keeper.sender.pending == {}, 10, what="nothing in flight")
    chain.automine()
    # then it liquidated within two blocks, without waiting for the chain to pass the old head
    assert_none_missed_none_twice(chain, traders, doomed, update)
    blocks = {e["blockNumber"] for e in chain.events("Liquidated", update)}
    assert max(blocks) <= update + 2, (update, top, blocks)


# ---------------------------------------------------------------------------- b. reorg


@pytest.mark.parametrize(
    "replayed",
    [
        pytest.param(False, id="dropped"),
        pytest.param(True, id="replayed"),
    ],
)
def test_reorg_of_the_liquidation_blocks_is_noticed_and_liquidated_once(
    book: Book, replayed: bool
) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    first_nonce = nonce_of(chain)
    update, doomed = crash(chain, traders)

    # given the keeper liquidated them in the blocks after the update
    first = keeper.run_once()
    assert {a for a, _ in first.liquidated} == set(doomed)
    head = chain.w3.eth.block_number
    assert head > update and liquidatable(chain, traders) == []
    (batch,) = first.transactions
    raw = chain.rpc("eth_getRawTransactionByHash", batch)

    # when those blocks are reorganised away: replaced by as many blocks, empty, or holding the
    # keeper's batch again
    chain.rpc("anvil_reorg", head - update, [[raw, 0]] if replayed else [])
    assert chain.w3.eth.block_number == head
    if replayed:
        assert len(liquidations(chain, update)) == len(doomed)
    else:
        assert liquidations(chain, update) == Counter()
        assert set(liquidatable(chain, traders)) == set(doomed)
        assert chain.w3.eth.get_transaction_count(KEEPER.address) == first_nonce

    # then the next pass notices the hash mismatch, rewinds, and liquidates what is left, once
    rewinds: list[int | None] = []
    check = keeper.index._check_reorg

    def spy() -> int | None:
        rewinds.append(check())
        return rewinds[-1]

    keeper.index._check_reorg = spy  # type: ignore[method-assign]
    again = keeper.run_once()
    assert rewinds[0] is not None and rewinds[0] <= update
    assert {a for a, _ in again.sent} == (set() if replayed else set(doomed))
    assert len(again.sent) == len(set(again.sent))
    queued = chain.rpc("txpool_content")["queued"]
    assert not any(k.lower() == KEEPER.address.lower() for k in queued), "behind a nonce hole"
    assert keeper.run_once().sent == []
    assert_none_missed_none_twice(chain, traders, doomed, update)
    assert_nonces_in_step(chain, keeper, first_nonce, update)


# ---------------------------------------------------------------------------- c. RPC faults


@dataclass(frozen=True)
class FaultCase:
    fault: Fault
    count: int
    methods: tuple[str, ...] | None
    noticed: str | None  # what the keeper must have seen: a failed job, a backoff, a lost race

    @property
    def id(self) -> str:
        return f"{self.fault}x{self.count}-" + ("+".join(self.methods) if self.methods else "any")


FAULT_CASES = [
    # reads answered with errors or garbage: the job fails, the next one succeeds
    FaultCase("http500", 3, ("eth_call",), "failed"),
    FaultCase("rpc_error", 3, ("eth_call",), "failed"),
    FaultCase("malformed", 3, ("eth_call",), "failed"),
    # no answer within the client's timeout, or no answer at all: the node counts as away
    FaultCase("hang", 2, ("eth_call",), "backoff"),
    FaultCase("drop", 3, ("eth_call",), "backoff"),
    FaultCase("drop", 12, None, None),  # on anything, web3's own retries included
    # the simulations of the liquidations fail: nothing is sent, the next block tries again
    FaultCase("rpc_error", 2, ("eth_estimateGas",), "race"),
    # the batch is out but the wait for its receipt fails: it stays in flight, is not re-sent
    FaultCase("malformed", 2, ("eth_getTransactionReceipt",), "failed"),
    # the send itself: refused, cut off before the node, or the reply lost after it
    FaultCase("rpc_error", 1, ("eth_sendRawTransaction",), "failed"),
    FaultCase("drop", 1, ("eth_sendRawTransaction",), "backoff"),
    FaultCase("lose_reply", 1, ("eth_sendRawTransaction",), "backoff"),
]


def _noticed(keeper: Keeper, running: Running) -> dict[str, float]:
    return {
        "failed": keeper.metrics.ticks.labels(outcome="failed")._value.get(),
        "backoff": running.backoffs,
        "race": keeper.metrics.races_lost._value.get(),
    }


@pytest.mark.parametrize("case", FAULT_CASES, ids=[c.id for c in FAULT_CASES])
def test_rpc_faults_back_off_recover_and_finish(book: Book, case: FaultCase) -> None:
    chain, traders = book.chain, book.traders
    with FaultProxy(chain.node.rpc_url, hang_seconds=1.5) as proxy:
        bw = Bulwark(connect(proxy.url, timeout=1.0), chain.bw.deployment, chain.bw.artifacts)
        keeper = Keeper(bw, KEEPER, settings())
        keeper.run_once()
        first_nonce = nonce_of(chain)
        chain.rpc("evm_setAutomine", False)

        # given a keeper behind a proxy that will fail the next requests of some kind
        with Running(keeper) as running:
            wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")
            proxy.fail(case.fault, case.count, case.methods)
            # when the price falls and blocks come every second
            update, doomed = crash_pending(chain, traders)
            chain.interval_mining(1)
            # then every fault is served, and the keeper recovers and liquidates
            wait_for(lambda: proxy.pending_faults() == 0, 30, what="the faults to be served")
            wait_for(lambda: not liquidatable(chain, traders), 30, what="liquidations")
            wait_for(lambda: keeper.sender.pending == {}, 15, what="nothing in flight")
            assert running.thread.is_alive() and not keeper.health.halted
        assert running.code == 0
        assert proxy.injected[case.fault] == case.count
    chain.automine()
    assert_none_missed_none_twice(chain, traders, doomed, update)
    assert_nonces_in_step(chain, keeper, first_nonce, update)
    if case.noticed is not None:
        assert _noticed(keeper, running)[case.noticed] >= 1, _noticed(keeper, running)


# ---------------------------------------------------------------------------- d. stuck, nonce


def test_a_stuck_batch_is_replaced_by_the_daemon_and_mined_once(book: Book) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings(replace_after_seconds=0.4, receipt_timeout=30.0))
    keeper.run_once()
    first_nonce = nonce_of(chain)
    chain.rpc("evm_setAutomine", False)
    with Running(keeper):
        wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")
        # given a batch sent after a price fall, on a node that stalls
        update, doomed = crash_pending(chain, traders)
        wait_for(lambda: keeper.sender.pending, 10, what="the batch sent")
        (stuck,) = keeper.sender.pending.values()
        # when it lingers, the daemon re-sends it with the same nonce and higher fees
        wait_for(lambda: stuck.replacements >= 2, 10, what="two replacements")
        pool = chain.rpc("txpool_content")["pending"]
        (ours,) = (v for k, v in pool.items() if k.lower() == KEEPER.address.lower())
        assert list(ours) == [str(stuck.nonce)] and ours[str(stuck.nonce)]["hash"] in stuck.hashes
        # then once blocks come again, one version is mined, once
        chain.interval_mining(1)
        wait_for(lambda: not liquidatable(chain, traders), 30, what="liquidations")
        wait_for(lambda: keeper.sender.pending == {}, 10, what="nothing in flight")
    chain.automine()
    first, last = stuck.hashes[0], stuck.hashes[-1]
    assert len(stuck.hashes) == stuck.replacements + 1 and first != last
    assert_none_missed_none_twice(chain, traders, doomed, update)
    mined = {e["transactionHash"].to_0x_hex() for e in chain.events("Liquidated", update)}
    assert len(mined) == 1 and mined <= set(stuck.hashes)
    assert sum(chain.rpc("eth_getTransactionReceipt", h) is not None for h in stuck.hashes) == 1
    assert keeper.metrics.replacements._value.get() == stuck.replacements
    assert_nonces_in_step(chain, keeper, first_nonce, update)


def test_a_batch_priced_out_by_a_base_fee_spike_is_sent_again_with_the_same_nonce(
    book: Book,
) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings(replace_after_blocks=100, receipt_timeout=1.0))
    keeper.run_once()
    first_nonce = nonce_of(chain)
    chain.rpc("evm_setAutomine", False)
    with Running(keeper):
        wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")
        # given a batch sent after a price fall
        update, doomed = crash_pending(chain, traders)
        wait_for(lambda: keeper.sender.pending, 10, what="the batch sent")
        (priced_out,) = keeper.sender.pending.values()
        # when the base fee jumps above what it offers (the node evicts it), blocks every second
        assert priced_out.fees.max_fee < 100 * GWEI
        chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(100 * GWEI))
        chain.interval_mining(1)
        # then the keeper finds it gone, and sends the work again, with fees for the new base fee
        wait_for(lambda: not liquidatable(chain, traders), 30, what="liquidations")
        wait_for(lambda: keeper.sender.pending == {}, 10, what="nothing in flight")
    chain.automine()
    assert_none_missed_none_twice(chain, traders, doomed, update)
    (mined,) = {e["transactionHash"] for e in chain.events("Liquidated", update)}
    tx = chain.w3.eth.get_transaction(mined)
    assert tx["nonce"] == priced_out.nonce and tx["maxFeePerGas"] >= 100 * GWEI
    assert chain.rpc("eth_getTransactionReceipt", priced_out.hashes[0]) is None
    assert keeper.metrics.txs.labels(action="liquidateBatch", outcome="dropped")._value.get() == 1
    assert_nonces_in_step(chain, keeper, first_nonce, update)


def _rival_send(chain: World, nonce: int, max_fee: int) -> str:
    """Another process holding the keeper's key sends a transaction of its own with `nonce`."""
    tx = chain.bw.token.functions.approve(chain.bw.ch.address, nonce + 1).build_transaction(
        {
            "from": KEEPER.address,
            "nonce": nonce,
            "gas": 100_000,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": max_fee // 2,
        }
    )
    signed = KEEPER.sign_transaction(tx)
    return chain.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


def test_nonces_taken_by_another_sender_are_survived_through_the_daemon(book: Book) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings(replace_after_blocks=100, receipt_timeout=1.0))
    keeper.run_once()
    start = nonce_of(chain)
    keeper.sender.nonces.reserve()
    keeper.sender.nonces.release(start)  # the local counter is seeded at `start`

    # given another process with the same key that used two nonces while the keeper idled
    since = chain.w3.eth.block_number + 1
    for n in (start, start + 1):
        _rival_send(chain, n, 500 * GWEI)
    chain.rpc("evm_setAutomine", False)
    with Running(keeper) as running:
        wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")
        # when the price falls and the keeper sends its batch (its stale counter is re-seeded)
        update, doomed = crash_pending(chain, traders)
        wait_for(lambda: keeper.sender.pending, 10, what="the batch sent")
        (ours,) = keeper.sender.pending.values()
        assert ours.nonce == start + 2
        # and the other process takes that nonce too, at a higher fee, and that is mined
        _rival_send(chain, ours.nonce, 500 * GWEI)
        chain.rpc("evm_mine")
        chain.interval_mining(1)
        # then the keeper drops its transaction, re-screens, and liquidates with the next nonce
        wait_for(lambda: not liquidatable(chain, traders), 30, what="liquidations")
        wait_for(lambda: keeper.sender.pending == {}, 10, what="nothing in flight")
    chain.automine()
    assert running.code == 0 and keeper.breaker.failures == 0
    assert_none_missed_none_twice(chain, traders, doomed, update)
    events = chain.events("Liquidated", update)
    nonces = {chain.w3.eth.get_transaction(e["transactionHash"])["nonce"] for e in events}
    assert nonces == {start + 3}
    assert keeper.metrics.txs.labels(action="liquidateBatch", outcome="dropped")._value.get() == 1
    assert_nonces_in_step(chain, keeper, start, since)
