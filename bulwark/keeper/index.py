"""The keeper's account index: who has an account, and each one's margin and positions.

Events say *who* changed and *when*; the chain says *what* the state is. Every clearing-house event
that names an ``account`` (or a ``keeper``, which is paid its reward as margin) marks that address
dirty; at the end of each sync the dirty accounts' margin and positions are read in JSON-RPC batches
(``marginOf`` and ``positionOf`` per market) pinned to the block the sync reached. Margins are not
rebuilt from events: funding settlements, fee shares, rewards and haircuts all move margin, and one
missed rule would poison the index silently, whereas a read is exact by construction and costs one
batched round trip per block that touched accounts.

The checkpoint file holds the block number and hash the index reached, the hashes of recent sync
points and the tracked addresses. A restart verifies the hash and scans logs from the next block, so
no account is missed; a hash that no longer matches (a reorg, or a node that restarted on an older
state) rewinds to the newest sync point still on the chain, or to the deployment block, rescans from
there and re-reads every account. Accounts are never forgotten: an address whose events were undone
simply reads as flat.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bulwark.chain.contracts import Bulwark
from bulwark.chain.rpc import (
    BlockRef as BlockRef,
)
from bulwark.chain.rpc import (
    CallFailed as CallFailed,
)
from bulwark.chain.rpc import (
    Calls as Calls,
)
from bulwark.chain.rpc import (
    NodeError as NodeError,
)
from bulwark.chain.rpc import (  # the JSON-RPC layer; importable from here as before
    RpcFailure as RpcFailure,
)
from bulwark.chain.rpc import (
    abi_type as abi_type,
)
from bulwark.chain.rpc import (
    call_data as call_data,
)
from bulwark.chain.rpc import (
    eth_call as eth_call,
)
from bulwark.chain.rpc import (
    get_block as get_block,
)
from bulwark.chain.rpc import (
    result_error as result_error,
)
from bulwark.chain.rpc import (
    rpc as rpc,
)
from bulwark.chain.rpc import (
    rpc_batch as rpc_batch,
)
from bulwark.core import riskmath as rm
from bulwark.core.logs import get_logger, kv

CHECKPOINT_VERSION = 1
_WAD = 10**18
RECENT_SYNC_POINTS = 128
_ACCOUNT_ARGS = ("account", "keeper")
# Access-control events also name an `account` (the role holder): no margin moves there.
_NOT_ACCOUNT_EVENTS = ("Role", "DefaultAdmin")
_MARKET_EVENTS = frozenset({"MarketListed", "MarketConfigured", "RiskParamsUpdated"})
# Chainlink's aggregator event
ANSWER_UPDATED = keccak(text="AnswerUpdated(int256,uint256,uint256)")

log = get_logger("index")


# ---------------------------------------------------------------------------- accounts


@dataclass
class AccountState:
    """Margin and open positions (market id -> position) of one account at the index's block."""

    margin: int = 0
    positions: dict[int, rm.Position] = field(default_factory=dict)

    @property
    def flat(self) -> bool:
        return not self.positions


class ScreenArrays:
    """Float64 copies (quote units) of every tracked account's state, kept resident for the screen.

    One row per account, one column per market: ``size`` and ``abs_size`` per (row, market), and
    per row ``base = margin - sum(open notional) + sum(funding basis)``, the part of equity that no
    price or funding index moves. Then, for prices p and funding indices x,

        equity = base + size @ (p - x)        maintenance = abs_size @ (p x mmRatio)

    one vectorised pass with no Python loop. Rows are written when an account is re-read from the
    chain (:meth:`update`), never rebuilt per tick; they are never removed (addresses are never
    forgotten; a flat account's row is zero and holds nothing)."""

    def __init__(self, markets: int = 0, capacity: int = 1_024) -> None:
        self.rows: dict[str, int] = {}
        self.addresses: list[str] = []
        self.markets = markets
        self.base = np.zeros(capacity)
        self.size = np.zeros((capacity, markets))
        self.abs_size = np.zeros((capacity, markets))
        self.holds = np.zeros(capacity, dtype=bool)  # the account has a position somewhere
        self.names = np.empty(capacity, dtype=object)  # the address of each row, for fancy indexing

    @classmethod
    def from_states(cls, states: Mapping[str, AccountState]) -> ScreenArrays:
        arrays = cls(capacity=max(1_024, len(states)))
        arrays.update(states)
        return arrays

    @property
    def count(self) -> int:
        return len(self.addresses)

    def nbytes(self) -> int:
        arrays = (self.base, self.size, self.abs_size, self.holds, self.names)
        return sum(int(a.nbytes) for a in arrays)

    def accounts_at(self, rows: np.ndarray) -> list[str]:
        """The addresses of `rows` (one fancy index over the resident names, no loop)."""
        names: list[str] = self.names[rows].tolist()
        return names

    def update(self, states: Mapping[str, AccountState]) -> None:
        """Writes the rows of `states` (new accounts get a row; their markets a column)."""
        if not states:
            return
        width = 1 + max((m for st in states.values() for m in st.positions), default=-1)
        self._reserve(self.count + len(states), max(width, self.markets))
        rows = np.fromiter((self._row(a) for a in states), dtype=np.intp, count=len(states))
        cells: list[int] = []
        sizes: list[float] = []
        base: list[float] = []
        for k, st in enumerate(states.values()):
            fixed = st.margin
            for m, p in st.positions.items():
                cells.append(int(rows[k]) * self.markets + m)
                sizes.append(p.size / _WAD)  # int / int: the nearest float, exactly rounded
                fixed += p.funding_basis - p.open_notional
            base.append(fixed / _WAD)
        self.base[rows] = base
        self.size[rows] = 0.0
        flat_size = self.size.reshape(-1)
        flat_size[cells] = sizes
        self.abs_size[rows] = np.abs(self.size[rows])
        self.holds[rows] = (self.size[rows] != 0).any(axis=1)

    def _row(self, address: str) -> int:
        row = self.rows.get(address)
        if row is None:
            row = self.rows[address] = len(self.addresses)
            self.addresses.append(address)
            self.names[row] = address
        return row

    def _reserve(self, rows: int, markets: int) -> None:
        """Room for `rows` rows and `markets` columns (capacity doubles, so growth is amortised)."""
        capacity = self.base.shape[0]
        if rows <= capacity and markets <= self.markets:
            return
        new_capacity = max(capacity, 1)
        while new_capacity < rows:
            new_capacity *= 2
        n = self.count
        old = (self.base, self.size, self.abs_size, self.holds, self.names)
        self.base = np.zeros(new_capacity)
        self.size = np.zeros((new_capacity, markets))
        self.abs_size = np.zeros((new_capacity, markets))
        self.holds = np.zeros(new_capacity, dtype=bool)
        self.names = np.empty(new_capacity, dtype=object)
        self.base[:n] = old[0][:n]
        self.size[:n, : self.markets] = old[1][:n]
        self.abs_size[:n, : self.markets] = old[2][:n]
        self.holds[:n] = old[3][:n]
        self.names[:n] = old[4][:n]
        self.markets = markets


@dataclass
class SyncReport:
    from_block: int
    to_block: int
    logs: int = 0
    new_accounts: int = 0
    refreshed: int = 0
    rewound_to: int | None = None
    markets_changed: bool = False
    price_updates: list[PriceUpdate] = field(default_factory=list)


@dataclass(frozen=True)
class PriceUpdate:
    """An ``AnswerUpdated`` of a market's feed (the feed's own decimals)."""

    market: str
    answer: int
    block: int


class AccountIndex:
    """Every account that ever held margin in the clearing house, with its state at ``self.block``."""

    def __init__(
        self,
        bw: Bulwark,
        checkpoint_file: str | os.PathLike[str] | None = None,
        *,
        log_chunk_blocks: int = 2_000,
        rpc_batch_size: int = 300,
        checkpoint_interval: float = 10.0,
    ) -> None:
        self.bw = bw
        self.path = Path(checkpoint_file) if checkpoint_file else None
        self.log_chunk_blocks = log_chunk_blocks
        self.rpc_batch_size = rpc_batch_size
        self.checkpoint_interval = checkpoint_interval
        self.accounts: dict[str, AccountState] = {}
        self.arrays = ScreenArrays()  # float copies of `accounts` for the screen, row per account
        self.block: int | None = None  # last block fully processed
        self.block_hash: str | None = None
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_SYNC_POINTS)
        self.resumed_from: int | None = None
        self._dirty: set[str] = set()
        self._saved_at = 0.0
        self._unsaved_accounts = False
        self.calls = Calls(bw.ch)
        self.market_count = 0
        self.protected: set[str] = set()  # the pool and the fund: never liquidated, never tracked
        self.feed_decimals: dict[str, int] = {}  # market name -> its feed's decimals
        self._prepared = False
        # called when the last processed block's hash is gone, before rewinding: may raise to say
        # the chain itself was replaced (a reset), which no rewind can follow
        self.on_mismatch: Callable[[], None] | None = None
        self.genesis: str | None = None  # the chain's block 0 hash, when the owner read it
        self._topics = self._event_topics()
        self._feeds = {
            to_checksum_address(m.feed): name for name, m in bw.deployment.markets.items()
        }

    def prepare(self) -> None:
        """Reads the market count and the protected accounts (once; the node must answer)."""
        if self._prepared:
            return
        ch = self.bw.ch.functions
        self.market_count = int(ch.marketCount().call())
        self.protected = {
            to_checksum_address(ch.pool().call()),
            to_checksum_address(ch.fund().call()),
        }
        oracle = self.bw.oracle.functions
        for name, market in self.bw.deployment.markets.items():
            config = oracle.feedConfig(market.id).call()
            self.feed_decimals[name] = int(config[2])  # primaryDecimals
        self._prepared = True

    # ------------------------------------------------------------------ events

    def _event_topics(self) -> dict[bytes, tuple[str, list[int]]]:
        """topic0 -> (event name, positions among the topics of the account/keeper arguments)."""
        out: dict[bytes, tuple[str, list[int]]] = {}
        abi: list[Any] = list(self.bw.ch.abi)
        for item in abi:
            if item.get("type") != "event":
                continue
            indexed = [i for i in item["inputs"] if i.get("indexed")]
            spots = [
                n + 1
                for n, i in enumerate(indexed)
                if i["name"] in _ACCOUNT_ARGS and i["type"] == "address"
            ]
            if str(item["name"]).startswith(_NOT_ACCOUNT_EVENTS):
                spots = []
            out[bytes(event_abi_to_log_topic(item))] = (item["name"], spots)
        return out

    def _apply(self, entry: Any) -> bool:
        """Marks the accounts a log names; True if it changed market configuration."""
        topics = entry["topics"]
        if not topics:
            return False
        known = self._topics.get(bytes(topics[0]))
        if known is None:
            return False
        name, spots = known
        for spot in spots:
            if spot < len(topics):
                self.mark(to_checksum_address(bytes(topics[spot])[-20:]))
        return name in _MARKET_EVENTS

    def _price_update(self, market: str, entry: Any, report: SyncReport) -> None:
        topics = entry["topics"]
        if len(topics) > 1 and bytes(topics[0]) == ANSWER_UPDATED:
            answer = int.from_bytes(bytes(topics[1]), "big", signed=True)
            report.price_updates.append(PriceUpdate(market, answer, int(entry["blockNumber"])))

    def mark(self, address: str) -> None:
        """Adds an address (if new) and schedules a re-read of its state."""
        address = to_checksum_address(address)
        if address in self.protected:
            return
        if address not in self.accounts:
            self.accounts[address] = AccountState()
            self._unsaved_accounts = True
        self._dirty.add(address)

    # ------------------------------------------------------------------ sync

    @property
    def start_block(self) -> int:
        return self.bw.deployment.deploy_block

    def sync(self, head: BlockRef) -> SyncReport:
        """Brings the index to ``head``: reorg check, logs since the last block, dirty accounts read."""
        self.prepare()
        rewound = self._check_reorg()
        start = self.start_block if self.block is None else self.block + 1
        report = SyncReport(start, head.number, rewound_to=rewound)
        before = len(self.accounts)
        w3 = self.bw.w3
        for lo in range(start, head.number + 1, self.log_chunk_blocks):
            hi = min(lo + self.log_chunk_blocks - 1, head.number)
            addresses = [self.bw.ch.address, *self._feeds]
            entries = w3.eth.get_logs({"address": addresses, "fromBlock": lo, "toBlock": hi})
            for entry in entries:
                feed = self._feeds.get(to_checksum_address(entry["address"]))
                if feed is not None:
                    self._price_update(feed, entry, report)
                else:
                    report.markets_changed |= self._apply(entry)
            report.logs += len(entries)
        if report.markets_changed:
            self.market_count = int(
                self.calls.decode(
                    "marketCount",
                    rpc_batch(w3, [self.calls.request("marketCount", [], head.number)])[0],
                )
            )
            self._dirty |= set(self.accounts)
        report.new_accounts = len(self.accounts) - before
        report.refreshed = self.refresh(self._dirty, head.number)
        self._dirty.clear()
        self.block, self.block_hash = head.number, head.hash
        if not self.recent or self.recent[-1][0] != head.number:
            self.recent.append((head.number, head.hash))
        self.maybe_save()
        return report

    def _check_reorg(self) -> int | None:
        """If the last processed block is no longer on the chain, rewinds; returns the new last block."""
        if self.block is None or self.block_hash is None:
            return None
        if self._hash_of(self.block) == self.block_hash:
            return None
        if self.on_mismatch is not None:
            self.on_mismatch()
        fork = self._fork_point()
        log.warning(
            "reorg: rewinding the index",
            extra=kv(
                checkpoint_block=self.block, resume_after=fork if fork is not None else "deployment"
            ),
        )
        while self.recent and (fork is None or self.recent[-1][0] > fork):
            self.recent.pop()
        if fork is None:
            self.block, self.block_hash = None, None
        else:
            self.block, self.block_hash = self.recent[-1]
        self._dirty |= set(self.accounts)
        return self.block if self.block is not None else self.start_block - 1

    def _hash_of(self, number: int) -> str | None:
        block = rpc(self.bw.w3, "eth_getBlockByNumber", [hex(number), False])
        return str(block["hash"]) if block else None

    def _fork_point(self) -> int | None:
        """The newest recorded sync point whose hash is still on the chain."""
        points = list(self.recent)
        if not points:
            return None
        replies = rpc_batch(
            self.bw.w3,
            [("eth_getBlockByNumber", [hex(n), False]) for n, _ in points],
            self.rpc_batch_size,
        )
        for (number, expected), block in zip(reversed(points), reversed(replies), strict=True):
            if isinstance(block, dict) and block.get("hash") == expected:
                return number
        return None

    def refresh(self, addresses: Iterable[str], block: int) -> int:
        """Reads margin and every market's position of `addresses` at `block`."""
        targets = sorted(addresses)
        if not targets:
            return 0
        m_count = self.market_count
        requests: list[tuple[str, list[Any]]] = []
        for a in targets:
            requests.append(self.calls.request("marginOf", [a], block))
            requests += [self.calls.request("positionOf", [a, m], block) for m in range(m_count)]
        replies = rpc_batch(self.bw.w3, requests, self.rpc_batch_size)
        width = 1 + m_count
        fresh: dict[str, AccountState] = {}
        for k, a in enumerate(targets):
            row = replies[k * width : (k + 1) * width]
            margin = int(self.calls.decode("marginOf", row[0]))
            positions: dict[int, rm.Position] = {}
            for m in range(m_count):
                p = rm.Position.from_tuple(self.calls.decode("positionOf", row[1 + m]))
                if p.size != 0:
                    positions[m] = p
            fresh[a] = AccountState(margin, positions)
        self.store(fresh)
        return len(targets)

    def store(self, states: Mapping[str, AccountState]) -> None:
        """Sets accounts' state: the exact integers and the screen's resident float rows alike."""
        self.accounts.update(states)
        self.arrays.update(states)

    def refresh_all(self, block: int) -> int:
        return self.refresh(list(self.accounts), block)

    # ------------------------------------------------------------------ checkpoint

    def _identity(self) -> dict[str, Any]:
        identity = {"chain_id": self.bw.deployment.chain_id, "clearing_house": self.bw.ch.address}
        return identity | ({"genesis": self.genesis} if self.genesis else {})

    def maybe_save(self, force: bool = False) -> bool:
        if self.path is None or self.block is None:
            return False
        due = time.monotonic() - self._saved_at >= self.checkpoint_interval
        if not (force or self._unsaved_accounts or due):
            return False
        self.save()
        return True

    def save(self) -> None:
        """Writes the checkpoint atomically (temporary file, then rename)."""
        if self.path is None or self.block is None:
            return
        data = {
            "version": CHECKPOINT_VERSION,
            **self._identity(),
            "block": self.block,
            "hash": self.block_hash,
            "recent": [list(p) for p in self.recent],
            "accounts": sorted(self.accounts),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.path)
        self._saved_at = time.monotonic()
        self._unsaved_accounts = False

    def load(self) -> bool:
        """Resumes from the checkpoint file if there is one for this deployment."""
        if self.path is None or not self.path.is_file():
            return False
        self.prepare()
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {data.get('version')}")
            if {k: data.get(k) for k in self._identity()} != self._identity():
                log.warning(
                    "checkpoint belongs to another deployment; starting afresh",
                    extra=kv(file=str(self.path)),
                )
                return False
            block, block_hash = int(data["block"]), str(data["hash"])
            recent = [(int(n), str(h)) for n, h in data.get("recent", [])]
            accounts = [to_checksum_address(a) for a in data["accounts"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "checkpoint unreadable; starting afresh",
                extra=kv(file=str(self.path), error=f"{type(exc).__name__}: {exc}"),
            )
            return False
        self.block, self.block_hash = block, block_hash
        self.recent = deque(recent or [(block, block_hash)], maxlen=RECENT_SYNC_POINTS)
        for a in accounts:
            self.mark(a)  # every account is re-read at the first sync
        self._unsaved_accounts = False
        self.resumed_from = block
        log.info("index resumed from checkpoint", extra=kv(block=block, accounts=len(accounts)))
        return True

    # ------------------------------------------------------------------ views

    def open_accounts(self) -> list[str]:
        return [a for a, s in self.accounts.items() if s.positions]
