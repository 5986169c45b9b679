"""`bulwark` as a person runs it: the installed console script in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bulwark.chain.contracts import Bulwark, connect

BULWARK = Path(sys.executable).parent / "bulwark"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")}
    env.update(extra)
    return env


@pytest.fixture
def chain_env(bw: Bulwark, tmp_path: Path) -> dict[str, str]:
    path = bw.deployment.save(tmp_path / "deployment.json")
    rpc = str(bw.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    return _env(BULWARK_RPC=rpc, BULWARK_DEPLOYMENT=str(path))


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BULWARK), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_status_json_from_the_environment(chain_env: dict[str, str]) -> None:
    done = run(["status", "--json"], chain_env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [m["name"] for m in data["markets"]] == ["ETH-USD", "BTC-USD"]
    assert data["conservation"]["ok"] is True


def test_bad_number_is_one_line_without_traceback(chain_env: dict[str, str]) -> None:
    done = run(["trade", "open", "ETH-USD", "abc", "--dev-account", "4"], chain_env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == "bulwark: error: SIZE 'abc' is not a number"


def test_node_serves_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen([str(BULWARK), "node", "--port", "0", "--json"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        text = ""
        deadline = time.monotonic() + 60
        while not text.rstrip().endswith("}") and time.monotonic() < deadline:
            text += proc.stdout.readline()
        info = json.loads(text)
        assert connect(info["rpc_url"]).eth.chain_id == info["chain_id"] == 31337
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "node stopped" in (proc.stderr.read() if proc.stderr else "")
        with pytest.raises(ProcessLookupError):
            os.kill(info["pid"], 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


ROOT = Path(__file__).resolve().parent.parent


def test_deploy_script_writes_a_deployment(bw: Bulwark, tmp_path: Path) -> None:
    target = tmp_path / "scripted.json"
    rpc = str(bw.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "deploy.py"),
            "--rpc",
            rpc,
            "--deployment",
            str(target),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "deployment file:" in done.stdout
    assert bw.w3.eth.get_code(json.loads(target.read_text())["contracts"]["ClearingHouse"])


def test_trade_script_functions_sign_with_the_dev_account_variable(
    chain_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in chain_env.items():
        if key.startswith("BULWARK_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("BULWARK_DEV_ACCOUNT", "4")
    monkeypatch.syspath_prepend(str(ROOT))
    from scripts import trade

    assert trade.deposit("1000") == 0
    assert trade.main("withdraw", "250") == 0
    out = capsys.readouterr().out
    assert "deposited 1,000.00" in out and "withdrew 250.00" in out and "margin 750.00" in out
    assert trade.close("ETH-USD") == 1
    assert "has no position in ETH-USD" in capsys.readouterr().err


def test_pool_and_fund_scripts_sign_with_the_account_index_variable(
    chain_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for key, value in chain_env.items():
        if key.startswith("BULWARK_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("BULWARK_KEYSTORE_PASSWORD", "test-only")
    monkeypatch.setenv("BULWARK_KEYSTORE_DIR", str(tmp_path / "keys"))
    monkeypatch.syspath_prepend(str(ROOT))
    from scripts import _bulwark, fund, pool

    assert _bulwark.bulwark("accounts", "create", "2", "--usdc", "3000") == 0
    monkeypatch.setenv("BULWARK_ACCOUNT_INDEX", "1")
    assert pool.deposit("1000") == 0
    assert fund.stake("500") == 0
    assert fund.status() == 0
    out = capsys.readouterr().out
    assert "deposited 1,000.00 mUSDC" in out and "staked 500.00 mUSDC" in out
    address = out.split("sign with one")[0].splitlines()[-1].split()[-1]
    assert f"{address}: 500 shares" in out
    assert pool.withdraw("max") == 1  # locked for the pool's cooldown
    assert "locked after a deposit" in capsys.readouterr().err
