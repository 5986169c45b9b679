"""Shared fixtures: one real Anvil node and one deployment per test session; every test runs inside an
EVM snapshot that is reverted afterwards, so tests neither see nor leave each other's state."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from bulwark.chain.contracts import WAD, Bulwark, Deployment, connect, dev_account
from bulwark.devnet import compiler
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.sim import invariants

MAX_UINT = 2**256 - 1
USDC = 10**6


CLI_ENV = (
    "BULWARK_RPC",
    "BULWARK_DEPLOYMENT",
    "BULWARK_PRIVATE_KEY",
    "BULWARK_DEBUG",
    "BULWARK_KEYSTORE_PASSWORD",
)


def clear_cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unsets the variables the CLI reads, so a test sees only the flags it passes."""
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)


def pytest_configure(config: pytest.Config) -> None:
    """Keeper state (checkpoints, signer locks) goes to a directory of this run, never the user's."""
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="bulwark-test-state-")


@pytest.fixture(scope="session")
def artifacts() -> dict[str, Any]:
    return compiler.compile_contracts()


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode() as node:
        yield node


@pytest.fixture(scope="session")
def w3(anvil: AnvilNode) -> Web3:
    return connect(anvil.rpc_url)


@pytest.fixture(scope="session")
def deployment(w3: Web3, artifacts: dict[str, Any]) -> Deployment:
    return deploy_all(w3, dev_account(0))


@pytest.fixture(scope="session")
def bw(w3: Web3, deployment: Deployment, artifacts: dict[str, Any]) -> Bulwark:
    return Bulwark(w3, deployment, artifacts)


@pytest.fixture(autouse=True)
def _snapshot(request: pytest.FixtureRequest) -> Iterator[None]:
    """Reverts the chain after each test that touched it."""
    if "w3" not in request.fixturenames and "bw" not in request.fixturenames:
        yield
        return
    chain: Web3 = request.getfixturevalue("w3")
    snap = chain.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield
    chain.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]


@dataclass
class Protocol:
    """The deployment plus the dev accounts the tests act as, with helpers in human units."""

    bw: Bulwark
    admin: LocalAccount
    lp: LocalAccount
    staker: LocalAccount
    keeper: LocalAccount
    traders: list[LocalAccount]

    def fund_trader(self, trader: LocalAccount, usdc: int) -> None:
        self.bw.send(self.bw.token.functions.approve(self.bw.ch.address, MAX_UINT), trader)
        self.bw.send(self.bw.ch.functions.deposit(trader.address, usdc * USDC), trader)

    def seed_pool(self, usdc: int) -> None:
        self.bw.send(self.bw.token.functions.approve(self.bw.pool.address, MAX_UINT), self.lp)
        self.bw.send(self.bw.pool.functions.deposit(usdc * USDC, self.lp.address), self.lp)

    def stake(self, usdc: int, who: LocalAccount | None = None) -> None:
        who = who or self.staker
        self.bw.send(self.bw.token.functions.approve(self.bw.fund.address, MAX_UINT), who)
        self.bw.send(self.bw.fund.functions.deposit(usdc * USDC, who.address), who)

    def set_price(self, market: str, price: float | int) -> None:
        answer = round(price * 10**8)
        self.bw.send(self.bw.feeds[market].functions.updateAnswer(answer), self.admin)

    def price_wad(self, market: str) -> int:
        return int(self.bw.oracle.functions.priceWad(self.bw.market_id(market)).call())

    def trade(self, trader: LocalAccount, market: str, size: float, slippage: float = 0.05) -> Any:
        size_wad = round(size * WAD)
        price = self.price_wad(market)
        limit = price * (1 + slippage) if size_wad > 0 else price * (1 - slippage)
        fn = self.bw.ch.functions.trade(self.bw.market_id(market), size_wad, int(limit))
        return self.bw.send(fn, trader)

    def warp(self, seconds: int) -> None:
        w3 = self.bw.w3
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def refresh_prices(self) -> None:
        """Re-publishes every feed's latest answer now (after a warp past the heartbeat)."""
        for feed in self.bw.feeds.values():
            answer = feed.functions.latestAnswer().call()
            self.bw.send(feed.functions.updateAnswer(answer), self.admin)

    def assert_conserved(self) -> invariants.ConservationReport:
        report = invariants.check(self.bw)
        assert report.ok, report.as_dict()
        return report


@pytest.fixture
def protocol(bw: Bulwark) -> Protocol:
    return Protocol(
        bw=bw,
        admin=dev_account(0),
        lp=dev_account(1),
        staker=dev_account(2),
        keeper=dev_account(3),
        traders=[dev_account(i) for i in range(4, 10)],
    )
