"""`brownie run scripts/...` against the session Anvil, with Brownie from its own virtualenv.

eth-brownie 1.22 pins web3 7 while the keeper needs web3 8, so Brownie is never installed into the
project's environment: it goes into .venv/brownie on first use (about 20 s from PyPI), unless
BULWARK_BROWNIE names a `brownie` executable (see docs/brownie.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import toolvenv

from bulwark.chain.contracts import Bulwark
from bulwark.core import paths

BROWNIE_VERSION = "1.22.2"
ROOT = paths.project_root()
pytestmark = pytest.mark.skipif(
    toolvenv.brownie_cannot_run_scripts_here() is not None,
    reason=str(toolvenv.brownie_cannot_run_scripts_here()),
)


@pytest.fixture(scope="module")
def brownie() -> str:
    return str(
        toolvenv.tool("brownie", f"eth-brownie=={BROWNIE_VERSION}", "brownie", "BULWARK_BROWNIE")
    )


@pytest.fixture
def brownie_env(brownie: str, bw: Bulwark, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".solcx").mkdir(parents=True)
    (home / ".solcx" / "solc-v0.8.37").symlink_to(paths.solc_script())
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
    env.update(HOME=str(home), BULWARK_DEPLOYMENT=str(tmp_path / "deployment.json"))
    rpc = str(bw.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    added = subprocess.run(
        [brownie, "networks", "add", "Ethereum", "anvil-local", f"host={rpc}", "chainid=31337"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    return env


def brownie_run(brownie: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [brownie, "run", *args, "--network", "anvil-local"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_brownie_runs_the_deploy_and_trade_scripts(
    brownie: str, brownie_env: dict[str, str], bw: Bulwark
) -> None:
    deployed = brownie_run(brownie, brownie_env, "scripts/deploy.py")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    contracts = json.loads(Path(brownie_env["BULWARK_DEPLOYMENT"]).read_text())["contracts"]
    assert bw.w3.eth.get_code(contracts["ClearingHouse"])

    trader = {**brownie_env, "BULWARK_DEV_ACCOUNT": "4"}
    deposited = brownie_run(brownie, trader, "scripts/trade.py", "deposit", "1000")
    assert deposited.returncode == 0, deposited.stdout + deposited.stderr
    assert "deposited 1,000.00" in deposited.stdout

    refused = brownie_run(brownie, trader, "scripts/trade.py", "close", "ETH-USD")
    assert refused.returncode == 1
    assert "has no position in ETH-USD" in refused.stderr
