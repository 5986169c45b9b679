"""Surviving restarts: the keeper killed with SIGKILL and started again resumes from its checkpoint and
misses nothing; SIGTERM lets it finish and exit 0; the node stopped and restarted with its state
mid-run does not crash the keeper, which carries on once the node is back."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import crash_book, own_chain, wait_for

from bulwark.chain.contracts import Bulwark, connect, dev_account
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import Keeper

KEEPER = dev_account(3)
DAEMON = """
import argparse, sys
from bulwark.chain.contracts import Bulwark, Deployment, connect, dev_account
from bulwark.cli.keeper import run_from_cli
bw = Bulwark(connect(sys.argv[1]), Deployment.load(sys.argv[2]))
args = argparse.Namespace(once=False, config=sys.argv[3], metrics_port=None, log_format="json")
sys.exit(run_from_cli(bw, dev_account(3), args))
"""


class DaemonProcess:
    """`run_from_cli` in a child process, its JSON log lines kept in a file."""

    def __init__(self, rpc_url: str, deployment: Path, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        argv = [sys.executable, "-c", DAEMON, rpc_url, str(deployment), str(config)]
        env = dict(os.environ, XDG_STATE_HOME=str(log.parent / "state"))  # the lock, not in ~
        self.proc = subprocess.Popen(
            argv, stdout=self._out, stderr=self._out, cwd=Path(__file__).parents[1], env=env
        )

    def lines(self) -> list[dict[str, object]]:
        out = []
        for raw in self.log.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                out.append({"msg": raw})
        return out

    def logged(self, msg: str) -> list[dict[str, object]]:
        return [line for line in self.lines() if line.get("msg") == msg]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def test_killed_keeper_resumes_from_its_checkpoint_and_misses_nothing(tmp_path: Path) -> None:
    with own_chain() as chain:
        chain.seed_pool(500_000)
        chain.stake(20_000)
        deployment = chain.bw.deployment.save(tmp_path / "deployment.json")
        checkpoint = tmp_path / "keeper" / "checkpoint.json"
        config = tmp_path / "keeper.toml"
        config.write_text(
            f'[keeper]\ncheckpoint_file = "{checkpoint}"\npoll_interval = 0.1\n'
            "checkpoint_interval = 0.2\n"
        )
        log = tmp_path / "keeper.log"

        # given a keeper daemon that has checkpointed the first traders
        first = DaemonProcess(chain.node.rpc_url, deployment, config, log)
        try:
            early = [
                t.address for t in crash_book(chain, 4, salt="early", smallest=4.0, largest=5.5)
            ]
            wait_for(
                lambda: (
                    checkpoint.is_file()
                    and set(early) <= set(json.loads(checkpoint.read_text())["accounts"])
                ),
                20,
                what="the checkpoint to list the early traders",
            )
            # when it is killed outright
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        finally:
            first.close()
        killed_at = json.loads(checkpoint.read_text())["block"]

        # and accounts appear and become liquidatable while it is dead
        late = [t.address for t in crash_book(chain, 4, salt="late", smallest=4.0, largest=5.5)]
        update = chain.set_price("ETH-USD", 2850)["blockNumber"]
        doomed = chain.liquidatable(early + late)
        assert set(doomed) & set(late) and set(doomed) & set(early)

        # then a restarted keeper resumes from the checkpoint and liquidates old and new accounts alike
        second = DaemonProcess(chain.node.rpc_url, deployment, config, log)
        try:
            wait_for(
                lambda: not chain.liquidatable(early + late), 30, what="liquidations after restart"
            )
            resumed = second.logged("index resumed from checkpoint")
            assert resumed and resumed[-1]["block"] == killed_at
            liquidated = {e["args"]["account"] for e in chain.events("Liquidated", update)}
            assert set(doomed) <= liquidated
            assert all(
                e["args"]["keeper"] == KEEPER.address for e in chain.events("Liquidated", update)
            )
            wait_for(
                lambda: set(late) <= set(json.loads(checkpoint.read_text())["accounts"]),
                10,
                what="the checkpoint to list the late traders",
            )

            # and SIGTERM lets it finish and exit cleanly, checkpoint written
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(timeout=20) == 0
            stopped = second.logged("keeper stopped")
            assert stopped and stopped[-1]["exit_code"] == 0
            assert json.loads(checkpoint.read_text())["block"] >= update
        finally:
            second.close()
        assert "Traceback" not in log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[World]:
    node = AnvilNode(port=_free_port(), state_file=tmp_path / "anvil-state.json").start()
    try:
        w3 = connect(node.rpc_url)
        yield World(node, Bulwark(w3, deploy_all(w3, dev_account(0))))
    finally:
        node.stop()


def test_keeper_survives_the_node_stopping_and_coming_back(restartable: World) -> None:
    chain = restartable
    chain.seed_pool(500_000)
    chain.stake(20_000)
    traders = [t.address for t in crash_book(chain, 6, smallest=4.0, largest=5.5)]
    keeper = Keeper(
        chain.bw,
        KEEPER,
        KeeperSettings(
            poll_interval=0.1,
            backoff_initial=0.2,
            backoff_max=0.5,
            fund_watch_interval=0.5,
            metrics_interval=0.5,
        ),
    )
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(keeper.run_forever()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")

        # when the node stops (writing its state) the keeper backs off and stays up
        chain.node.stop()
        wait_for(lambda: keeper.metrics.node_up._value.get() == 0, 10, what="the outage noticed")
        assert keeper.health.status()[0] is False and thread.is_alive()
        assert keeper.breaker.failures == 0  # an outage is not a failure

        # when the node comes back with its state and the price falls
        chain.node.start()
        before = keeper.last_result.block if keeper.last_result else 0
        update = chain.set_price("ETH-USD", 2850)["blockNumber"]
        assert update > before
        healths = chain.bw.ch.functions.healthsOf(traders).call(block_identifier=update)
        doomed = [a for a, h in zip(traders, healths, strict=True) if h[3]]
        assert doomed

        # then the keeper reconnected by itself and liquidated them
        wait_for(lambda: not chain.liquidatable(traders), 30, what="liquidations after the outage")
        assert {e["args"]["account"] for e in chain.events("Liquidated", update)} >= set(doomed)
        wait_for(lambda: keeper.health.status()[0], 10, what="healthy again")
        assert thread.is_alive() and keeper.exit_code == 0
    finally:
        keeper.stop()
        thread.join(timeout=30)
    assert codes == [0]


def test_keeper_started_while_the_node_is_down_waits_for_it(restartable: World) -> None:
    # given a node that is down when the keeper starts
    chain = restartable
    chain.node.stop()
    keeper = Keeper(
        chain.bw, KEEPER, KeeperSettings(poll_interval=0.1, backoff_initial=0.2, backoff_max=0.4)
    )
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(keeper.run_forever()), daemon=True)
    thread.start()
    try:
        # then it waits rather than exiting
        wait_for(lambda: keeper.backoff.active, 10, what="the startup backoff")
        assert thread.is_alive() and keeper.last_result is None
        # and once the node is up it starts and passes
        chain.node.start()
        wait_for(lambda: keeper.last_result is not None, 20, what="the first pass")
    finally:
        keeper.stop()
        thread.join(timeout=30)
    assert codes == [0]


def test_run_from_cli_reports_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bw: Bulwark
) -> None:
    import argparse

    from bulwark.cli.keeper import run_from_cli

    bad = tmp_path / "k.toml"
    bad.write_text("bump_bps = 100\n")
    args = argparse.Namespace(once=True, config=str(bad), metrics_port=None, log_format=None)
    assert run_from_cli(bw, KEEPER, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bulwark keeper: bump_bps must be at least 1250 (12.5%), got 100"]
