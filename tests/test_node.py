"""bulwark.devnet.node.AnvilNode: starts on a free port, answers, and never outlives its owner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bulwark.devnet.node import AnvilError, AnvilNode

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def test_node_starts_answers_and_stops() -> None:
    with AnvilNode() as node:
        assert node.is_running()
        assert node.port > 0
        assert node.rpc_url == f"http://127.0.0.1:{node.port}"
        assert int(node.rpc("eth_chainId"), 16) == 31337
        assert len(node.rpc("eth_accounts")) == 10
        pid = node.pid

    assert not node.is_running()
    assert _gone_within(pid, 5)


def test_two_nodes_at_once_get_different_ports() -> None:
    with AnvilNode() as first, AnvilNode() as second:
        assert first.port != second.port
        first.rpc("anvil_mine", "0x3")
        assert int(first.rpc("eth_blockNumber"), 16) == 3
        assert int(second.rpc("eth_blockNumber"), 16) == 0


def test_options_reach_anvil() -> None:
    with AnvilNode(chain_id=1337, accounts=3, balance=5, block_time=1) as node:
        accounts = node.rpc("eth_accounts")
        assert int(node.rpc("eth_chainId"), 16) == 1337
        assert len(accounts) == 3
        assert int(node.rpc("eth_getBalance", accounts[0], "latest"), 16) == 5 * 10**18


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "chain" / "state.json"
    with AnvilNode(state_file=state) as node:
        node.rpc("anvil_mine", "0x5")

    assert state.exists()
    with AnvilNode(state_file=state) as node:
        assert int(node.rpc("eth_blockNumber"), 16) == 5


def test_stop_is_idempotent_and_restart_works() -> None:
    node = AnvilNode()
    node.start()
    first_pid = node.pid
    node.stop()
    node.stop()
    node.start()
    try:
        assert node.pid != first_pid
        assert int(node.rpc("eth_chainId"), 16) == 31337
    finally:
        node.stop()
    assert _gone_within(first_pid, 5)


def test_bad_arguments_raise_with_anvil_output() -> None:
    with pytest.raises(AnvilError, match="no-such-flag"):
        AnvilNode(extra_args=("--no-such-flag",)).start()


def test_node_started_in_a_worker_thread_outlives_the_thread() -> None:
    """PDEATHSIG follows the forking thread; the launcher thread keeps it tied to the process."""
    node = AnvilNode()
    worker = threading.Thread(target=node.start)
    worker.start()
    worker.join()
    try:
        time.sleep(0.3)
        assert node.is_running()
        assert int(node.rpc("eth_chainId"), 16) == 31337
    finally:
        node.stop()


def test_crashed_session_leaves_no_anvil_running() -> None:
    child = textwrap.dedent(
        """
        import os, signal, sys
        from bulwark.devnet.node import AnvilNode

        node = AnvilNode().start()
        print(node.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == -9, result.stderr
    anvil_pid = int(result.stdout.strip())
    assert _gone_within(anvil_pid, 5), f"Anvil {anvil_pid} outlived its killed parent"


def test_normal_exit_without_stop_stops_anvil() -> None:
    child = textwrap.dedent(
        """
        from bulwark.devnet.node import AnvilNode

        node = AnvilNode().start()
        print(node.pid, flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert _gone_within(int(result.stdout.strip()), 5)


def test_anvil_binary_is_the_native_one() -> None:
    node = AnvilNode()
    binary = Path(node.command()[0])

    assert binary.name == "anvil" and "-linux-" in binary.parent.parent.name
    assert os.access(binary, os.X_OK)
    with open(binary, "rb") as handle:
        assert handle.read(4) == b"\x7fELF"  # not the npm wrapper script
