"""Shared fixtures: one real Anvil node and one deployment per test session, and the world on them
(bulwark/devnet/world.py). Every test runs inside an EVM snapshot that is reverted afterwards, so tests
neither see nor leave each other's state, and with the chain's clock pinned: each block one second after
the last, so that what accrues between two transactions does not depend on the machine's load."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from bulwark.chain.contracts import Bulwark, Deployment, connect, dev_account
from bulwark.devnet import compiler
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World

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
    """Reverts the chain after each test that touched it; the clock is pinned meanwhile."""
    if "w3" not in request.fixturenames and "bw" not in request.fixturenames:
        yield
        return
    world = World(request.getfixturevalue("anvil"), request.getfixturevalue("bw"))
    with world.reverted(), world.pinned_time():
        yield


@pytest.fixture
def protocol(anvil: AnvilNode, bw: Bulwark) -> World:
    """The session's deployment with its dev accounts by role (admin, lp, staker, keeper, six
    traders)."""
    return World(anvil, bw)
