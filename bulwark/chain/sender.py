"""Sending the keeper's transactions: simulate, take a nonce, sign, send, replace, track.

Nothing is sent that did not pass a simulation first (pymaker: if gas estimation fails there is no point
in sending), and a nonce is taken only after it passed, so a lost race costs neither gas nor a nonce.
The nonce manager is seeded from the node's pending count and then counts locally. Fees are EIP-1559
behind the :class:`GasStrategy` interface; a transaction not mined after a few blocks (or seconds) is
replaced with the same nonce and fees raised by at least 12.5% (nodes refuse less), up to a cap.
Each sent transaction carries the keys of the work it does, (account, market) for liquidations, which
stay *in flight* until it is mined or dropped, so the same liquidation is never sent twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from bulwark.chain.contracts import Bulwark, DecodedError
from bulwark.core.logs import get_logger, kv
from bulwark.core.units import format_units
from bulwark.keeper.index import BlockRef, RpcFailure, get_block, rpc, rpc_batch
from bulwark.keeper.metrics import KeeperMetrics

log = get_logger("sender")
BPS = 10_000
DROP_GRACE_SECONDS = 2.0


# ---------------------------------------------------------------------------- fees


@dataclass(frozen=True)
class Fees:
    max_fee: int  # wei per gas
    priority_fee: int

    def bumped_enough(self, previous: Fees, min_bps: int = 1_250) -> bool:
        return self.max_fee * BPS >= previous.max_fee * (
            BPS + min_bps
        ) and self.priority_fee * BPS >= previous.priority_fee * (BPS + min_bps)


class GasStrategy(Protocol):
    """Chooses the fees of a first send and of each replacement."""

    def initial(self, base_fee: int) -> Fees: ...

    def bump(self, previous: Fees, base_fee: int) -> Fees | None:
        """Fees for a replacement, each at least 12.5% above `previous`; None when capped."""
        ...


@dataclass(frozen=True)
class Eip1559Strategy:
    """max fee = base fee x multiple + tip; replacements raise both by `bump_bps`, up to `max_fee_cap`."""

    priority_fee: int = 10**9
    base_fee_multiple: int = 2
    max_fee_cap: int = 500 * 10**9
    bump_bps: int = 1_500

    def initial(self, base_fee: int) -> Fees:
        tip = min(self.priority_fee, self.max_fee_cap)
        return Fees(min(base_fee * self.base_fee_multiple + tip, self.max_fee_cap), tip)

    def bump(self, previous: Fees, base_fee: int) -> Fees | None:
        tip = _raise(previous.priority_fee, self.bump_bps)
        max_fee = max(
            _raise(previous.max_fee, self.bump_bps), base_fee * self.base_fee_multiple + tip
        )
        max_fee = min(max_fee, self.max_fee_cap)
        tip = min(tip, max_fee)
        fees = Fees(max_fee, tip)
        return fees if fees.bumped_enough(previous) else None


def _gwei(wei: int) -> str:
    """A fee per gas in gwei, exact (log lines speak human units)."""
    return format_units(wei, 9)


def _raise(value: int, bps: int) -> int:
    """value x (1 + bps), rounded up, and at least value + 1 (a zero tip still grows)."""
    return max(-(-value * (BPS + bps) // BPS), value + 1)


# ---------------------------------------------------------------------------- nonces


class NonceManager:
    """Hands out nonces locally, seeded from the node's pending transaction count."""

    def __init__(self, bw: Bulwark, address: str) -> None:
        self.bw = bw
        self.address = address
        self._next: int | None = None
        self._lock = threading.Lock()

    def reserve(self, reseed: bool = False) -> int:
        """The next nonce; `reseed` (or no count yet) asks the node for its pending count first."""
        with self._lock:
            if self._next is None or reseed:
                count = rpc(self.bw.w3, "eth_getTransactionCount", [self.address, "pending"])
                self._next = int(count, 16)
            nonce = self._next
            self._next += 1
            return nonce

    def release(self, nonce: int) -> None:
        """Gives back a nonce whose transaction never reached the node."""
        with self._lock:
            if self._next is not None and nonce == self._next - 1:
                self._next = nonce

    def reset(self) -> None:
        """Forget the local count: the next reserve asks the node again."""
        with self._lock:
            self._next = None


# ---------------------------------------------------------------------------- transactions


@dataclass(frozen=True)
class Call:
    """A contract call already encoded (by :class:`bulwark.keeper.index.Calls`): target and calldata."""

    to: str
    data: str


def as_call(fn: Any) -> Call:
    """A :class:`Call` from a web3 contract function (or a Call, unchanged)."""
    if isinstance(fn, Call):
        return fn
    return Call(str(fn.address), str(fn._encode_transaction_data()))


@dataclass
class PendingTx:
    action: str
    nonce: int
    tx: dict[str, Any]  # the last signed version (without signature)
    fees: Fees
    keys: frozenset[Hashable]
    hashes: list[str] = field(default_factory=list)
    raw: bytes = b""
    sent_at: float = 0.0
    sent_block: int = 0
    last_sent_at: float = 0.0
    last_sent_block: int = 0
    replacements: int = 0
    suspect_since: float | None = None  # first seen mined-by-another or unknown to the node


@dataclass
class SendOutcome:
    """What became of one sent transaction."""

    pending: PendingTx
    receipt: TxReceipt | None = None  # None: still pending at the timeout, or dropped
    dropped: bool = False
    error: DecodedError | None = None  # decoded revert of a mined, failed transaction

    @property
    def ok(self) -> bool:
        return self.receipt is not None and self.receipt["status"] == 1


class Simulation(Exception):
    """A simulation reverted: nothing was sent and no nonce was taken."""

    def __init__(self, action: str, error: DecodedError) -> None:
        super().__init__(f"{action} simulation reverted: {error}")
        self.action = action
        self.error = error


_NONCE_ERRORS = ("nonce too low", "already known", "nonce too high", "invalid nonce")
_INVALID_PARAMS = -32602


def _price_time(reply: str | DecodedError) -> int | None:
    """The ``updatedAt`` of an ``OracleStalePrice`` whose price is newer than the time simulated."""
    if isinstance(reply, DecodedError) and reply.name == "OracleStalePrice":
        updated = reply.args.get("updatedAt")
        return int(updated) if isinstance(updated, int) else None
    return None


def is_oracle_refusal(error: DecodedError) -> bool:
    """The simulation reverted in the oracle (a stale, invalid or deviating price): nothing to do
    with a lost race, and nothing a send could change."""
    return error.name.startswith("Oracle")


def _refused_params(reply: Any) -> bool:
    return isinstance(reply, RpcFailure) and reply.code == _INVALID_PARAMS and not reply.data


class TxSender:
    """One signer's transactions: simulation, nonces, fees, replacements and the in-flight set."""

    def __init__(
        self,
        bw: Bulwark,
        signer: LocalAccount,
        gas: GasStrategy,
        *,
        metrics: KeeperMetrics | None = None,
        replace_after_blocks: int = 3,
        replace_after_seconds: float = 30.0,
        gas_margin_bps: int = 5_000,
        poll_interval: float = 0.25,
        drop_grace: float = DROP_GRACE_SECONDS,
    ) -> None:
        self.bw = bw
        self.signer = signer
        self.gas = gas
        self.metrics = metrics
        self.nonces = NonceManager(bw, signer.address)
        self.replace_after_blocks = replace_after_blocks
        self.replace_after_seconds = replace_after_seconds
        self.gas_margin_bps = gas_margin_bps
        self.poll_interval = poll_interval
        self.drop_grace = drop_grace
        self.pending: dict[int, PendingTx] = {}  # nonce -> transaction
        self._block_overrides = True  # the node takes eth_call's block overrides (until refused)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ in flight

    def in_flight(self) -> set[Hashable]:
        with self._lock:
            return {k for p in self.pending.values() for k in p.keys}

    # ------------------------------------------------------------------ simulation

    def estimate(self, fn: Any, action: str) -> int:
        """Simulates with eth_estimateGas from the signer; a revert raises :class:`Simulation`."""
        if isinstance(fn, Call):
            (outcome,) = self.estimate_many([fn])
            if isinstance(outcome, DecodedError):
                raise Simulation(action, outcome)
            return outcome
        try:
            return int(fn.estimate_gas({"from": self.signer.address}))
        except Exception as exc:
            decoded = self.bw.errors.from_exception(exc)
            if decoded is None:
                raise
            raise Simulation(action, decoded) from None

    def estimate_many(self, calls: Sequence[Any]) -> list[int | DecodedError]:
        """eth_estimateGas of many calls, independently, in one batch: gas, or the decoded revert."""
        replies = self._simulate("eth_estimateGas", calls, None, None)
        return [r if isinstance(r, DecodedError) else int(r, 16) for r in replies]

    def call_many(
        self,
        calls: Sequence[Any],
        gas: Sequence[int] | None = None,
        after: BlockRef | None = None,
    ) -> list[str | DecodedError]:
        """eth_call of many calls (each with its gas limit, if given) in one batch: the raw answer,
        or the decoded revert. One execution each, where eth_estimateGas runs a search of many.

        They run on the pending state (our own transactions and any price update in the pool
        included) and, given the head `after`, in the block a transaction sent now can be mined
        in (:meth:`mining_block`): work that depends on time passing (funding accrues, a
        settlement writes) costs gas that a call in the head's own second would not see, and a
        price update waiting in the pending block carries that block's time."""
        return self._simulate("eth_call", calls, gas, after)

    def mining_block(self, head: BlockRef) -> tuple[int, int]:
        """Number and timestamp of the block a transaction sent now can be mined in: the node's
        pending block as it reports it (an interval-mined node stamps it with the time of the
        next block), never before one second past `head`."""
        number, stamp = head.number + 1, head.timestamp + 1
        pending = rpc(self.bw.w3, "eth_getBlockByNumber", ["pending", False])
        if isinstance(pending, dict):
            if isinstance(pending.get("number"), str):
                number = max(number, int(pending["number"], 16))
            if isinstance(pending.get("timestamp"), str):
                stamp = max(stamp, int(pending["timestamp"], 16))
        return number, stamp

    def _simulate(
        self,
        method: str,
        calls: Sequence[Any],
        gas: Sequence[int] | None,
        after: BlockRef | None,
        at: tuple[int, int] | None = None,
    ) -> list[str | DecodedError]:
        overrides = self._block_overrides and after is not None and method == "eth_call"
        if overrides and after is not None and at is None:
            at = self.mining_block(after)
        reqs: list[tuple[str, list[Any]]] = []
        for n, fn in enumerate(calls):
            call = as_call(fn)
            tx: dict[str, Any] = {"from": self.signer.address, "to": call.to, "data": call.data}
            if gas is not None:
                tx["gas"] = hex(gas[n])
            params: list[Any] = [tx, "pending"]
            if overrides and at is not None:
                params += [{}, {"number": hex(at[0]), "time": hex(at[1])}]
            reqs.append((method, params))
        replies = rpc_batch(self.bw.w3, reqs)
        if overrides and replies and all(_refused_params(r) for r in replies):
            log.warning("the node refuses block overrides in eth_call; simulating without them")
            self._block_overrides = False
            return self._simulate(method, calls, gas, None)
        out: list[str | DecodedError] = []
        for reply in replies:
            if isinstance(reply, RpcFailure):
                out.append(
                    self.bw.errors.decode(reply.data)
                    if reply.data
                    else DecodedError("Error", {"message": reply.message})
                )
            else:
                out.append(str(reply))
        newer = [_price_time(r) for r in out]
        if overrides and at is not None and any(t is not None and t > at[1] for t in newer):
            # The pending state holds a price published after the time simulated (the pending
            # block's clock moved on between the two requests): once more, at that time.
            later = max(t for t in newer if t is not None)
            again = [n for n, t in enumerate(newer) if t is not None and t > at[1]]
            redo = self._simulate(
                method,
                [calls[n] for n in again],
                [gas[n] for n in again] if gas is not None else None,
                after,
                (at[0], later),
            )
            for n, reply in zip(again, redo, strict=True):
                out[n] = reply
        return out

    def with_margin(self, gas: int) -> int:
        return gas * (BPS + self.gas_margin_bps) // BPS + 50_000

    # ------------------------------------------------------------------ sending

    def send(
        self,
        fn: Any,
        *,
        action: str,
        gas: int | None = None,
        keys: Iterable[Hashable] = (),
        head: BlockRef | None = None,
    ) -> PendingTx:
        """Simulates (unless `gas` is given, i.e. the caller simulated), takes a nonce and sends."""
        if gas is None:
            gas = self.with_margin(self.estimate(fn, action))
        head = head or get_block(self.bw.w3)
        fees = self.gas.initial(head.base_fee)
        call = as_call(fn)
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.bw.deployment.chain_id,
            "to": call.to,
            "data": call.data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": fees.max_fee,
            "maxPriorityFeePerGas": fees.priority_fee,
        }
        for attempt in range(2):
            # With nothing in flight the node's pending count is the truth: a reorg may have undone
            # a mined transaction of ours, or another process may have used nonces of this key.
            with self._lock:
                idle = not self.pending
            nonce = self.nonces.reserve(reseed=idle)
            tx["nonce"] = nonce
            try:
                raw, tx_hash = self._broadcast(tx)
            except Exception as exc:
                self.nonces.release(nonce)
                if attempt == 0 and any(e in str(exc).lower() for e in _NONCE_ERRORS):
                    log.warning(
                        "nonce out of step; reseeding from the node",
                        extra=kv(nonce=nonce, error=str(exc)),
                    )
                    self.nonces.reset()
                    continue
                raise
            now = time.monotonic()
            pending = PendingTx(
                action,
                nonce,
                dict(tx),
                fees,
                frozenset(keys),
                [tx_hash],
                raw,
                now,
                head.number,
                now,
                head.number,
            )
            with self._lock:
                self.pending[nonce] = pending
            self._count(action, "sent")
            log.info(
                "sent",
                extra=kv(
                    action=action,
                    tx=tx_hash,
                    nonce=nonce,
                    gas=gas,
                    max_fee_gwei=_gwei(fees.max_fee),
                    tip_gwei=_gwei(fees.priority_fee),
                ),
            )
            return pending
        raise AssertionError("unreachable")

    def _broadcast(self, tx: dict[str, Any]) -> tuple[bytes, str]:
        signed = self.signer.sign_transaction(tx)
        raw = bytes(signed.raw_transaction)
        tx_hash = self.bw.w3.eth.send_raw_transaction(raw)
        return raw, "0x" + bytes(tx_hash).hex()

    def rewound(self) -> None:
        """The chain was reorganised under us: mined transactions of ours may be gone, so the next
        nonce comes from the node's pending count again."""
        self.nonces.reset()

    # ------------------------------------------------------------------ waiting and replacing

    def wait(
        self, pending: PendingTx, timeout: float, stop: Callable[[], bool] | None = None
    ) -> SendOutcome:
        """Waits for `pending` (replacing it when it lingers) until mined, dropped, or `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            outcome = self.check(pending)
            if outcome is not None:
                return outcome
            if time.monotonic() >= deadline:
                log.warning(
                    "still pending after the timeout; tracking it as in flight",
                    extra=kv(action=pending.action, nonce=pending.nonce, tx=pending.hashes[-1]),
                )
                return SendOutcome(pending)
            time.sleep(self.poll_interval)

    def wait_all(self, pendings: Sequence[PendingTx], timeout: float) -> list[SendOutcome]:
        """Waits for every one of `pendings` (sent back to back) against one deadline; the outcomes
        in the same order (those still pending at the deadline stay tracked as in flight)."""
        deadline = time.monotonic() + timeout
        done: dict[int, SendOutcome] = {}
        waiting = list(pendings)
        while waiting:
            waiting = [p for p in waiting if not self._settle(p, done)]
            if not waiting:
                break
            if time.monotonic() >= deadline:
                for p in waiting:
                    log.warning(
                        "still pending after the timeout; tracking it as in flight",
                        extra=kv(action=p.action, nonce=p.nonce, tx=p.hashes[-1]),
                    )
                    done[id(p)] = SendOutcome(p)
                break
            time.sleep(self.poll_interval)
        return [done[id(p)] for p in pendings]

    def _settle(self, pending: PendingTx, done: dict[int, SendOutcome]) -> bool:
        outcome = self.check(pending)
        if outcome is not None:
            done[id(pending)] = outcome
        return outcome is not None

    def poll(self) -> list[SendOutcome]:
        """Checks every transaction in flight (replacing lingering ones); returns those that finished."""
        with self._lock:
            pendings = list(self.pending.values())
        done = []
        for p in pendings:
            outcome = self.check(p)
            if outcome is not None:
                done.append(outcome)
        return done

    def check(self, pending: PendingTx) -> SendOutcome | None:
        """One look at a transaction: mined, dropped, replaced if due, or still waiting (None)."""
        w3 = self.bw.w3
        # The count first: a nonce used before the receipts were looked up, with no receipt of ours,
        # was used by someone else.
        reqs: list[tuple[str, list[Any]]] = [
            ("eth_getTransactionCount", [self.signer.address, "latest"]),
            ("eth_getBlockByNumber", ["latest", False]),
        ]
        reqs += [("eth_getTransactionReceipt", [h]) for h in pending.hashes]
        replies = rpc_batch(w3, reqs)
        receipts = [r for r in replies[2:] if isinstance(r, dict) and r]
        if receipts:
            receipt = w3.eth.get_transaction_receipt(receipts[0]["transactionHash"])
            return self._finish(pending, receipt)
        mined_nonce = int(replies[0], 16) if isinstance(replies[0], str) else 0
        head = BlockRef.from_rpc(replies[1])
        if mined_nonce > pending.nonce:
            # The nonce was used by a transaction that is not ours (another process with this key).
            suspect = "nonce used by another transaction"
        elif not self._known(pending):
            suspect = "the node no longer knows the transaction"
        else:
            pending.suspect_since = None
            self._maybe_replace(pending, head)
            return None
        # A node can be caught between taking a transaction out of its pool and storing the
        # receipt: only a condition that lasts is believed.
        now = time.monotonic()
        if pending.suspect_since is None:
            pending.suspect_since = now
        if now - pending.suspect_since < self.drop_grace:
            return None
        return self._drop(pending, suspect)

    def _known(self, pending: PendingTx) -> bool:
        replies = rpc_batch(self.bw.w3, [("eth_getTransactionByHash", [h]) for h in pending.hashes])
        return any(isinstance(r, dict) and r for r in replies)

    def _maybe_replace(self, pending: PendingTx, head: BlockRef) -> None:
        blocks = head.number - pending.last_sent_block
        seconds = time.monotonic() - pending.last_sent_at
        if blocks < self.replace_after_blocks and seconds < self.replace_after_seconds:
            return
        fees = self.gas.bump(pending.fees, head.base_fee)
        if fees is None:
            pending.last_sent_at, pending.last_sent_block = time.monotonic(), head.number
            log.warning(
                "fee cap reached; waiting",
                extra=kv(
                    action=pending.action,
                    nonce=pending.nonce,
                    max_fee_gwei=_gwei(pending.fees.max_fee),
                ),
            )
            return
        tx = dict(pending.tx, maxFeePerGas=fees.max_fee, maxPriorityFeePerGas=fees.priority_fee)
        try:
            raw, tx_hash = self._broadcast(tx)
        except Exception as exc:  # the node refused it: keep waiting, retry later
            log.warning(
                "replacement refused",
                extra=kv(action=pending.action, nonce=pending.nonce, error=str(exc)[:200]),
            )
            pending.last_sent_at, pending.last_sent_block = time.monotonic(), head.number
            return
        with self._lock:
            pending.tx, pending.fees, pending.raw = tx, fees, raw
            pending.hashes.append(tx_hash)
            pending.replacements += 1
            pending.last_sent_at, pending.last_sent_block = time.monotonic(), head.number
        if self.metrics:
            self.metrics.replacements.inc()
        log.info(
            "replaced with higher fees",
            extra=kv(
                action=pending.action,
                nonce=pending.nonce,
                tx=tx_hash,
                max_fee_gwei=_gwei(fees.max_fee),
                tip_gwei=_gwei(fees.priority_fee),
                replacement=pending.replacements,
            ),
        )

    def _finish(self, pending: PendingTx, receipt: TxReceipt) -> SendOutcome:
        with self._lock:
            self.pending.pop(pending.nonce, None)
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        if receipt["status"] == 1:
            self._count(pending.action, "mined")
            log.info(
                "mined",
                extra=kv(
                    action=pending.action,
                    tx=tx_hash,
                    block=receipt["blockNumber"],
                    gas_used=receipt["gasUsed"],
                ),
            )
            return SendOutcome(pending, receipt)
        error = self.bw.replay_revert(
            {**pending.tx, "from": self.signer.address}, receipt["blockNumber"]
        )
        self._count(pending.action, "failed")
        log.error(
            "transaction failed",
            extra=kv(
                action=pending.action, tx=tx_hash, block=receipt["blockNumber"], error=str(error)
            ),
        )
        return SendOutcome(pending, receipt, error=error)

    def _drop(self, pending: PendingTx, reason: str) -> SendOutcome:
        with self._lock:
            self.pending.pop(pending.nonce, None)
        self.nonces.reset()
        self._count(pending.action, "dropped")
        log.warning("dropped", extra=kv(action=pending.action, nonce=pending.nonce, reason=reason))
        return SendOutcome(pending, dropped=True)

    def _count(self, action: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.txs.labels(action=action, outcome=outcome).inc()
            self.metrics.in_flight.set(len(self.pending))
