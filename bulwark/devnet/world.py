"""The test world: a local Anvil with the protocol deployed, named actors, and the chain's clock.

The tests and the benchmarks share it. :func:`world` starts a node of its own and deploys; a caller
that already has a node and a deployment wraps them with ``World(node, bw)``. Amounts are in human
units (whole USDC, prices in dollars), positions in WAD.

Time is the chain's, never the wall clock's: :meth:`World.pin_time` makes every block land a fixed
step after the last whatever the machine's load, :meth:`World.warp` and :meth:`World.mine` stamp the
block they mine exactly, and :meth:`World.next_timestamp` stamps the next transaction's block. A test
whose outcome depends on the seconds between two transactions pins them, or computes what accrues.

Setting up hundreds of accounts one transaction at a time is slow, so the world's ``sender`` is the
transaction sender's pipelined mode (:class:`bulwark.chain.sender.Pipeline`): it signs with local
nonces and the gas limits given, sends without waiting, and its ``wait`` collects every receipt and
raises the decoded error if one reverted. Accounts get ether through ``anvil_setBalance`` and
collateral from the deployer, which mints to itself once and deposits on each account's behalf
(``ClearingHouse.deposit(account, amount)`` credits any account).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from bulwark.chain.contracts import WAD, Bulwark, Deployment, TxReverted, connect, dev_account
from bulwark.chain.sender import Pipeline
from bulwark.core.errors import BulwarkError
from bulwark.devnet import compiler
from bulwark.devnet.deploy import FEED_DECIMALS, deploy_all
from bulwark.devnet.node import AnvilError, AnvilNode

USDC = 10**6
MAX_UINT = 2**256 - 1
ETHER = 10**18


class WorldError(BulwarkError):
    """The world could not set up, move its clock, or check what it set up."""


def keyed_account(label: str) -> LocalAccount:
    """A deterministic throwaway account (key = keccak of `label`), for local chains only."""
    acct: LocalAccount = Account.from_key(keccak(text=label))
    return acct


def bench_account(index: int, namespace: str = "bench") -> LocalAccount:
    """The benchmarks' account `index` of `namespace`."""
    return keyed_account(f"bulwark-{namespace}-{index}")


def trader_key(n: int, salt: str = "bulwark-keeper-test") -> LocalAccount:
    """The tests' trader `n` of `salt`."""
    return keyed_account(f"{salt}-{n}")


def wad(x: float | int | str) -> int:
    """Human units to WAD, exact for round figures (``wad("0.1")``, ``wad(5)``)."""
    return int(Decimal(str(x)) * WAD)


@dataclass
@dataclass
class World:
    """A node, the deployment on it, and the dev accounts by role: the admin (deployer and price
    feeder), the liquidity provider, the insurance staker, a keeper and six traders."""

    node: AnvilNode
    bw: Bulwark
    admin: LocalAccount = field(default_factory=lambda: dev_account(0))
    lp: LocalAccount = field(default_factory=lambda: dev_account(1))
    staker: LocalAccount = field(default_factory=lambda: dev_account(2))
    keeper: LocalAccount = field(default_factory=lambda: dev_account(3))
    traders: list[LocalAccount] = field(
        default_factory=lambda: [dev_account(i) for i in range(4, 10)]
    )
    sender: Pipeline = field(init=False)

    def __post_init__(self) -> None:
        self.sender = Pipeline(self.bw, poll_interval=0.02)

    @property
    def w3(self) -> Web3:
        return self.bw.w3

    @property
    def deployment(self) -> Deployment:
        return self.bw.deployment

    def rpc(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call through the world's connection; an error reply raises
        :class:`AnvilError`, as :meth:`AnvilNode.rpc` does."""
        reply = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in reply:
            raise AnvilError(f"{method} failed: {reply['error']}")
        return reply.get("result")

    # ------------------------------------------------------------------------------------ time

    def now(self) -> int:
        """The latest block's timestamp."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def pin_time(self, step: int = 1) -> None:
        """Every block from now on lands `step` seconds after the last, however long the machine
        takes between transactions (until :meth:`unpin_time`; stamped blocks still move it)."""
        self.rpc("anvil_setBlockTimestampInterval", step)

    def unpin_time(self) -> None:
        """Blocks follow the wall clock again."""
        self.rpc("anvil_removeBlockTimestampInterval")

    @contextmanager
    def pinned_time(self, step: int = 1) -> Iterator[World]:
        self.pin_time(step)
        try:
            yield self
        finally:
            self.unpin_time()

    def next_timestamp(self, timestamp: int) -> None:
        """The next block, whichever transaction mines it, has exactly `timestamp`."""
        self.rpc("evm_setNextBlockTimestamp", timestamp)

    def next_block_after(self, seconds: int) -> None:
        """The next transaction lands exactly `seconds` after the latest block, in a block of its
        own."""
        self.next_timestamp(self.now() + seconds)

    def mine(self, timestamp: int | None = None) -> int:
        """Mines one empty block, at exactly `timestamp` if given; returns its timestamp."""
        if timestamp is not None:
            self.next_timestamp(timestamp)
        self.rpc("evm_mine")
        return self.now()

    def warp(self, seconds: int) -> int:
        """Mines a block exactly `seconds` after the latest one; returns its timestamp."""
        return self.mine(self.now() + seconds)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snap: str) -> None:
        if not self.rpc("evm_revert", snap):
            raise WorldError(f"evm_revert({snap}) failed")

    @contextmanager
    def reverted(self) -> Iterator[World]:
        """Yields the world, then puts its chain back as it was: state, clock, automining and the
        next block's base fee (the node's fee market is not part of a snapshot)."""
        snap = self.snapshot()
        try:
            yield self
        finally:
            self.automine()
            self.revert(snap)
            base_fee = self.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"]
            self.rpc("anvil_setNextBlockBaseFeePerGas", base_fee)

    def interval_mining(self, seconds: int) -> None:
        """A block every `seconds` of wall time, and none in between."""
        self.rpc("evm_setAutomine", False)
        self.rpc("evm_setIntervalMining", seconds)

    def automine(self) -> None:
        """A block for each transaction, as it arrives."""
        self.rpc("evm_setIntervalMining", 0)
        self.rpc("evm_setAutomine", True)

    # --------------------------------------------------------------------------- transactions

    def send(self, fn: Any, who: LocalAccount, gas: int | None = None) -> Any:
        """Sends and waits; a refused call raises the decoded :class:`TxReverted`. The gas limit
        is generous: a gas estimate can miss the funding accrual the mined block performs."""
        if gas is None:
            try:
                estimate = fn.estimate_gas({"from": who.address})
            except Exception as exc:
                decoded = self.bw.errors.from_exception(exc)
                if decoded is None:
                    raise
                raise TxReverted(str(fn.fn_name), decoded) from None
            gas = estimate * 3 // 2 + 100_000
        return self.bw.send(fn, who, gas=gas)

    def give_ether(self, accounts: Sequence[LocalAccount], amount: int = 100 * ETHER) -> None:
        for a in accounts:
            self.rpc("anvil_setBalance", a.address, hex(amount))

    def mint(self, to: str, usdc: int) -> None:
        self.send(self.bw.token.functions.mint(to, usdc * USDC), self.admin)

    def _hold(self, who: LocalAccount, usdc: int) -> None:
        """Mints `who` what it lacks of `usdc` (the dev accounts hold a million each)."""
        balance = int(self.bw.token.functions.balanceOf(who.address).call())
        if balance < usdc * USDC:
            self.send(self.bw.token.functions.mint(who.address, usdc * USDC - balance), self.admin)

    def fund_trader(self, trader: LocalAccount, usdc: int) -> None:
        """`trader` deposits `usdc` of its own tokens as margin."""
        self.send(self.bw.token.functions.approve(self.bw.ch.address, MAX_UINT), trader)
        self.send(self.bw.ch.functions.deposit(trader.address, usdc * USDC), trader)

    def new_trader(self, n: int, usdc: int, salt: str = "t") -> LocalAccount:
        """A fresh account (``trader_key(n, salt)``) with ether for gas and `usdc` deposited as
        margin."""
        t = trader_key(n, salt)
        self.give_ether([t], 10 * ETHER)
        self.mint(t.address, usdc)
        self.fund_trader(t, usdc)
        return t

    def fund_accounts(self, accounts: Sequence[LocalAccount], margins_usdc: Sequence[int]) -> None:
        """Ether for gas, and `margins_usdc[i]` deposited as margin for account i by the deployer,
        all sent at once."""
        if len(accounts) != len(margins_usdc):
            raise WorldError("one margin per account")
        self.give_ether(accounts)
        total = sum(margins_usdc)
        if total == 0:
            return
        self.mint(self.admin.address, total)
        self.send(self.bw.token.functions.approve(self.bw.ch.address, MAX_UINT), self.admin)
        for a, margin in zip(accounts, margins_usdc, strict=True):
            if margin:
                fn = self.bw.ch.functions.deposit(a.address, margin * USDC)
                self.sender.send(self.admin, fn, gas=120_000)
        self.sender.wait()

    def seed_pool(self, usdc: int, lp: LocalAccount | None = None) -> None:
        """The liquidity provider (`lp`, else the world's) deposits `usdc` in the pool, minted to
        it first if it holds less."""
        lp = lp or self.lp
        self._hold(lp, usdc)
        self.send(self.bw.token.functions.approve(self.bw.pool.address, MAX_UINT), lp)
        self.send(self.bw.pool.functions.deposit(usdc * USDC, lp.address), lp)

    def stake(self, usdc: int, who: LocalAccount | None = None) -> Any:
        """`who` (else the world's staker) stakes `usdc` in the insurance fund, minted to it first
        if it holds less."""
        who = who or self.staker
        self._hold(who, usdc)
        self.send(self.bw.token.functions.approve(self.bw.fund.address, MAX_UINT), who)
        return self.send(self.bw.fund.functions.deposit(usdc * USDC, who.address), who)

    # -------------------------------------------------------------------------- prices, trades

    def set_price(self, market: str, price: float | int) -> Any:
        answer = round(price * 10**FEED_DECIMALS)
        return self.send(self.bw.feeds[market].functions.updateAnswer(answer), self.admin)

    def refresh_prices(self) -> None:
        """Re-publishes every feed's latest answer now (after a warp past the heartbeat)."""
        for feed in self.bw.feeds.values():
            answer = feed.functions.latestAnswer().call()
            self.send(feed.functions.updateAnswer(answer), self.admin)

    def price_wad(self, market: str) -> int:
        return int(self.bw.oracle.functions.priceWad(self.bw.market_id(market)).call())

    def trade(self, trader: LocalAccount, market: str, size: float, slippage: float = 0.05) -> Any:
        """Trades `size` (in the market's asset; negative sells) with a limit `slippage` away from
        the oracle price."""
        size_wad = round(size * WAD)
        price = self.price_wad(market)
        side = 1 if size_wad > 0 else -1
        limit = price * round((1 + side * slippage) * 10_000) // 10_000
        fn = self.bw.ch.functions.trade(self.bw.market_id(market), size_wad, limit)
        return self.send(fn, trader)

    def open_positions(
        self, orders: Sequence[tuple[LocalAccount, str, int]], gas: int = 400_000
    ) -> None:
        """Sends every (account, market, size in WAD) trade at once at a 5% slippage limit."""
        prices = {m: self.price_wad(m) for m in {market for _, market, _ in orders}}
        for account, market, size in orders:
            limit = prices[market] * 105 // 100 if size > 0 else prices[market] * 95 // 100
            fn = self.bw.ch.functions.trade(self.bw.market_id(market), size, limit)
            self.sender.send(account, fn, gas=gas)
        self.sender.wait()

    # -------------------------------------------------------------------------------- reading

    def healths(self, accounts: Sequence[str]) -> list[Any]:
        return list(self.bw.ch.functions.healthsOf(list(accounts)).call())

    def liquidatable(self, accounts: Sequence[str]) -> list[str]:
        return [a for a, h in zip(accounts, self.healths(accounts), strict=True) if h[3]]

    def events(self, name: str, from_block: int = 0) -> list[Any]:
        return list(getattr(self.bw.ch.events, name).get_logs(from_block=from_block))

    def code_names(self) -> dict[str, str]:
        """Address -> artifact name of every deployed contract (the feeds by market too)."""
        kinds = {"Collateral": "MockUSDC"}
        names = {a.lower(): kinds.get(k, k) for k, a in self.deployment.contracts.items()}
        for market in self.deployment.markets.values():
            names[market.feed.lower()] = "MockAggregator"
        return names


@contextmanager
def world(
    *,
    block_time: float | None = None,
    gas_limit: int = 30_000_000,
    steps_tracing: bool = False,
    extra_args: Sequence[str] = (),
    rpc_timeout: float = 120.0,
    **node_args: Any,
) -> Iterator[World]:
    """A fresh Anvil with the default deployment; stopped on exit. With a block time, the node starts
    with automine on (deployment and setup take seconds); switch to interval mining with
    :meth:`World.interval_mining` before measuring. Other keywords go to :class:`AnvilNode`
    (``state_file``, ``accounts``...)."""
    artifacts = compiler.compile_contracts()
    args = ["--gas-limit", str(gas_limit), *extra_args]
    if steps_tracing:
        args.append("--steps-tracing")
    with AnvilNode(block_time=block_time, extra_args=args, **node_args) as node:
        w3 = connect(node.rpc_url, timeout=rpc_timeout)
        if block_time is not None:
            node.rpc("evm_setAutomine", True)
        admin = dev_account(0)
        deployment = deploy_all(w3, admin)
        yield World(node, Bulwark(w3, deployment, artifacts), admin=admin)
