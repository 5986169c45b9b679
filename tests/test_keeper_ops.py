"""The keeper as an operator runs it: simulation in the block a transaction can be mined in, oracle
refusals told apart from lost races, a stale market visible in gauges and /healthz, a hung node
noticed within a few block intervals, a chain reset stopped with one line and exit code 4, one
keeper per signer and chain, state outside the checkout, and the command line's units.

The book is the fault tests': six ETH longs of 500 USDC from 2.0 to 3.0 ETH at 3,000; a move to
2,850 makes the larger ones liquidatable (none bankrupt), one to 2,400 makes every one bankrupt."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support import Book, crash_book, own_chain, reverted, seeded_book, wait_for

from bulwark import cli
from bulwark.chain.contracts import WAD, Bulwark, BulwarkError, connect, dev_account
from bulwark.core.logs import LOGGER_NAME
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import EXIT_CHAIN_RESET, Keeper
from bulwark.keeper.index import get_block

KEEPER = dev_account(3)
OTHER = dev_account(5)
CRASH_PRICE = 2_850


@pytest.fixture(scope="module")
def shared() -> Iterator[Book]:
    def traders(chain: World) -> list[str]:
        book = crash_book(chain, 6, salt="ops", margin=500, smallest=2.0, largest=3.0)
        return [t.address for t in book]

    with seeded_book(traders) as b:
        yield b


@pytest.fixture
def book(shared: Book) -> Iterator[Book]:
    with reverted(shared) as b:
        yield b


class Records(logging.Handler):
    """The keeper's log records (message, level and fields) while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, msg: str) -> list[dict[str, Any]]:
        return [
            dict(getattr(r, "fields", {}), level=r.levelname)
            for r in self.records
            if r.getMessage() == msg
        ]

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def logs() -> Iterator[Records]:
    logger = logging.getLogger(LOGGER_NAME)
    handler = Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def settings(**changes: Any) -> KeeperSettings:
    base: dict[str, Any] = {
        "poll_interval": 0.1,
        "backoff_initial": 0.1,
        "backoff_max": 0.4,
        "fund_watch_interval": 1.0,
        "metrics_interval": 0.5,
        "receipt_timeout": 10.0,
    }
    return KeeperSettings(**(base | changes))


def crash(chain: World, traders: list[str], price: float = CRASH_PRICE) -> tuple[int, list[str]]:
    update = int(chain.set_price("ETH-USD", price)["blockNumber"])
    healths = chain.bw.ch.functions.healthsOf(traders).call(block_identifier=update)
    doomed = [a for a, h in zip(traders, healths, strict=True) if h[3]]
    assert doomed
    return update, doomed


def send_price_unmined(chain: World, price: float) -> str:
    """A feed update sent to a node that does not mine it yet: it waits in the pending block."""
    fn = chain.bw.feeds["ETH-USD"].functions.updateAnswer(round(price * 10**8))
    tx = fn.build_transaction(
        {
            "from": chain.admin.address,
            "nonce": chain.w3.eth.get_transaction_count(chain.admin.address, "pending"),
            "gas": 200_000,
        }
    )
    return chain.w3.eth.send_raw_transaction(chain.admin.sign_transaction(tx).raw_transaction).hex()


def metric(keeper: Keeper, name: str, **labels: str) -> float:
    value = keeper.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def liquidate_at(chain: World, account: str, stamp: int) -> dict[str, Any]:
    """An eth_call of `liquidate` on the pending state, in a block stamped `stamp`."""
    data = chain.bw.ch.functions.liquidate(account, 0)._encode_transaction_data()
    call = {"from": KEEPER.address, "to": chain.bw.ch.address, "data": data}
    number = hex(chain.w3.eth.block_number + 1)
    reply: dict[str, Any] = chain.w3.provider.make_request(  # type: ignore[assignment]
        "eth_call", [call, "pending", {}, {"number": number, "time": hex(stamp)}]
    )
    return reply


# ---------------------------------------------------------------------------- simulation time


def test_a_price_update_waiting_in_the_pending_block_does_not_hold_liquidations_back(
    book: Book, logs: Records
) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    update, doomed = crash(chain, traders)

    # given a node whose next block is stamped five seconds after the head and holds the next
    # price update (the same price again), which a simulation one second past the head finds stale
    head = get_block(chain.w3)
    chain.rpc("evm_setAutomine", False)
    chain.rpc("evm_setNextBlockTimestamp", head.timestamp + 5)
    send_price_unmined(chain, CRASH_PRICE)
    early = liquidate_at(chain, doomed[0], head.timestamp + 1)
    assert "error" in early
    assert str(chain.bw.errors.decode(early["error"]["data"])).startswith("OracleStalePrice")

    # when the keeper's pass runs while the update waits, and the node then mines every second
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(keeper.run_once()), daemon=True)
    worker.start()
    wait_for(lambda: keeper.sender.pending or not worker.is_alive(), 30, what="the batch sent")
    assert chain.w3.eth.block_number == head.number  # sent before the update was mined
    chain.interval_mining(1)
    worker.join(timeout=60)
    chain.automine()

    # then it sent at once and liquidated every account; no refusal, no lost race
    (result,) = done
    assert {a for a, _ in result.liquidated} == set(doomed)
    assert result.oracle_refusals == 0 and result.races_lost == 0
    assert metric(keeper, "bulwark_keeper_races_lost_total") == 0
    blocks = {e["blockNumber"] for e in chain.events("Liquidated", update)}
    assert blocks == {head.number + 1}
    assert not logs.named("not sending: the oracle refuses the price in the simulation")


def test_an_oracle_refusal_in_the_simulation_is_not_a_lost_race(book: Book, logs: Records) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    _, doomed = crash(chain, traders)
    # given a price fresh at the head that its heartbeat no longer covers in the next block
    feed = chain.bw.feeds["ETH-USD"]
    updated_at = int(feed.functions.latestRoundData().call()[3])
    heartbeat = int(chain.bw.oracle.functions.feedConfig(0).call()[1])
    chain.rpc("evm_setAutomine", False)
    chain.rpc("evm_setNextBlockTimestamp", updated_at + heartbeat + 30)

    # when the keeper runs a pass, twice
    first = keeper.run_once()
    second = keeper.run_once()
    chain.rpc("evm_mine")  # the stamped block, so that no later block inherits its time
    chain.automine()

    # then nothing is sent, each refusal is counted as the oracle's, per market, not as a race
    assert first.sent == [] and second.sent == []
    assert set(first.liquidatable) == set(doomed)
    assert first.oracle_refusals == len(doomed) and first.races_lost == 0
    assert metric(keeper, "bulwark_keeper_oracle_refusals_total", market="ETH-USD") == 2 * len(
        doomed
    )
    assert metric(keeper, "bulwark_keeper_races_lost_total") == 0
    # and the warning is logged once, not once per entry and pass
    warned = logs.named("not sending: the oracle refuses the price in the simulation")
    assert len(warned) == 1 and warned[0]["market"] == "ETH-USD"
    assert "OracleStalePrice" in warned[0]["error"]


# ---------------------------------------------------------------------------- stale market


def test_a_stale_market_sets_gauges_degrades_health_and_warns_once(
    book: Book, logs: Records
) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    assert keeper.health.status()[1]["status"] == "ok"
    # given ETH-USD's feed silent past its heartbeat (BTC-USD republished)
    heartbeat = int(chain.bw.oracle.functions.feedConfig(0).call()[1])
    chain.warp(heartbeat + 60)
    btc = chain.bw.feeds["BTC-USD"]
    chain.send(btc.functions.updateAnswer(btc.functions.latestAnswer().call()), chain.admin)

    # when three passes run
    results = [keeper.run_once() for _ in range(3)]

    # then the gauges say which market and how many accounts went unscreened, /healthz is
    # degraded, and the warning is printed once
    assert all(r.unscreened == len(traders) for r in results)
    assert metric(keeper, "bulwark_keeper_market_stale", market="ETH-USD") == 1
    assert metric(keeper, "bulwark_keeper_market_stale", market="BTC-USD") == 0
    assert metric(keeper, "bulwark_keeper_unscreened_accounts") == len(traders)
    healthy, body = keeper.health.status()
    assert not healthy and body["status"] == "degraded"
    assert any("ETH-USD" in reason for reason in body["degraded"])
    warned = logs.named("market price stale or invalid: its accounts are not screened")
    assert len(warned) == 1 and warned[0]["market"] == "ETH-USD"

    # and a fresh price clears all of it, with one line
    feed = chain.bw.feeds["ETH-USD"]
    chain.send(feed.functions.updateAnswer(feed.functions.latestAnswer().call()), chain.admin)
    keeper.run_once()
    assert metric(keeper, "bulwark_keeper_market_stale", market="ETH-USD") == 0
    assert metric(keeper, "bulwark_keeper_unscreened_accounts") == 0
    assert keeper.health.status()[1]["status"] == "ok"
    assert len(logs.named("market price fresh again")) == 1


# ---------------------------------------------------------------------------- gas, units


def test_a_batch_no_checked_limit_fits_gets_a_capped_fallback_not_the_block(
    book: Book, logs: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    _update, doomed = crash(chain, traders)
    # given a node whose eth_call of the batch liquidates every entry only at the block's limit
    head = get_block(chain.w3)
    count = keeper.liquidator.count

    def short_below_the_block(batches: list[Any], at: Any) -> None:
        count(batches, at)
        for b in batches:
            if b.gas < head.gas_limit:
                b.count = 0

    monkeypatch.setattr(keeper.liquidator, "count", short_below_the_block)
    # when the keeper liquidates
    result = keeper.run_once()
    # then the batch went out with at most four times its predicted limit (plus 3%), said so,
    # and liquidated everyone
    assert {a for a, _ in result.liquidated} == set(doomed)
    (sent,) = logs.named("liquidating")
    assert sent["gas_source"] == "fallback: 4x predicted"
    (fallback,) = logs.named(
        "batch: no checked gas limit below the block's fitted; capped fallback"
    )
    assert sent["gas"] == fallback["gas"] * 10_300 // 10_000
    assert fallback["gas"] == 4 * fallback["predicted"] < head.gas_limit // 10
    tx = chain.w3.eth.get_transaction(result.transactions[0])
    assert tx["gas"] == sent["gas"]


def test_log_lines_and_the_pass_report_speak_human_units_and_count_what_the_fund_paid(
    book: Book, logs: Records
) -> None:
    chain, traders = book.chain, book.traders
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    update, _doomed = crash(chain, traders, price=2_400)  # every one bankrupt
    result = keeper.run_once()
    settled = chain.events("ShortfallSettled", update)
    paid = sum(int(e["args"]["coveredWad"]) for e in settled)
    assert paid > 0 and result.shortfall_covered_wad == paid
    summary = result.summary()
    assert Decimal(summary["fund_paid_usd"]) * WAD == result.fund_paid_wad
    # every amount in a log line is a decimal string in human units
    rewards = {int(e["args"]["rewardWad"]) for e in chain.events("Liquidated", update)}
    logged = logs.named("liquidated")
    assert logged and {Decimal(x["reward"]) * WAD for x in logged} == rewards
    assert all(Decimal(x["reward"]) < 1_000_000 for x in logged)
    assert {Decimal(x["fund_paid"]) * WAD for x in logs.named("shortfall settled")} == {
        int(e["args"]["coveredWad"]) for e in settled
    }
    assert [x["price"] for x in logs.named("oracle update")][-1] == "2400"
    fees = [Decimal(x["max_fee_gwei"]) for x in logs.named("sent")]
    assert fees and all(0 < fee < 1_000 for fee in fees)


# ---------------------------------------------------------------------------- signer lock


def test_a_second_keeper_on_the_same_key_and_chain_is_refused(book: Book, tmp_path: Path) -> None:
    chain = book.chain
    first = Keeper(chain.bw, KEEPER, settings(state_dir=str(tmp_path)))
    first.startup()
    try:
        # a second keeper with the same key is refused with a line saying why
        second = Keeper(chain.bw, KEEPER, settings(state_dir=str(tmp_path)))
        with pytest.raises(BulwarkError, match=r"another keeper .* already runs as") as info:
            second.startup()
        assert str(os.getpid()) in str(info.value) and KEEPER.address in str(info.value)
        second.shutdown()
        # one with another key starts
        other = Keeper(chain.bw, OTHER, settings(state_dir=str(tmp_path)))
        other.startup()
        other.shutdown()
        # the checkpoint lives in the state directory, named by chain, genesis and deployment
        assert first.index.path is not None and first.index.path.parent.parent == tmp_path
        genesis = chain.w3.eth.get_block(0)["hash"].to_0x_hex()
        assert first.index.path.name.startswith(f"31337-{genesis[2:14]}-")
    finally:
        first.shutdown()
    # once the first stopped, the key is free again
    again = Keeper(chain.bw, KEEPER, settings(state_dir=str(tmp_path)))
    again.startup()
    again.shutdown()


# ---------------------------------------------------------------------------- the command line


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("BULWARK_RPC", "BULWARK_DEPLOYMENT", "BULWARK_PRIVATE_KEY", "BULWARK_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield tmp_path
    logger = logging.getLogger(LOGGER_NAME)  # the CLI's handler writes to a captured stream
    for handler in list(logger.handlers):
        if getattr(handler, "_bulwark", False):
            logger.removeHandler(handler)


def test_keeper_once_json_prints_decimal_strings_and_metrics_port_0_is_off(
    book: Book, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain, traders = book.chain, book.traders
    deployment = chain.bw.deployment.save(cli_env / "deployment.json")
    update, doomed = crash(chain, traders, price=2_400)
    code, out, err = run_cli(
        capsys,
        "keeper", "--once", "--json", "--metrics-port", "0", "--dev-account", "3",
        "--rpc", chain.node.rpc_url, "--deployment", str(deployment),
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    # every amount is an exact decimal string; counts are numbers
    paid = sum(int(e["args"]["coveredWad"]) for e in chain.events("ShortfallSettled", update))
    assert paid > 0 and Decimal(data["fund_paid"]) * WAD == paid
    for key in ("fund_paid", "shortfall_covered", "bad_debt_covered", "socialized", "bad_debt"):
        assert isinstance(data[key], str)
        Decimal(data[key])
    assert all(isinstance(step["haircut"], str) for step in data["adl_steps"])
    assert {x["account"] for x in data["liquidated"]} == set(doomed)
    assert isinstance(data["races_lost"], int)
    # the state went to the user's state directory, not the checkout
    assert list((cli_env / "state" / "bulwark" / "keeper" / "checkpoints").glob("31337-*.json"))
    assert "metrics listening" not in err


# ---------------------------------------------------------------------------- chain reset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_chain_reset_stops_the_keeper_with_one_line_and_exit_4(
    tmp_path: Path, logs: Records, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    node = AnvilNode(port=port).start()
    try:
        w3 = connect(node.rpc_url)
        bw = Bulwark(w3, deploy_all(w3, dev_account(0)))
        deployment = bw.deployment.save(tmp_path / "deployment.json")
        keeper = Keeper(bw, KEEPER, settings(state_dir=str(tmp_path / "state")))
        code: list[int] = []
        runner = threading.Thread(target=lambda: code.append(keeper.run_forever()), daemon=True)
        runner.start()
        wait_for(lambda: keeper.last_result is not None, 30, what="the first pass")
        for _ in range(3):
            node.rpc("evm_mine")
        top = w3.eth.block_number
        wait_for(
            lambda: keeper.last_result is not None and keeper.last_result.block == top,
            30,
            what="a pass at the head",
        )

        # when the node is replaced by a fresh, empty chain on the same port, which mines on
        node.stop()
        node = AnvilNode(port=port).start()
        for _ in range(8):
            node.rpc("evm_mine")
        runner.join(timeout=60)

        # then the keeper stopped with exit code 4 and one critical line, not a reorg or errors
        assert code == [EXIT_CHAIN_RESET]
        critical = [r for r in logs.records if r.levelno >= logging.CRITICAL]
        assert len(critical) == 1
        assert critical[0].getMessage() == f"chain reset: no ClearingHouse at {bw.ch.address}"
        assert "reorg: rewinding the index" not in logs.messages()
        assert "job failed" not in logs.messages()
        _healthy, body = keeper.health.status()
        assert body["status"] == "halted"

        # and started again on that chain, the command line says the same with the same code
        rc, _, err = run_cli(
            capsys,
            "keeper", "--once", "--dev-account", "3",
            "--rpc", node.rpc_url, "--deployment", str(deployment),
        )  # fmt: skip
        assert rc == EXIT_CHAIN_RESET
        assert err.strip().splitlines() == [
            f"bulwark keeper: chain reset: no ClearingHouse at {bw.ch.address} on the node's "
            f"chain (deployment file {deployment}): deploy again or pass the right --deployment"
        ]
    finally:
        node.stop()


# ---------------------------------------------------------------------------- hung node


def rpc_errors(keeper: Keeper) -> float:
    return sum(
        sample.value
        for family in keeper.metrics.registry.collect()
        if family.name == "bulwark_keeper_rpc_errors"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def test_a_hung_node_is_noticed_within_a_few_blocks_and_health_recovers(logs: Records) -> None:
    with own_chain() as chain:
        keeper = Keeper(
            chain.bw,
            KEEPER,
            settings(rpc_timeout=1.0, late_pass_blocks=3, metrics_interval=0.3),
        )
        chain.interval_mining(1)
        stopped = False
        with_daemon = threading.Thread(target=keeper.run_forever, daemon=True)
        try:
            with_daemon.start()
            wait_for(
                lambda: keeper.block_interval is not None and keeper.last_result is not None,
                30,
                what="a pass and the block interval",
            )
            wait_for(lambda: keeper.health.status()[0], 30, what="healthy")
            # given the node stops answering (SIGSTOP: the port still accepts connections)
            os.kill(chain.node.pid, signal.SIGSTOP)
            stopped = True
            # then within a few block intervals: node down, passes late, /healthz not ok
            wait_for(
                lambda: metric(keeper, "bulwark_keeper_passes_late") == 1,
                30,
                what="passes late",
            )
            healthy, body = keeper.health.status()
            assert not healthy and body["node_up"] is False
            assert metric(keeper, "bulwark_keeper_node_up") == 0
            assert logs.named("node unreachable; backing off")
            assert logs.named("passes late: no pass completed for several blocks")
            assert rpc_errors(keeper) >= 1
            # when it answers again, the keeper carries on and health recovers
            os.kill(chain.node.pid, signal.SIGCONT)
            stopped = False
            wait_for(lambda: keeper.health.status()[0], 30, what="healthy again")
            assert metric(keeper, "bulwark_keeper_passes_late") == 0
            count = keeper.metrics.registry.get_sample_value(
                "bulwark_keeper_rpc_latency_seconds_count", {"method": "eth_getBlockByNumber"}
            )
            assert count is not None and count > 0
        finally:
            if stopped:
                os.kill(chain.node.pid, signal.SIGCONT)
            keeper.stop()
            with_daemon.join(timeout=30)
            chain.automine()


def test_head_age_is_not_clamped_when_chain_time_runs_ahead(book: Book) -> None:
    chain = book.chain
    keeper = Keeper(chain.bw, KEEPER, settings())
    keeper.run_once()
    head = get_block(chain.w3)
    chain.rpc("evm_mine", head.timestamp + 3_600)
    keeper.refresh_metrics()
    assert metric(keeper, "bulwark_keeper_head_age_seconds") < -1_000


def test_state_and_deployment_defaults_stay_out_of_the_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bulwark.chain.contracts import Deployment
    from bulwark.core import paths

    project, state = tmp_path / "project", tmp_path / "state"
    monkeypatch.setenv("BULWARK_HOME", str(project))
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    assert paths.keeper_state_dir() == state / "bulwark" / "keeper"
    # a local chain's deployment stays in the project; any other goes to the state directory
    assert Deployment.default_path(31337) == project.resolve() / "deployments" / "31337.json"
    assert Deployment.default_path(11155111) == state / "bulwark" / "deployments" / "11155111.json"
    # unless one from before already sits in the project
    legacy = project / "deployments" / "10.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text("{}")
    assert Deployment.default_path(10) == legacy.resolve()
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.state_dir() == tmp_path / "home" / ".local" / "state" / "bulwark"
