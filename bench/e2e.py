"""End to end: 1,000 accounts, a -20% price update, and the real keeper liquidating them.

Anvil runs with ``--block-time 2 --gas-limit 30000000``. The accounts are set up with automine
switched on (so setup takes seconds rather than one block per transaction); before the update the
node is switched back to mining a block every 2 seconds (``evm_setIntervalMining 2``). The keeper is
the project's own (``bulwark.keeper.daemon.Keeper(bw, signer, settings).run_once()``), already synced before
the update, as a running daemon would be. After the update is mined (block U) the driver runs passes,
as the daemon does on each new block, until a pass finds nothing liquidatable.

Figures: blocks and chain seconds from U to the block of the last liquidation (L), wall seconds from
seeing U to the last receipt, and the floor: ceil(total liquidation gas used / block gas limit).
The target is floor + 1 (one block to react). The same chain is replayed from a snapshot for each
keeper configuration: the defaults, and one with larger batches and a tighter gas margin.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import BenchError, Row, fmt_s
from bulwark.devnet.world import World, bench_account, wad, world

ACCOUNTS = 1_000
BLOCK_TIME = 2
GAS_LIMIT = 30_000_000
DROP = 0.20
MAX_PASSES = 12


@dataclass(frozen=True)
class Book:
    sizes: list[int]  # WAD, ETH-USD longs
    margins: list[int]  # USDC


def book(n: int, price: float, seed: int = 5) -> Book:
    """Notionals 3k-30k; 80% at 6-19x (bankrupt after -20%), 20% at 4.85-4.95x (liquidatable, not
    bankrupt: closed in full)."""
    rng = np.random.default_rng(seed)
    notional = rng.uniform(3_000, 30_000, n)
    leverage = np.where(rng.random(n) < 0.8, rng.uniform(6, 19, n), rng.uniform(4.85, 4.95, n))
    sizes = [wad(round(x / price, 6)) for x in notional]
    margins = [math.ceil(x / lev) for x, lev in zip(notional, leverage, strict=True)]
    return Book(sizes, margins)


def _settings(kind: str) -> Any:
    from bulwark.keeper.config import KeeperSettings

    if kind == "default":
        return KeeperSettings(log_level="WARNING")
    return KeeperSettings(log_level="WARNING", max_batch=400, gas_margin_bps=1_000)


SETTINGS_NOTES = {
    "default": "keeper, KeeperSettings() defaults (max_batch 40)",
    "tuned": "keeper, KeeperSettings(max_batch=400, gas_margin_bps=1000)",
    "reference": "bench reference driver (not the keeper): healthsOf, batches of half a block from "
    "separate wallets, gas from eth_estimateGas checked by eth_call returning every entry",
}
KINDS = ("default", "tuned", "reference")


def setup(w: World, n: int) -> list[str]:
    """Pool, fund and `n` funded ETH longs; returns the trader addresses."""
    w.rpc("evm_setAutomine", True)
    lp = bench_account(0, "e2e-lp")
    staker = bench_account(0, "e2e-staker")
    w.give_ether([lp, staker])
    w.seed_pool(8_000_000, lp)
    w.stake(4_000_000, staker)
    traders = [bench_account(i, "e2e") for i in range(n)]
    b = book(n, 3_000.0)
    w.fund_accounts(traders, b.margins)
    w.open_positions([(t, "ETH-USD", s) for t, s in zip(traders, b.sizes, strict=True)])
    return [t.address for t in traders]


class KeeperLog(logging.Handler):
    """Keeps what the keeper logs during a replay (messages and fields, with the time they came)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[float, str, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {}) or {}
        self.records.append((time.monotonic(), record.getMessage(), dict(fields)))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, message, _ in self.records:
            out[message] = out.get(message, 0) + 1
        return out

    def timeline(self, since: float, keep: Sequence[str]) -> list[str]:
        lines = []
        for at, message, fields in self.records:
            if message in keep:
                detail = ", ".join(
                    f"{k}={fields[k]}"
                    for k in ("entries", "block", "gas_used", "nonce", "reason", "error")
                    if k in fields
                )
                lines.append(f"+{at - since:6.2f}s {message} {detail}".rstrip())
        return lines


@contextmanager
def keeper_log() -> Iterator[KeeperLog]:
    from bulwark.core.logs import LOGGER_NAME

    logger = logging.getLogger(LOGGER_NAME)
    handler = KeeperLog()
    saved = (logger.level, logger.propagate, list(logger.handlers))
    for h in saved[2]:
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        for h in saved[2]:
            logger.addHandler(h)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _liquidatable(w: World, accounts: Sequence[str]) -> int:
    count = 0
    for i in range(0, len(accounts), 250):
        healths = w.bw.ch.functions.healthsOf(list(accounts[i : i + 250])).call()
        count += sum(1 for h in healths if h[3])
    return count


def _keeper(w: World, kind: str, replay: int) -> Any:
    """A keeper with its own signer per replay: a replay after evm_revert must not resend byte-identical
    transactions, which the node would take for ones it already knows."""
    from bulwark.keeper.daemon import Keeper

    signer = bench_account(replay, "e2e-keeper")
    w.give_ether([signer])
    return Keeper(w.bw, signer, _settings(kind))


def liquidate_after_drop(
    w: World, accounts: Sequence[str], kind: str, replay: int = 0
) -> dict[str, Any]:
    """From a synced keeper and interval mining: the update, then passes until nothing is left."""
    actor: Any = (
        ReferenceDriver(w, accounts, replay) if kind == "reference" else _keeper(w, kind, replay)
    )
    if kind != "reference" and actor.run_once().sent:  # the daemon was running and synced before
        raise BenchError("the keeper found work before the price update")
    w.rpc("evm_setIntervalMining", BLOCK_TIME)
    w.rpc("evm_setAutomine", False)
    start_block = w.w3.eth.block_number
    while w.w3.eth.block_number == start_block:  # start right after a block, as a feeder would
        time.sleep(0.01)
    rebroadcasts_before = w.sender.rebroadcasts
    answer = w.bw.feeds["ETH-USD"].functions.latestAnswer().call()
    update_fn = w.bw.feeds["ETH-USD"].functions.updateAnswer(int(answer * (1 - DROP)))
    tx_hash = w.sender.send(w.admin, update_fn, gas=100_000 + replay)  # a distinct hash per replay
    update = w.sender.receipt(tx_hash, 60)
    w.sender.forget()
    seen_at = time.monotonic()
    u_block = int(update["blockNumber"])
    liquidatable_at_update = _liquidatable(w, accounts)

    passes: list[dict[str, Any]] = []
    with keeper_log() as log:
        for _ in range(MAX_PASSES):
            if kind == "reference":
                summary = actor.run_pass()
                passes.append(summary)
                if not summary["sent"]:
                    break
                continue
            result = actor.run_once()
            passes.append(
                {**result.summary(), "skipped": len(result.skipped), "errors": result.errors[:3]}
            )
            if not result.liquidatable and not result.sent:
                break
            _wait_next_block(w, result.block)
        finished_at = time.monotonic()
    senders = actor.senders if kind == "reference" else {actor.signer.address}
    figures = _figures(w, accounts, senders, u_block, liquidatable_at_update)
    figures["node_lost_txs_rebroadcast"] = w.sender.rebroadcasts - rebroadcasts_before
    keep = ("liquidating", "mined", "replaced with higher fees", "dropped", "transaction failed",
            "batch entry skipped", "batch simulation reverted")  # fmt: skip
    return {
        "driver": SETTINGS_NOTES[kind],
        **figures,
        "wall_seconds": finished_at - seen_at,
        "passes": passes,
        "keeper_log_counts": log.counts(),
        "keeper_timeline": log.timeline(seen_at, keep)[:80],
    }


class ReferenceDriver:
    """What the chain allows: every liquidatable account in batches that fill blocks, sent at once,
    each batch from its own hot wallet (no batch waits on another's nonce)."""

    WALLETS = 8

    def __init__(self, w: World, accounts: Sequence[str], replay: int) -> None:
        self.w = w
        self.accounts = list(accounts)
        self.wallets = [bench_account(replay * 100 + i, "e2e-driver") for i in range(self.WALLETS)]
        self.signer = self.wallets[0]
        w.give_ether(self.wallets)

    @property
    def senders(self) -> set[str]:
        return {a.address for a in self.wallets}

    def liquidatable(self) -> list[str]:
        out: list[str] = []
        for i in range(0, len(self.accounts), 500):
            part = self.accounts[i : i + 500]
            healths = self.w.bw.ch.functions.healthsOf(part).call()
            out += [a for a, h in zip(part, healths, strict=True) if h[3]]
        return out

    def fit_gas(self, fn: Any, entries: int) -> int:
        """A limit at which the batch liquidates every entry: eth_estimateGas alone is not enough, as
        the batch also 'succeeds' with entries skipped for want of gas."""
        gas = int(fn.estimate_gas({"from": self.signer.address}))
        while gas <= GAS_LIMIT:
            done = fn.call({"from": self.signer.address, "gas": gas})
            if done == entries:
                return min(GAS_LIMIT, gas * 102 // 100)
            gas = gas * 115 // 100
        raise BenchError(f"a batch of {entries} does not fit in a block")

    def run_pass(self) -> dict[str, Any]:
        started = time.monotonic()
        todo = self.liquidatable()
        if not todo:
            return {"liquidatable": 0, "sent": 0, "seconds": time.monotonic() - started}
        ch = self.w.bw.ch.functions
        probe = todo[: min(len(todo), 100)]
        per_entry = self.fit_gas(ch.liquidateBatch(probe, [0] * len(probe)), len(probe)) / len(
            probe
        )
        # A block takes a transaction while its gas limit fits in what is left, so two batches of just
        # under half a block each fill a block; one of 60% would leave 40% of every block empty.
        size = max(1, int(GAS_LIMIT * 0.48 / (per_entry * 1.05)))
        for n, i in enumerate(range(0, len(todo), size)):
            chunk = todo[i : i + size]
            fn = ch.liquidateBatch(chunk, [0] * len(chunk))
            self.w.sender.send(
                self.wallets[n % len(self.wallets)], fn, gas=self.fit_gas(fn, len(chunk))
            )
        receipts = self.w.sender.wait(timeout=120, allow_revert=True)
        failed = sum(1 for r in receipts if r["status"] != 1)
        return {"liquidatable": len(todo), "sent": len(todo), "batch_size": size, "failed_txs": failed,
                "seconds": time.monotonic() - started}  # fmt: skip


def _wait_next_block(w: World, block: int) -> None:
    deadline = time.monotonic() + 10 * BLOCK_TIME
    while w.w3.eth.block_number <= block and time.monotonic() < deadline:
        time.sleep(0.05)


def _replay_failure(w: World, tx: Any, block: int, gas_used: int) -> str:
    """A failed transaction replayed on its block's parent state (an approximation of its position)."""
    call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
    try:
        w.w3.eth.call(call, block - 1)  # type: ignore[arg-type]
    except Exception as exc:
        decoded = w.bw.errors.from_exception(exc)
        return f"block {block}, gas used {gas_used:,} of {tx['gas']:,}: {decoded or exc}"
    return f"block {block}, gas used {gas_used:,} of {tx['gas']:,}: passes on the parent state"


def _figures(w: World, accounts: Sequence[str], senders: set[str], u_block: int,
             liquidatable_at_update: int) -> dict[str, Any]:  # fmt: skip
    """Every transaction the keeper got mined after the update, found by scanning the blocks."""
    from web3.logs import DISCARD

    liquidated = skipped = txs = failed = gas_limits = 0
    reasons: list[str] = []
    blocks_with_liquidations: set[int] = set()
    gas_total = 0
    gas_by_block: dict[int, int] = {}
    for number in range(u_block + 1, w.w3.eth.block_number + 1):
        block = w.w3.eth.get_block(number, full_transactions=True)
        gas_by_block[number] = int(block["gasUsed"])
        for tx in block["transactions"]:
            if tx["from"] not in senders:  # type: ignore[index]
                continue
            r = w.w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index]
            txs += 1
            gas_limits += int(tx["gas"])  # type: ignore[index]
            if r["status"] != 1:
                failed += 1
                reasons.append(_replay_failure(w, tx, number, int(r["gasUsed"])))
            events = w.bw.ch.events.Liquidated().process_receipt(r, errors=DISCARD)
            skipped += len(w.bw.ch.events.LiquidationSkipped().process_receipt(r, errors=DISCARD))
            if events:
                liquidated += len(events)
                blocks_with_liquidations.add(number)
            gas_total += int(r["gasUsed"])
    if not blocks_with_liquidations:
        raise BenchError("the keeper liquidated nothing")
    last = max(blocks_with_liquidations)
    ts_u = int(w.w3.eth.get_block(u_block)["timestamp"])
    ts_last = int(w.w3.eth.get_block(last)["timestamp"])
    floor = math.ceil(gas_total / GAS_LIMIT)
    blocks = last - u_block
    return {
        "accounts": len(accounts),
        "liquidatable_at_update": liquidatable_at_update,
        "liquidations_mined": liquidated,
        "entries_skipped": skipped,
        "left_liquidatable": _liquidatable(w, accounts),
        "transactions": txs,
        "transactions_failed": failed,
        "failures": reasons,
        "liquidation_gas_total": gas_total,
        "gas_limit_total": gas_limits,
        "gas_used_over_limit": round(gas_total / max(gas_limits, 1), 3),
        "gas_per_liquidation": gas_total // max(liquidated, 1),
        "update_block": u_block,
        "last_liquidation_block": last,
        "blocks": blocks,
        "blocks_floor": floor,
        "blocks_target": floor + 1,
        "met": blocks <= floor + 1,
        "chain_seconds": ts_last - ts_u,
        "gas_used_per_block": {str(k): v for k, v in gas_by_block.items() if k <= last},
    }


def run(runs: int = 1, accounts: int = ACCOUNTS, kinds: Sequence[str] = KINDS) -> dict[str, Any]:
    """`runs` replays per keeper configuration from one setup (each replay reverts to a snapshot)."""
    logging.getLogger("keeper").setLevel(logging.WARNING)
    started = time.monotonic()
    with world(block_time=BLOCK_TIME, gas_limit=GAS_LIMIT) as w:
        traders = setup(w, accounts)
        setup_seconds = time.monotonic() - started
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        replay = 0
        for _ in range(runs):
            for kind in kinds:
                w.rpc("evm_setAutomine", True)
                snap = w.snapshot()
                results[kind].append(liquidate_after_drop(w, traders, kind, replay))
                replay += 1
                w.rpc("evm_setAutomine", True)
                w.rpc("anvil_dropAllTransactions")  # the pool outlives evm_revert
                w.revert(snap)
    summary = {k: _median_run(v) for k, v in results.items()}
    return {
        "runs": runs,
        "runs_note": "the default is one replay per driver, as each takes about a minute of setup "
        "and chain time; --e2e-runs N for more",
        "node": f"anvil --block-time {BLOCK_TIME} --gas-limit {GAS_LIMIT}",
        "price_drop": DROP,
        "setup_seconds": setup_seconds,
        "keeper": "bulwark.keeper.daemon.Keeper(bw, signer, settings).run_once(), one pass per new block",
        "configs": summary,
        "all_runs": results,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: (r["blocks"], r["wall_seconds"]))
    return {**ordered[len(ordered) // 2], "blocks_runs": [r["blocks"] for r in runs]}


def rows(result: dict[str, Any]) -> list[Row]:
    section = f"End to end: {ACCOUNTS:,} accounts, -20% update ({result['node']})"
    out = []
    for kind, r in result["configs"].items():
        value = (f"{r['blocks']} blocks, {r['chain_seconds']} s chain, {fmt_s(r['wall_seconds'])} wall; "
                 f"{r['liquidations_mined']} liquidated in {r['transactions']} txs")  # fmt: skip
        target = f"<= {r['blocks_target']} blocks (floor {r['blocks_floor']} + 1)"
        label = {"default": "keeper, default settings", "tuned": "keeper, larger batches",
                 "reference": "reference driver (bench, not the keeper)"}.get(kind, kind)  # fmt: skip
        out.append(Row(section, label, value, target, r["met"]))
    return out
