"""A real Anvil node with the real deployment, and many funded accounts set up quickly.

Setting up hundreds of accounts one transaction at a time is slow, so :class:`FastSender` signs with
explicit nonces and fixed gas limits and sends without waiting; :meth:`FastSender.wait` then collects
every receipt and fails loudly if one reverted. Accounts get ether through ``anvil_setBalance`` and
collateral from the deployer, which mints to itself once and deposits on each account's behalf
(``ClearingHouse.deposit(account, amount)`` credits any account).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import TransactionNotFound

from bulwark.chain.contracts import WAD, Bulwark, Deployment, connect, dev_account
from bulwark.devnet import compiler
from bulwark.devnet.deploy import FEED_DECIMALS, deploy_all
from bulwark.devnet.node import AnvilNode

USDC = 10**6
MAX_UINT = 2**256 - 1
ETHER = 10**18


class BenchError(RuntimeError):
    """A benchmark could not set up or check what it measures."""


def bench_account(index: int, namespace: str = "bench") -> LocalAccount:
    """A deterministic throwaway account (key = keccak of a label), for local chains only."""
    acct: LocalAccount = Account.from_key(keccak(text=f"bulwark-{namespace}-{index}"))
    return acct


@dataclass
class FastSender:
    """Signs and sends without waiting, with a local nonce per signer."""

    w3: Web3
    gas_price_gwei: int = 50
    nonces: dict[str, int] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)
    chain_id: int = 0
    raw: dict[bytes, bytes] = field(default_factory=dict)
    rebroadcasts: int = 0

    def send(self, fn: Any, signer: LocalAccount, gas: int) -> bytes:
        nonce = self.nonces.get(signer.address)
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(signer.address, "pending")
        if not self.chain_id:
            self.chain_id = self.w3.eth.chain_id
        tx = fn.build_transaction(
            {
                "from": signer.address,
                "nonce": nonce,
                "gas": gas,
                "maxFeePerGas": self.gas_price_gwei * 10**9,
                "maxPriorityFeePerGas": 10**9,
                "chainId": self.chain_id,
            }
        )
        signed = signer.sign_transaction(tx)
        tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        self.raw[tx_hash] = bytes(signed.raw_transaction)
        self.nonces[signer.address] = nonce + 1
        self.pending.append(tx_hash)
        return tx_hash

    def receipt(self, tx_hash: bytes, deadline: float) -> Any:
        """Waits for the receipt; a transaction the node lost (neither pending nor mined) is broadcast
        again, and counted. Anvil 1.7.1's interval miner drops a sender's later-nonce transactions now
        and then when one of them does not fit in the block it builds."""
        while True:
            try:
                return receipt_when_mined(self.w3, tx_hash, min(deadline, time.monotonic() + 2.5))
            except BenchError:
                if time.monotonic() > deadline:
                    raise
            if _known(self.w3, tx_hash):
                continue
            self.rebroadcasts += 1
            try:
                self.w3.eth.send_raw_transaction(self.raw[tx_hash])
            except Exception:
                continue

    def forget(self) -> None:
        """Drops what was sent and the cached nonces (the caller waits for its receipts itself)."""
        self.pending.clear()
        self.nonces.clear()
        self.raw.clear()

    def wait(self, timeout: float = 300.0, *, allow_revert: bool = False) -> list[Any]:
        """Every receipt sent since the last wait; raises if one reverted (unless `allow_revert`).
        Nonces are re-read after, so other senders may use the same accounts in between."""
        hashes, self.pending = self.pending, []
        self.nonces.clear()
        receipts = []
        deadline = time.monotonic() + timeout
        for tx_hash in hashes:
            receipt = self.receipt(tx_hash, deadline)
            if receipt["status"] != 1 and not allow_revert:
                raise BenchError(
                    f"setup transaction {tx_hash.hex()} reverted (gas {receipt['gasUsed']})"
                )
            receipts.append(receipt)
        for tx_hash in hashes:
            self.raw.pop(tx_hash, None)
        return receipts


def _known(w3: Web3, tx_hash: bytes) -> bool:
    try:
        w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return False
    return True


def receipt_when_mined(w3: Web3, tx_hash: bytes, deadline: float) -> Any:
    """Polls for a receipt until `deadline` (a time.monotonic() value)."""
    while True:
        try:
            return w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            pass
        if time.monotonic() > deadline:
            pool = w3.provider.make_request("txpool_status", [])  # type: ignore[arg-type]
            raise BenchError(
                f"transaction 0x{tx_hash.hex()} not mined in time (pool: {pool.get('result')})"
            )
        time.sleep(0.02)


@dataclass
class World:
    """A node, the deployment on it, its client and the dev accounts."""

    node: AnvilNode
    w3: Web3
    deployment: Deployment
    bw: Bulwark
    admin: LocalAccount
    sender: FastSender

    def rpc(self, method: str, *params: Any) -> Any:
        reply = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in reply:
            raise BenchError(f"{method} failed: {reply['error']}")
        return reply.get("result")

    def code_names(self) -> dict[str, str]:
        """Address -> artifact name of every deployed contract (the feeds by market too)."""
        kinds = {"Collateral": "MockUSDC"}
        names = {a.lower(): kinds.get(k, k) for k, a in self.deployment.contracts.items()}
        for market in self.deployment.markets.values():
            names[market.feed.lower()] = "MockAggregator"
        return names

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snap: str) -> None:
        if not self.rpc("evm_revert", snap):
            raise BenchError(f"evm_revert({snap}) failed")

    def warp(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def next_block_after(self, seconds: int) -> None:
        """The next transaction lands `seconds` later, in a block of its own."""
        self.rpc("evm_increaseTime", seconds)

    def give_ether(self, accounts: Sequence[LocalAccount], amount: int = 100 * ETHER) -> None:
        for a in accounts:
            self.rpc("anvil_setBalance", a.address, hex(amount))

    def set_price(self, market: str, price: float) -> Any:
        answer = round(price * 10**FEED_DECIMALS)
        return self.bw.send(self.bw.feeds[market].functions.updateAnswer(answer), self.admin)

    def refresh_prices(self) -> None:
        """Re-publishes every feed's answer (after a warp past the heartbeat)."""
        for feed in self.bw.feeds.values():
            answer = feed.functions.latestAnswer().call()
            self.bw.send(feed.functions.updateAnswer(answer), self.admin)

    def price_wad(self, market: str) -> int:
        return int(self.bw.oracle.functions.priceWad(self.bw.market_id(market)).call())

    def mint(self, to: str, usdc: int) -> None:
        self.bw.send(self.bw.token.functions.mint(to, usdc * USDC), self.admin)

    def fund_accounts(self, accounts: Sequence[LocalAccount], margins_usdc: Sequence[int]) -> None:
        """Ether for gas, and `margins_usdc[i]` deposited as margin for account i by the deployer."""
        if len(accounts) != len(margins_usdc):
            raise BenchError("one margin per account")
        self.give_ether(accounts)
        total = sum(margins_usdc)
        if total == 0:
            return
        self.mint(self.admin.address, total)
        self.bw.send(self.bw.token.functions.approve(self.bw.ch.address, MAX_UINT), self.admin)
        for a, margin in zip(accounts, margins_usdc, strict=True):
            if margin:
                fn = self.bw.ch.functions.deposit(a.address, margin * USDC)
                self.sender.send(fn, self.admin, gas=120_000)
        self.sender.wait()

    def open_positions(
        self, orders: Sequence[tuple[LocalAccount, str, int]], gas: int = 400_000
    ) -> None:
        """Sends every (account, market, size in WAD) trade at once at a 5% slippage limit."""
        prices = {m: self.price_wad(m) for m in {market for _, market, _ in orders}}
        for account, market, size in orders:
            limit = prices[market] * 105 // 100 if size > 0 else prices[market] * 95 // 100
            fn = self.bw.ch.functions.trade(self.bw.market_id(market), size, limit)
            self.sender.send(fn, account, gas=gas)
        self.sender.wait()

    def seed_pool(self, lp: LocalAccount, usdc: int) -> None:
        self.mint(lp.address, usdc)
        self.bw.send(self.bw.token.functions.approve(self.bw.pool.address, MAX_UINT), lp)
        self.bw.send(self.bw.pool.functions.deposit(usdc * USDC, lp.address), lp)

    def stake(self, staker: LocalAccount, usdc: int) -> Any:
        self.mint(staker.address, usdc)
        self.bw.send(self.bw.token.functions.approve(self.bw.fund.address, MAX_UINT), staker)
        return self.bw.send(self.bw.fund.functions.deposit(usdc * USDC, staker.address), staker)


@contextmanager
def world(
    *,
    block_time: float | None = None,
    gas_limit: int = 30_000_000,
    steps_tracing: bool = False,
    extra_args: Sequence[str] = (),
) -> Iterator[World]:
    """A fresh Anvil with the default deployment; stopped on exit. With a block time, the node starts
    with automine on (deployment and setup take seconds); switch to interval mining with
    ``evm_setIntervalMining`` before measuring."""
    artifacts = compiler.compile_contracts()
    args = ["--gas-limit", str(gas_limit), *extra_args]
    if steps_tracing:
        args.append("--steps-tracing")
    with AnvilNode(block_time=block_time, extra_args=args) as node:
        w3 = connect(node.rpc_url, timeout=120)
        if block_time is not None:
            node.rpc("evm_setAutomine", True)
        admin = dev_account(0)
        deployment = deploy_all(w3, admin)
        bw = Bulwark(w3, deployment, artifacts)
        yield World(node, w3, deployment, bw, admin, FastSender(w3))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s")
        time.sleep(interval)


def wad(x: float | int) -> int:
    """Human units to WAD, exact for the round figures the benchmarks use."""
    from decimal import Decimal

    return int(Decimal(str(x)) * WAD)
