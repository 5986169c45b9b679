"""The keeper as an operator installs it: a wheel in a fresh virtualenv, outside the checkout, with
no repository, no Node and no compiler on the path, talking to a deployment through its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bulwark.chain.contracts import dev_account
from bulwark.devnet import compiler
from bulwark.devnet.world import World

REPO = Path(__file__).resolve().parent.parent


def _stale(packaged: Path, built: dict[str, Any]) -> list[str]:
    """The contracts whose entry in a packaged file differs from the build (or is on one side)."""
    shipped = json.loads(packaged.read_text())
    return sorted(n for n in built.keys() | shipped.keys() if built.get(n) != shipped.get(n))


def test_packaged_abis_match_the_build(artifacts: dict[str, compiler.Artifact]) -> None:
    """bulwark/core/abi.json is what the contracts compile to now (`python -m bulwark.devnet.compiler --abis`)."""
    stale = _stale(compiler.PACKAGED_ABIS, compiler.abis_of(artifacts))
    assert not stale, f"bulwark/core/abi.json differs from the build for {stale}: run `make abi`"


def test_packaged_bytecode_matches_the_build(artifacts: dict[str, compiler.Artifact]) -> None:
    """bulwark/core/bytecode.json is what the contracts compile to now (`make abi` rewrites it)."""
    stale = _stale(compiler.PACKAGED_BYTECODE, compiler.bytecodes_of(artifacts))
    assert not stale, (
        f"bulwark/core/bytecode.json differs from the build for {stale}: run `make abi`"
    )
    shipped = json.loads(compiler.PACKAGED_BYTECODE.read_text())
    assert {"ClearingHouse", "InsuranceFund", "LiquidityPool", "LiquidationLogic"} <= set(shipped)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout installed into it."""
    work = tmp_path_factory.mktemp("install")
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("bulwark-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run(
        [*pip, str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return venv


def test_installed_wheel_holds_no_checkout_paths(installed: Path) -> None:
    (site,) = installed.glob("lib/python3*/site-packages")
    package = site / "bulwark"
    assert (package / "core" / "abi.json").is_file()
    assert (package / "core" / "errors.json").is_file()
    assert (package / "core" / "bytecode.json").is_file()
    assert not (site / "matplotlib").exists(), "plots are the sim extra, not the keeper's install"
    assert not (site / "contracts").exists()
    assert not any(site.glob("*.egg-link")), "an editable install would read the checkout"


def test_installed_bulwark_works_from_a_deployment_file_alone(
    installed: Path, protocol: World, tmp_path: Path
) -> None:
    p = protocol
    p.seed_pool(1_000_000)
    trader = p.traders[0]
    p.fund_trader(trader, 5_000)
    deployment = p.bw.deployment.save(tmp_path / "deployment.json")
    rpc = str(p.bw.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    # Only the virtualenv on the path: no node, no solc; the working directory is not a project.
    env = {
        "PATH": str(installed / "bin"),
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "BULWARK_RPC": rpc,
        "BULWARK_DEPLOYMENT": str(deployment),
        "BULWARK_PRIVATE_KEY": trader.key.hex(),
    }
    if "SYSTEMROOT" in os.environ:  # pragma: no cover - Windows only
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]

    def bulwark(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(installed / "bin" / "bulwark"), *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done

    status = bulwark("status", "--json")
    assert {m["name"] for m in json.loads(status.stdout)["markets"]} >= {"ETH-USD", "BTC-USD"}

    bulwark("trade", "open", "ETH-USD", "0.5")
    size = p.bw.ch.functions.positionOf(trader.address, p.bw.market_id("ETH-USD")).call()[0]
    assert size == 5 * 10**17

    account = json.loads(bulwark("account", trader.address, "--json").stdout)
    assert account["address"].lower() == trader.address.lower()

    env["BULWARK_PRIVATE_KEY"] = dev_account(3).key.hex()
    bulwark("keeper", "--once", "--metrics-port", "0")

    # A deployment from the package's own bytecode: no sources, no solc, no Node.
    fresh = tmp_path / "fresh.json"
    env["BULWARK_PRIVATE_KEY"] = dev_account(0).key.hex()
    deployed = json.loads(bulwark("deploy", "--deployment", str(fresh), "--json").stdout)
    assert set(deployed["contracts"]) >= {"ClearingHouse", "InsuranceFund", "LiquidityPool"}
    assert len(p.bw.w3.eth.get_code(deployed["contracts"]["ClearingHouse"])) > 10_000
    fresh_status = json.loads(bulwark("status", "--deployment", str(fresh), "--json").stdout)
    assert {m["name"] for m in fresh_status["markets"]} >= {"ETH-USD", "BTC-USD"}
