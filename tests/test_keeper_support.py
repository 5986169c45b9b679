"""Scenario helpers for the keeper tests (no tests here): a chain of its own, many funded traders,
positions that a price move makes liquidatable, and waiting for conditions with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from bulwark.chain.contracts import WAD, Bulwark, Deployment, TxReverted, connect, dev_account
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode

USDC = 10**6
MAX_UINT = 2**256 - 1


def trader_key(n: int, salt: str = "bulwark-keeper-test") -> LocalAccount:
    acct: LocalAccount = Account.from_key(keccak(text=f"{salt}-{n}"))
    return acct


@dataclass
class Chain:
    """A deployment on a node of the test's own, plus helpers in human units."""

    node: AnvilNode
    bw: Bulwark
    admin: LocalAccount = field(default_factory=lambda: dev_account(0))
    lp: LocalAccount = field(default_factory=lambda: dev_account(1))
    staker: LocalAccount = field(default_factory=lambda: dev_account(2))

    @property
    def w3(self) -> Web3:
        return self.bw.w3

    def rpc(self, method: str, *params: Any) -> Any:
        return self.node.rpc(method, *params)

    def send(self, fn: Any, who: LocalAccount) -> Any:
        # Generous gas: an estimate made in the last block's second can skip the funding accrual that
        # the mined transaction, one second later, performs.
        try:
            estimate = fn.estimate_gas({"from": who.address})
        except Exception as exc:  # a refused call: the same decoded error as Bulwark.send raises
            decoded = self.bw.errors.from_exception(exc)
            if decoded is None:
                raise
            raise TxReverted(str(fn.fn_name), decoded) from None
        return self.bw.send(fn, who, gas=estimate * 3 // 2 + 100_000)

    def new_trader(self, n: int, usdc: int, salt: str = "t") -> LocalAccount:
        """A fresh account with ETH for gas and `usdc` deposited as margin."""
        t = trader_key(n, salt)
        self.rpc("anvil_setBalance", t.address, hex(10 * WAD))
        self.send(self.bw.token.functions.mint(t.address, usdc * USDC), self.admin)
        self.send(self.bw.token.functions.approve(self.bw.ch.address, MAX_UINT), t)
        self.send(self.bw.ch.functions.deposit(t.address, usdc * USDC), t)
        return t

    def seed_pool(self, usdc: int) -> None:
        self.send(self.bw.token.functions.approve(self.bw.pool.address, MAX_UINT), self.lp)
        self.send(self.bw.pool.functions.deposit(usdc * USDC, self.lp.address), self.lp)

    def stake(self, usdc: int) -> None:
        self.send(self.bw.token.functions.approve(self.bw.fund.address, MAX_UINT), self.staker)
        self.send(self.bw.fund.functions.deposit(usdc * USDC, self.staker.address), self.staker)

    def price_wad(self, market: str) -> int:
        return int(self.bw.oracle.functions.priceWad(self.bw.market_id(market)).call())

    def trade(self, trader: LocalAccount, market: str, size: float) -> Any:
        size_wad = round(size * WAD)
        price = self.price_wad(market)
        limit = price * 105 // 100 if size_wad > 0 else price * 95 // 100
        return self.send(
            self.bw.ch.functions.trade(self.bw.market_id(market), size_wad, limit), trader
        )

    def set_price(self, market: str, price: float) -> Any:
        return self.send(
            self.bw.feeds[market].functions.updateAnswer(round(price * 10**8)), self.admin
        )

    def healths(self, accounts: Sequence[str]) -> list[Any]:
        return list(self.bw.ch.functions.healthsOf(list(accounts)).call())

    def liquidatable(self, accounts: Sequence[str]) -> list[str]:
        return [a for a, h in zip(accounts, self.healths(accounts), strict=True) if h[3]]

    def events(self, name: str, from_block: int = 0) -> list[Any]:
        return list(getattr(self.bw.ch.events, name).get_logs(from_block=from_block))

    def interval_mining(self, seconds: int) -> None:
        self.rpc("evm_setAutomine", False)
        self.rpc("evm_setIntervalMining", seconds)

    def automine(self) -> None:
        self.rpc("evm_setIntervalMining", 0)
        self.rpc("evm_setAutomine", True)


@contextmanager
def own_chain(state_file: Path | None = None, **node_args: Any) -> Iterator[Chain]:
    """A fresh Anvil and deployment for one test module."""
    with AnvilNode(state_file=state_file, **node_args) as node:
        w3 = connect(node.rpc_url)
        deployment = deploy_all(w3, dev_account(0))
        yield Chain(node, Bulwark(w3, deployment))


@dataclass
class Book:
    """A module's chain with a book of traders on it (their addresses)."""

    chain: Chain
    traders: list[str]


@contextmanager
def reverted(book: Book) -> Iterator[Book]:
    """Yields `book`, then puts its chain back as it was: mining, state and the next base fee."""
    chain = book.chain
    snapshot = chain.rpc("evm_snapshot")
    try:
        yield book
    finally:
        chain.automine()
        assert chain.rpc("evm_revert", snapshot) is True
        # the node's fee market is not part of a snapshot: the next block pays what the last did
        base_fee = chain.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"]
        chain.rpc("anvil_setNextBlockBaseFeePerGas", base_fee)


def reconnect(chain: Chain, deployment: Deployment) -> Bulwark:
    return Bulwark(connect(chain.node.rpc_url), deployment, chain.bw.artifacts)


def crash_book(
    chain: Chain,
    count: int,
    salt: str = "crash",
    margin: int = 1_000,
    smallest: float = 1.5,
    largest: float = 6.0,
) -> list[LocalAccount]:
    """`count` ETH-USD longs of `margin` USDC, sizes spread from `smallest` to `largest` ETH. With the
    defaults (5x to 18x at 3000) a move to 2850 makes those above ~3.5 ETH liquidatable, leaves the
    rest healthy, and the largest are partially liquidated (notional above the partial minimum)."""
    traders = []
    for n in range(count):
        t = chain.new_trader(n, margin, salt)
        chain.trade(t, "ETH-USD", smallest + (largest - smallest) * n / max(count - 1, 1))
        traders.append(t)
    return traders


def wait_for(
    condition: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
