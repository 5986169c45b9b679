"""Sending transactions: simulate, take a nonce, sign, send, replace, collect receipts.

One sender, in the three modes its users need:

- **send and wait** (:meth:`TxSender.transact`, behind :meth:`bulwark.chain.contracts.Bulwark.send`):
  the command line, the deployer and the tests; a revert raises the decoded custom error.
- **replace until mined** (:meth:`TxSender.send`, then :meth:`TxSender.wait`,
  :meth:`TxSender.wait_all` or :meth:`TxSender.poll`): the keeper.
- **pipelined** (:class:`Pipeline`): many signers, explicit gas, signed with local nonces and sent
  back to back without waiting, then every receipt collected at once (the stress run's setup, the
  benchmarks).

Nothing is sent that did not pass a simulation first (pymaker: if gas estimation fails there is no point
in sending), and a nonce is taken only after it passed, so a lost race costs neither gas nor a nonce;
the pipelined mode, whose callers give the gas, simulates nothing and reports every revert from its
receipt. Each signer's nonces come from one :class:`NonceManager`, seeded from the node's pending
count and then counted locally. Fees are EIP-1559 behind the :class:`GasStrategy` interface
(:class:`Eip1559Strategy`); a transaction not mined after a few blocks (or seconds) is replaced with
the same nonce and fees raised by at least 12.5% (nodes refuse less), up to a cap. The gas limit of
a simulated transaction is one rule, :func:`gas_limit`: the estimate x 1.5 + 100,000, at most the
block's gas limit (the transaction may land in a later block, where a new second takes costlier
paths, funding accrual writing storage; unused gas is not charged).
Each sent transaction carries the keys of the work it does, (account, market) for liquidations, which
stay *in flight* until it is mined or dropped, so the same liquidation is never sent twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3._utils.method_formatters import receipt_formatter
from web3.types import TxReceipt

from bulwark.chain.contracts import (
    BulwarkError,
    DecodedError,
    ErrorDecoder,
    TxReverted,
    gas_without_funds,
    node_error_line,
    replay_revert,
)
from bulwark.chain.rpc import BlockRef, RpcFailure, get_block, rpc, rpc_batch
from bulwark.core.logs import get_logger, kv
from bulwark.core.units import format_units

log = get_logger("sender")
_QUIET = logging.Logger("bulwark.sender.quiet", logging.CRITICAL + 1)  # in no hierarchy: silent
BPS = 10_000
DROP_GRACE_SECONDS = 2.0
GAS_MARGIN_BPS = 5_000  # the gas limit is the estimate x (1 + 50%) ...
GAS_HEADROOM = 100_000  # ... + 100,000
RECEIPT_TIMEOUT = 120.0  # seconds a send-and-wait waits for its receipt


def gas_limit(estimate: int, margin_bps: int = GAS_MARGIN_BPS, cap: int | None = None) -> int:
    """The gas limit of a simulated transaction: ``estimate x (1 + margin) + 100,000``, at most
    `cap` (the block's gas limit: a node refuses a transaction that could never fit a block)."""
    gas = estimate * (BPS + margin_bps) // BPS + GAS_HEADROOM
    return min(gas, cap) if cap else gas


# ---------------------------------------------------------------------------- what the sender needs


class Client(Protocol):
    """What the sender needs of a client: the node and the decoder of the contracts' custom
    errors. A :class:`bulwark.chain.contracts.Bulwark` is one; so is an :class:`Endpoint`."""

    @property
    def w3(self) -> Web3: ...

    @property
    def errors(self) -> ErrorDecoder: ...


@dataclass(frozen=True)
class Endpoint:
    """A node and an error decoder, for a sender with no deployment yet (the deployer)."""

    w3: Web3
    errors: ErrorDecoder


class SendMetrics(Protocol):
    """Where a sender reports what became of its transactions (the keeper's Prometheus metrics)."""

    def tx_outcome(self, action: str, outcome: str, in_flight: int) -> None:
        """`outcome` is sent, mined, failed or dropped; `in_flight` counts the sender's pending."""
        ...

    def tx_replaced(self) -> None: ...


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

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = address
        self._next: int | None = None
        self._lock = threading.Lock()

    def reserve(self, reseed: bool = False) -> int:
        """The next nonce; `reseed` (or no count yet) asks the node for its pending count first."""
        with self._lock:
            if self._next is None or reseed:
                count = rpc(self.w3, "eth_getTransactionCount", [self.address, "pending"])
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
    """A contract call already encoded (by :class:`bulwark.chain.rpc.Calls`): target and calldata;
    no target (``to=""``) creates a contract from `data`."""

    to: str
    data: str


def as_call(fn: Any) -> Call:
    """A :class:`Call` from a web3 contract function or constructor (or a Call, unchanged)."""
    if isinstance(fn, Call):
        return fn
    if getattr(fn, "address", None) is None:  # a constructor: bytecode and arguments
        return Call("", str(fn.data_in_transaction))
    return Call(str(fn.address), str(fn._encode_transaction_data()))


def eip1559_tx(fn: Any, chain_id: int, gas: int, fees: Fees, value: int = 0) -> dict[str, Any]:
    """The EIP-1559 transaction of `fn` at these fees, without its nonce (a creation has no ``to``)."""
    call = as_call(fn)
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "data": call.data,
        "value": value,
        "gas": gas,
        "maxFeePerGas": fees.max_fee,
        "maxPriorityFeePerGas": fees.priority_fee,
    }
    if call.to:
        tx["to"] = call.to
    return tx


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
    """One signer's transactions: simulation, nonces, fees, replacements and the in-flight set.

    `metrics`, if given, hears of every outcome and replacement (:class:`SendMetrics`); with
    `log_sends` off (a command's send and wait, whose outcome is its answer) nothing is logged."""

    def __init__(
        self,
        client: Client,
        signer: LocalAccount,
        gas: GasStrategy | None = None,
        *,
        metrics: SendMetrics | None = None,
        replace_after_blocks: int = 3,
        replace_after_seconds: float = 30.0,
        gas_margin_bps: int = GAS_MARGIN_BPS,
        poll_interval: float = 0.25,
        drop_grace: float = DROP_GRACE_SECONDS,
        log_sends: bool = True,
    ) -> None:
        self.client = client
        self.w3 = client.w3
        self.errors = client.errors
        self.signer = signer
        self.gas = gas or Eip1559Strategy()
        self.metrics = metrics
        self.log = log if log_sends else _QUIET
        self.nonces = NonceManager(client.w3, signer.address)
        self._chain_id: int | None = None
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

    def estimate(self, fn: Any, action: str, value: int = 0) -> int:
        """Simulates with eth_estimateGas from the signer; a revert raises :class:`Simulation`."""
        if isinstance(fn, Call):
            (outcome,) = self.estimate_many([fn])
            if isinstance(outcome, DecodedError):
                raise Simulation(action, outcome)
            return outcome
        try:
            return int(fn.estimate_gas({"from": self.signer.address, "value": value}))
        except Exception as exc:
            decoded = self.errors.from_exception(exc)
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
        pending = rpc(self.w3, "eth_getBlockByNumber", ["pending", False])
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
        replies = rpc_batch(self.w3, reqs)
        if overrides and replies and all(_refused_params(r) for r in replies):
            self.log.warning(
                "the node refuses block overrides in eth_call; simulating without them"
            )
            self._block_overrides = False
            return self._simulate(method, calls, gas, None)
        out: list[str | DecodedError] = []
        for reply in replies:
            if isinstance(reply, RpcFailure):
                out.append(
                    self.errors.decode(reply.data)
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

    def with_margin(self, gas: int, cap: int | None = None) -> int:
        """The gas limit for a simulated `gas` (:func:`gas_limit`, with this sender's margin)."""
        return gas_limit(gas, self.gas_margin_bps, cap)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # ------------------------------------------------------------------ sending

    def send(
        self,
        fn: Any,
        *,
        action: str,
        gas: int | None = None,
        keys: Iterable[Hashable] = (),
        head: BlockRef | None = None,
        value: int = 0,
    ) -> PendingTx:
        """Simulates (unless `gas` is given, i.e. the caller simulated), takes a nonce and sends."""
        estimate = self.estimate(fn, action, value) if gas is None else None
        head = head or get_block(self.w3)
        if estimate is not None:
            gas = self.with_margin(estimate, head.gas_limit)
        assert gas is not None
        fees = self.gas.initial(head.base_fee)
        tx = self.unsigned(fn, gas, fees, value)
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
                    self.log.warning(
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
            self.log.info(
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

    def unsigned(self, fn: Any, gas: int, fees: Fees, value: int = 0) -> dict[str, Any]:
        """The EIP-1559 transaction of `fn`, without its nonce (a creation has no ``to``)."""
        return eip1559_tx(fn, self.chain_id, gas, fees, value)

    def transact(
        self,
        fn: Any,
        *,
        action: str,
        gas: int | None = None,
        value: int = 0,
        timeout: float = RECEIPT_TIMEOUT,
    ) -> TxReceipt:
        """Send and wait: simulates (unless `gas` is given), sends, waits for the receipt (replacing
        a transaction that lingers) and returns it.

        Raises :class:`TxReverted` with the decoded custom error when the simulation or the mined
        transaction reverted, and :class:`BulwarkError` with one plain line for what the node
        refused (no ETH for gas, a nonce taken, a chain id mismatch), for a transaction the node
        dropped, or one still pending after `timeout` seconds."""
        try:
            pending = self.send(fn, action=action, gas=gas, value=value)
        except Simulation as sim:
            raise TxReverted(action, sim.error) from None
        except BulwarkError:
            raise
        except Exception as exc:
            estimate = gas
            if estimate is None and getattr(fn, "address", None) is not None:
                estimate = gas_without_funds(fn, {"from": self.signer.address, "value": value})
            line = node_error_line(exc, self.w3, self.signer.address, action, estimate)
            if line is None:
                raise
            raise BulwarkError(line) from None
        outcome = self.wait(pending, timeout)
        if outcome.receipt is None:
            with self._lock:
                self.pending.pop(pending.nonce, None)
            what = "dropped by the node" if outcome.dropped else f"not mined in {timeout:.0f} s"
            raise BulwarkError(f"{action}: transaction {pending.hashes[-1]} was {what}")
        if outcome.error is not None:
            raise TxReverted(action, outcome.error)
        return outcome.receipt

    def _broadcast(self, tx: dict[str, Any]) -> tuple[bytes, str]:
        signed = self.signer.sign_transaction(tx)
        raw = bytes(signed.raw_transaction)
        tx_hash = self.w3.eth.send_raw_transaction(raw)
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
                self.log.warning(
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
                    self.log.warning(
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
        w3 = self.w3
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
        replies = rpc_batch(self.w3, [("eth_getTransactionByHash", [h]) for h in pending.hashes])
        return any(isinstance(r, dict) and r for r in replies)

    def _maybe_replace(self, pending: PendingTx, head: BlockRef) -> None:
        blocks = head.number - pending.last_sent_block
        seconds = time.monotonic() - pending.last_sent_at
        if blocks < self.replace_after_blocks and seconds < self.replace_after_seconds:
            return
        fees = self.gas.bump(pending.fees, head.base_fee)
        if fees is None:
            pending.last_sent_at, pending.last_sent_block = time.monotonic(), head.number
            self.log.warning(
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
            self.log.warning(
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
            self.metrics.tx_replaced()
        self.log.info(
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
            self.log.info(
                "mined",
                extra=kv(
                    action=pending.action,
                    tx=tx_hash,
                    block=receipt["blockNumber"],
                    gas_used=receipt["gasUsed"],
                ),
            )
            return SendOutcome(pending, receipt)
        error = replay_revert(
            self.w3,
            self.errors,
            {**pending.tx, "from": self.signer.address},
            receipt["blockNumber"],
        )
        self._count(pending.action, "failed")
        self.log.error(
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
        self.log.warning(
            "dropped", extra=kv(action=pending.action, nonce=pending.nonce, reason=reason)
        )
        return SendOutcome(pending, dropped=True)

    def _count(self, action: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.tx_outcome(action, outcome, len(self.pending))


# ---------------------------------------------------------------------------- pipelined

# Fees of pipelined transactions: many blocks may be mined back to back before the last one is in,
# each able to raise the base fee by 12.5%, so there is more headroom than for a single send.
PIPELINE_FEES = Eip1559Strategy(base_fee_multiple=4)
SEND_CHUNK = 200  # raw transactions (or receipt look-ups) per JSON-RPC batch
LOST_AFTER_SECONDS = 2.5  # a transaction without a receipt is looked for in the node this often


@dataclass
class Queued:
    """A pipelined transaction, signed; its hash once the node accepted it."""

    label: str
    sender: str
    tx: dict[str, Any]
    raw: str
    tx_hash: str = ""


class Pipeline:
    """Pipelined sending, for setting up many accounts quickly: transactions of many signers, each
    with the gas its caller gives, signed with local nonces (one :class:`NonceManager` per signer,
    seeded from the node's pending count at its first transaction after a :meth:`wait`) and sent
    back to back in JSON-RPC batches without waiting; :meth:`wait` then collects every receipt.

    Nothing is simulated, so nothing is known to fail before it is mined: :meth:`wait` replays a
    transaction that reverted to decode its custom error and raises :class:`TxReverted`, unless
    the caller allows reverts and reads the receipts' status itself. A transaction the node lost
    (neither pending nor mined: Anvil's interval miner drops a sender's later nonces now and then)
    is sent again, and counted in ``rebroadcasts``.

    With `mine_together`, on a node that mines each transaction as it arrives (Anvil's automine),
    automine is paused from the first send and :meth:`wait` mines blocks until every transaction
    is in one: which block each lands in depends on the transactions alone, not on when they reached
    the node. An interval-mining node keeps its own pace."""

    def __init__(
        self,
        client: Client,
        *,
        gas: GasStrategy = PIPELINE_FEES,
        default_gas: int | None = None,
        chunk: int = SEND_CHUNK,
        mine_together: bool = False,
        poll_interval: float = 0.05,
    ) -> None:
        self.client = client
        self.w3 = client.w3
        self.gas = gas
        self.default_gas = default_gas
        self.chunk = chunk
        self.mine_together = mine_together
        self.poll_interval = poll_interval
        self.nonces: dict[str, NonceManager] = {}
        self._seeded: set[str] = set()  # signers whose nonce came from the node since the last wait
        self._fees: Fees | None = None
        self._chain_id: int | None = None
        self._queued: list[Queued] = []  # signed, not sent yet
        self._sent: list[Queued] = []  # accepted by the node, receipt not collected yet
        self._paused = False  # automine paused by this pipeline
        self.accepted = 0  # transactions the node accepted
        self.mined = 0  # transactions whose receipt was collected
        self.rebroadcasts = 0
        self.on_sent: Callable[[], None] | None = None  # after each batch the node accepted

    # ------------------------------------------------------------------ sending

    def add(self, signer: LocalAccount, fn: Any, label: str = "", *, gas: int | None = None,
            value: int = 0) -> Queued:  # fmt: skip
        """Signs `fn` from `signer` with its next nonce and queues it (:meth:`flush` sends)."""
        gas = gas if gas is not None else self.default_gas
        if gas is None:
            raise ValueError("a pipelined transaction needs its gas limit")
        if self._fees is None:
            self._fees = self.gas.initial(get_block(self.w3).base_fee)
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        manager = self.nonces.setdefault(signer.address, NonceManager(self.w3, signer.address))
        nonce = manager.reserve(reseed=signer.address not in self._seeded)
        self._seeded.add(signer.address)
        tx = {**eip1559_tx(fn, self._chain_id, gas, self._fees, value), "nonce": nonce}
        raw = "0x" + bytes(signer.sign_transaction(tx).raw_transaction).hex()
        queued = Queued(label or _fn_label(fn), signer.address, {**tx, "from": signer.address}, raw)
        self._queued.append(queued)
        return queued

    def send(self, signer: LocalAccount, fn: Any, label: str = "", *, gas: int | None = None,
             value: int = 0) -> str:  # fmt: skip
        """Signs and sends at once (with whatever was queued before it); returns the hash."""
        queued = self.add(signer, fn, label, gas=gas, value=value)
        self.flush()
        return queued.tx_hash

    def flush(self) -> None:
        """Sends every queued transaction, in JSON-RPC batches; a refusal raises
        :class:`BulwarkError` naming the transaction and the node's reason."""
        queued, self._queued = self._queued, []
        if queued and self.mine_together and not self._paused and self._automine():
            rpc(self.w3, "evm_setAutomine", [False])
            self._paused = True
        for start in range(0, len(queued), self.chunk):
            part = queued[start : start + self.chunk]
            replies = rpc_batch(self.w3, [("eth_sendRawTransaction", [q.raw]) for q in part])
            refused = None
            for q, reply in zip(part, replies, strict=True):
                if isinstance(reply, RpcFailure):
                    refused = refused or (q, reply)
                else:
                    q.tx_hash = str(reply)
            self._sent += [q for q in part if q.tx_hash]
            if refused is not None:
                self._seeded.clear()  # the next nonces come from the node: no gap left behind
                self._resume()
                raise BulwarkError(f"{refused[0].label}: the node refused it: {refused[1].message}")
            self.accepted += len(part)
            if self.on_sent is not None:
                self.on_sent()

    def _automine(self) -> bool:
        reply = rpc(self.w3, "anvil_getAutomine", [])
        return bool(reply)

    def _resume(self) -> None:
        """Automine back on, if this pipeline paused it."""
        if self._paused:
            rpc(self.w3, "evm_setAutomine", [True])
            self._paused = False

    # ------------------------------------------------------------------ receipts

    def wait(self, timeout: float = RECEIPT_TIMEOUT, *, allow_revert: bool = False
             ) -> list[TxReceipt]:  # fmt: skip
        """Sends what is queued, then collects the receipt of every transaction sent since the last
        wait, in the order sent. A reverted one raises :class:`TxReverted` (the first, decoded),
        unless `allow_revert`; one not mined within `timeout` seconds raises
        :class:`BulwarkError`. The nonces are read from the node again afterwards, so other
        senders may use the same accounts in between."""
        try:
            self.flush()
            sent, self._sent = self._sent, []
            receipts = self._collect(sent, timeout)
        finally:
            self._resume()
            self.forget()
        self.mined += len(sent)
        if not allow_revert:
            for q, receipt in zip(sent, receipts, strict=True):
                if receipt["status"] != 1:
                    error = replay_revert(
                        self.w3, self.client.errors, q.tx, int(receipt["blockNumber"])
                    )
                    raise TxReverted(q.label, error)
        return receipts

    def receipt(self, tx_hash: str, timeout: float = RECEIPT_TIMEOUT) -> TxReceipt:
        """The receipt of one transaction sent by :meth:`send` (sent again if the node lost it),
        which :meth:`wait` then no longer waits for; a revert is the caller's to read."""
        self.flush()
        mine = [q for q in self._sent if q.tx_hash == tx_hash]
        if not mine:
            raise ValueError(f"{tx_hash} was not sent by this pipeline")
        self._sent = [q for q in self._sent if q.tx_hash != tx_hash]
        (receipt,) = self._collect(mine, timeout)
        return receipt

    def forget(self) -> None:
        """Stops tracking what was sent (the caller waits for it itself) and forgets the local
        nonces and fees: the next transaction reads them from the node."""
        self._sent = []
        self._seeded.clear()
        self._fees = None

    def _collect(self, sent: Sequence[Queued], timeout: float) -> list[TxReceipt]:
        found: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        rounds = 0
        next_lost_check = time.monotonic() + LOST_AFTER_SECONDS
        while True:
            if self._paused:
                rpc(self.w3, "evm_mine", [])
                rounds += 1
            missing = [q for q in sent if q.tx_hash not in found]
            requests = [("eth_getTransactionReceipt", [q.tx_hash]) for q in missing]
            for q, reply in zip(missing, rpc_batch(self.w3, requests, self.chunk), strict=True):
                if isinstance(reply, dict) and reply:
                    found[q.tx_hash] = reply
            if len(found) == len(sent):
                return [cast(TxReceipt, receipt_formatter(found[q.tx_hash])) for q in sent]
            left = len(sent) - len(found)
            if self._paused and rounds > len(sent) + 10:
                raise BulwarkError(f"{left} of {len(sent)} transactions stayed out of every block")
            if time.monotonic() > deadline:
                raise BulwarkError(
                    f"{left} of {len(sent)} transactions were not mined in {timeout:.0f} s"
                )
            if time.monotonic() > next_lost_check:
                self._rebroadcast([q for q in sent if q.tx_hash not in found])
                next_lost_check = time.monotonic() + LOST_AFTER_SECONDS
            if not self._paused:
                time.sleep(self.poll_interval)

    def _rebroadcast(self, missing: Sequence[Queued]) -> None:
        """Sends again each of `missing` that the node no longer knows (neither pending nor
        mined), and counts it."""
        known = rpc_batch(
            self.w3, [("eth_getTransactionByHash", [q.tx_hash]) for q in missing], self.chunk
        )
        lost = [q for q, tx in zip(missing, known, strict=True) if not tx]
        if lost:
            rpc_batch(self.w3, [("eth_sendRawTransaction", [q.raw]) for q in lost], self.chunk)
            self.rebroadcasts += len(lost)


def _fn_label(fn: Any) -> str:
    name = getattr(fn, "fn_name", None) or getattr(fn, "abi_element_identifier", None)
    return str(name or "transaction")
