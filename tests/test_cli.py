"""`bulwark` in-process on the session Anvil: outputs (human and --json) and one-line errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import clear_cli_env

from bulwark import cli
from bulwark.chain.contracts import WAD, Bulwark, Deployment, dev_account
from bulwark.core.units import parse_wad
from bulwark.devnet.world import World
from bulwark.sim.stress import Outcome

TRADER, OTHER, LP, STAKER = 4, 5, 1, 2


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def data(self) -> Any:
        return json.loads(self.out)


@dataclass
class Cli:
    rpc: str
    deployment: Path
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str, chain: bool = True) -> Result:
        args = (
            [*argv, "--rpc", self.rpc, "--deployment", str(self.deployment)]
            if chain
            else list(argv)
        )
        code = cli.main(args)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str) -> Result:
        result = self(*argv)
        assert result.code == 0, result.err
        assert "Traceback" not in result.err
        return result

    def json(self, *argv: str) -> Any:
        return self.ok(*argv, "--json").data


@pytest.fixture
def run(
    bw: Bulwark, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    clear_cli_env(monkeypatch)
    path = bw.deployment.save(tmp_path / "deployment.json")
    rpc = bw.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    yield Cli(str(rpc), path, capsys)


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.code != 0
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---------------------------------------------------------------------------- argument handling


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = list(cli.iter_commands())
    for expected in (
        "node",
        "compile",
        "deploy",
        "trade deposit",
        "trade withdraw",
        "trade open",
        "trade close",
        "account",
        "pool deposit",
        "pool withdraw",
        "fund stake",
        "fund unstake",
        "fund claim",
        "fund status",
        "feed set",
        "feed replay",
        "status",
        "keeper",
        "stress",
        "demo",
    ):
        assert expected in commands
    for command in commands:
        assert cli.main([*command.split(), "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: bulwark {command}")
        assert "--rpc URL" in out and "--json" in out


def test_split_global_options_anywhere_and_negative_numbers() -> None:
    found, rest = cli.split_global_options(
        [
            "--rpc",
            "http://x",
            "trade",
            "open",
            "ETH-USD",
            "-2.5",
            "--json",
            "--dev-account=3",
            "--deployment",
            "d.json",
        ]
    )
    assert found == {"rpc": "http://x", "json": True, "dev_account": "3", "deployment": "d.json"}
    assert rest == ["trade", "open", "ETH-USD", "-2.5"]
    assert cli.split_global_options(["x", "-1e3", "-.5", "-2."])[1] == ["x", "-1000", "-0.5", "-2"]
    assert cli.split_global_options(["x", "--", "--json"]) == ({}, ["x", "--", "--json"])
    with pytest.raises(cli.UsageError, match="--rpc needs a value"):
        cli.split_global_options(["status", "--rpc"])


def test_global_options_before_and_after_the_command(run: Cli) -> None:
    before = cli.main(["--json", "--rpc", run.rpc, "--deployment", str(run.deployment), "status"])
    first = json.loads(run.capsys.readouterr().out)
    after = cli.main(["status", "--deployment", str(run.deployment), "--json", f"--rpc={run.rpc}"])
    second = json.loads(run.capsys.readouterr().out)
    assert before == after == 0
    assert first["markets"] == second["markets"]


# ---------------------------------------------------------------------------- trading


def test_trade_deposit_open_account_close_withdraw(run: Cli, protocol: World) -> None:
    protocol.seed_pool(500_000)
    dev = ("--dev-account", str(TRADER))
    deposited = run.json("trade", "deposit", "10000", *dev)
    assert deposited["margin"] == "10000" and deposited["wallet"] == "990000"

    opened = run.json("trade", "open", "ETH-USD", "2", *dev)
    assert opened["new_size"] == "2" and opened["price"] == "3000" and opened["fee"] == "3"
    assert parse_wad(opened["acceptable_price"]) == 3030 * WAD  # 1% default slippage

    account = run.json("account", *dev)
    assert account["address"] == dev_account(TRADER).address
    # funding accrues by the second on the open position: equity is 9,997 less a few wei of it
    assert 9997 * WAD - 10**12 < parse_wad(account["equity"]) <= 9997 * WAD
    assert account["maintenance_margin"] == "150"
    (position,) = account["positions"]
    assert position["side"] == "long" and position["entry_price"] == "3000"
    assert position["upnl"] == "0" and position["adl"]["lights"] == 0

    text = run.ok("account", dev_account(TRADER).address).out
    assert "ETH-USD" in text and "margin ratio 1.50%" in text

    closed = run.json("trade", "close", "ETH-USD", *dev)
    assert closed["new_size"] == "0" and closed["size_delta"] == "-2"
    withdrawn = run.json("trade", "withdraw", "max", *dev)
    assert 0 <= Decimal(withdrawn["margin"]) < Decimal("0.000001")  # dust below one token unit
    assert (
        withdrawn["tx"].startswith("0x") and len(withdrawn["tx"]) == 66 and withdrawn["block"] > 0
    )


def test_negative_size_opens_a_short_with_min_price(run: Cli, protocol: World) -> None:
    protocol.seed_pool(500_000)
    protocol.fund_trader(dev_account(TRADER), 10_000)
    short = run.json(
        "trade", "open", "ETH-USD", "-1.5", "--min-price", "2990", "--dev-account", "4"
    )
    assert short["new_size"] == "-1.5" and short["acceptable_price"] == "2990"
    text = run.ok("trade", "open", "BTC-USD", "-0.01", "--dev-account", "4").out
    assert text.startswith("opened: sold 0.01 BTC-USD at 60,000.00 (bound 59,400.00)")


def test_liquidation_price_is_where_the_chain_flips(run: Cli, protocol: World) -> None:
    p = protocol
    trader = dev_account(TRADER)
    p.seed_pool(500_000)
    p.fund_trader(trader, 1_000)
    p.trade(trader, "ETH-USD", 3)  # 9,000 notional on 1,000: maintenance 225
    liq = parse_wad(run.json("account", "--dev-account", "4")["positions"][0]["liquidation_price"])
    assert 2700 * WAD < liq < 2800 * WAD
    ch = p.bw.ch.functions
    p.set_price("ETH-USD", (liq + 10**16) / WAD)  # a cent above: still healthy
    assert not ch.healthOf(trader.address).call()[3]
    p.set_price("ETH-USD", (liq - 10**16) / WAD)  # a cent below: liquidatable
    assert ch.healthOf(trader.address).call()[3]


def test_adl_queue_ranks_and_lights(run: Cli, protocol: World) -> None:
    p = protocol
    p.seed_pool(500_000)
    calm, bold, loser = dev_account(4), dev_account(5), dev_account(6)
    for who, margin in ((calm, 20_000), (bold, 2_000), (loser, 5_000)):
        p.fund_trader(who, margin)
    p.trade(calm, "ETH-USD", -2)
    p.trade(bold, "ETH-USD", -2)
    p.trade(loser, "ETH-USD", 1)
    p.set_price("ETH-USD", 2800)
    bold_adl = run.json("account", bold.address)["positions"][0]["adl"]
    calm_adl = run.json("account", calm.address)["positions"][0]["adl"]
    loser_adl = run.json("account", loser.address)["positions"][0]["adl"]
    assert (bold_adl["rank"], bold_adl["queue_length"], bold_adl["lights"]) == (1, 2, 5)
    assert (calm_adl["rank"], calm_adl["lights"], calm_adl["percentile"]) == (2, 3, 100)
    assert loser_adl["rank"] is None and loser_adl["lights"] == 0
    scores = p.bw.ch.functions.adlScoresOf(0, [bold.address, calm.address]).call()
    assert scores[0] > scores[1] > 0
    for shown, chain in ((bold_adl["score"], scores[0]), (calm_adl["score"], scores[1])):
        assert abs(parse_wad(shown) - chain) <= chain // 10**6  # funding moves equity by the second


# ---------------------------------------------------------------------------- pool and fund


def test_pool_deposit_then_locked_withdrawal(run: Cli, protocol: World) -> None:
    dev = ("--dev-account", str(LP))
    deposit = run.json("pool", "deposit", "1000", *dev)
    assert deposit["deposited"] == "1000" and deposit["value"] == "1000"
    locked = run("pool", "withdraw", "10", *dev)
    assert_one_line_error(locked, "locked after a deposit, until")
    protocol.warp(4 * 86_400 + 1)
    protocol.refresh_prices()
    withdrawn = run.json("pool", "withdraw", "max", *dev)
    assert withdrawn["withdrew"] == "1000" and withdrawn["shares_held"] == "0"


def test_fund_stake_unstake_status_claim(run: Cli, protocol: World) -> None:
    dev = ("--dev-account", str(STAKER))
    staked = run.json("fund", "stake", "5000", *dev)
    assert staked["staked"] == "5000"
    request = run.json("fund", "unstake", staked["shares"], *dev)
    assert request["value"] == "5000"
    rid = str(request["request_id"])
    early = run("fund", "claim", rid, *dev)
    assert_one_line_error(early, f"request #{rid} is in its cooldown until")
    info = run.json("fund", "status", *dev)
    assert info["holder"]["requests"][0]["claimable"] == "5000"
    assert info["holder"]["requests"][0]["ready"] is False
    protocol.warp(7 * 86_400 + 1)
    claimed = run.json("fund", "claim", rid, *dev)
    assert claimed["paid"] == "5000" and claimed["forfeited"] == "0"
    assert run.json("fund", "status", dev_account(STAKER).address)["holder"]["requests"] == []


# ---------------------------------------------------------------------------- feeds and status


def test_feed_set_and_status(run: Cli, protocol: World) -> None:
    set_price = run.json("feed", "set", "eth-usd", "2875.5")
    assert set_price == {**set_price, "market": "ETH-USD", "price": "2875.5", "previous": "3000"}
    status = run.json("status")
    eth = next(m for m in status["markets"] if m["name"] == "ETH-USD")
    assert eth["price"] == "2875.5"
    assert status["conservation"]["ok"] is True and status["bad_debt"] == "0"


def test_feed_replay_spaces_updates_by_file_time_over_speed(
    run: Cli, bw: Bulwark, tmp_path: Path
) -> None:
    csv_file = tmp_path / "path.csv"
    csv_file.write_text(
        "timestamp,market,price\n"
        "1700000000,ETH,3000\n1700000600,ETH,2900\n1700000600,BTC,59000\n1700001800,ETH,2700.123456789\n"
    )
    out = run.json(
        "feed", "replay", str(csv_file), "--speed", "2", "--market-map", "ETH=ETH-USD,BTC=BTC-USD"
    )
    assert out["rows"] == 4 and out["max_drift_seconds"] == 0
    assert out["chain_seconds"] == 900 and out["last_prices"]["ETH-USD"] == "2700.12345679"
    eth = bw.feeds["ETH-USD"].functions
    latest = eth.latestRound().call()
    stamps = [eth.getRoundData(latest - k).call()[3] for k in (2, 1, 0)]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [300, 600]
    btc_time = bw.feeds["BTC-USD"].functions.latestTimestamp().call()
    assert btc_time == stamps[1]


def test_status_lists_liquidatable_accounts(run: Cli, protocol: World) -> None:
    p = protocol
    trader = dev_account(TRADER)
    p.seed_pool(500_000)
    p.fund_trader(trader, 1_000)
    p.trade(trader, "ETH-USD", 5)
    p.stake(10_000)
    p.set_price("ETH-USD", 2850)
    status = run.json("status")
    assert [x["address"] for x in status["liquidatable"]] == [trader.address]
    assert parse_wad(status["coverage"]) == parse_wad(status["fund"]["assets"]) * WAD // parse_wad(
        status["open_interest_notional"]
    )
    text = run.ok("status").out
    assert "1 liquidatable" in text and "conservation      OK" in text


def test_keeper_once_liquidates(
    run: Cli, protocol: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULWARK_KEEPER_CHECKPOINT_FILE", str(tmp_path / "checkpoint.json"))
    p = protocol
    trader = dev_account(TRADER)
    p.seed_pool(500_000)
    p.fund_trader(trader, 1_000)
    p.trade(trader, "ETH-USD", 5)
    p.set_price("ETH-USD", 2850)
    result = run("keeper", "--once", "--dev-account", "3")
    assert result.code == 0, result.err
    assert run.json("status")["liquidatable"] == []


# ---------------------------------------------------------------------------- deploy


def test_deploy_writes_the_deployment_file(run: Cli, bw: Bulwark, tmp_path: Path) -> None:
    target = tmp_path / "fresh.json"
    out = cli.main(["deploy", "--rpc", run.rpc, "--deployment", str(target), "--json"])
    data = json.loads(run.capsys.readouterr().out)
    assert out == 0 and data["deployment_file"] == str(target)
    saved = Deployment.load(target)
    assert sorted(saved.markets) == ["BTC-USD", "ETH-USD"]
    assert bw.w3.eth.get_code(saved.contracts["ClearingHouse"])
    assert data["deployer"] == dev_account(0).address


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["trade", "open", "DOGE-USD", "1", "--dev-account", "4"], ["unknown market 'DOGE-USD'"]),
        (
            ["trade", "open", "ETH-USD", "1.2.3", "--dev-account", "4"],
            ["SIZE '1.2.3' is not a number"],
        ),
        (["trade", "open", "ETH-USD", "0", "--dev-account", "4"], ["SIZE must not be zero"]),
        (["trade", "deposit", "1,000", "--dev-account", "4"], ["thousands separators"]),
        (["trade", "deposit", "1.0000001", "--dev-account", "4"], ["more than 6 decimal places"]),
        (["trade", "deposit", "-5", "--dev-account", "4"], ["must not be negative"]),
        (
            ["trade", "open", "ETH-USD", "1", "--dev-account", "4"],
            [
                "trade ETH-USD reverted: TradeMarginInsufficient(",
                "equity=-1.5",
                "bulwark trade deposit",
            ],
        ),
        (
            ["trade", "open", "ETH-USD", "-1", "--max-price", "3000", "--dev-account", "4"],
            ["--max-price bounds a buy"],
        ),
        (
            ["trade", "open", "ETH-USD", "1", "--slippage", "120", "--dev-account", "4"],
            ["--slippage"],
        ),
        (["trade", "close", "ETH-USD", "--dev-account", "4"], ["no position in ETH-USD"]),
        (
            ["trade", "withdraw", "5", "--dev-account", "4"],
            ["withdraw reverted: VaultInsufficientMargin("],
        ),
        (
            ["trade", "deposit", "2000000", "--dev-account", "4"],
            ["less than the 2,000,000.00 asked for"],
        ),
        (["trade", "deposit", "10"], ["needs a signer"]),
        (
            ["trade", "deposit", "10", "--dev-account", "x"],
            ["--dev-account must be a whole number"],
        ),
        (
            ["trade", "deposit", "10", "--keystore", "/nonexistent/key.json"],
            ["keystore file not found"],
        ),
        (["account"], ["give an ADDRESS, or a signer"]),
        (["account", "0x1234"], ["'0x1234' is not an Ethereum address"]),
        (["fund", "claim", "x", "--dev-account", "2"], ["ID must be a request number"]),
        (["fund", "claim", "99", "--dev-account", "2"], ["no open unstake request #99"]),
        (["fund", "unstake", "1", "--dev-account", "2"], ["holds 0 fund shares"]),
        (["feed", "set", "ETH-USD", "0"], ["PRICE must not be zero"]),
        (
            ["feed", "set", "ETH-USD", "100", "--dev-account", "5"],
            ["reverted: AccessControlUnauthorizedAccount(", "--dev-account 0"],
        ),
        (["feed", "replay", "/nonexistent.csv"], ["no such file"]),
        (["trade", "explode"], ["invalid choice: 'explode'"]),
        (["trade", "open", "ETH-USD"], ["required: SIZE"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
        (["stress", "gap", "--accounts", "0"], ["--accounts: must be positive"]),
    ],
)
def test_mistakes_give_one_line(
    run: Cli, protocol: World, argv: list[str], needles: list[str]
) -> None:
    protocol.seed_pool(100_000)
    assert_one_line_error(run(*argv), *needles)


def test_usage_errors_exit_2_and_chain_errors_exit_1(run: Cli) -> None:
    assert run("trade", "open", "ETH-USD").code == 2
    assert run("trade", "open", "DOGE-USD", "1", "--dev-account", "4").code == 1


def test_deployment_and_node_errors(run: Cli, tmp_path: Path) -> None:
    missing = run.capsys
    assert cli.main(["status", "--rpc", run.rpc, "--deployment", str(tmp_path / "none.json")]) == 1
    assert_one_line_error(
        Result(1, *missing.readouterr()), "no deployment file at", "bulwark deploy"
    )

    assert (
        cli.main(["status", "--rpc", "http://127.0.0.1:9", "--deployment", str(run.deployment)])
        == 1
    )
    assert_one_line_error(
        Result(1, *missing.readouterr()), "cannot reach the node at http://127.0.0.1:9"
    )

    assert cli.main(["status"]) == 1
    assert_one_line_error(Result(1, *missing.readouterr()), "needs a running node", "BULWARK_RPC")

    elsewhere = json.loads(run.deployment.read_text())
    elsewhere["contracts"]["ClearingHouse"] = "0x" + "12" * 20
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(elsewhere))
    assert cli.main(["status", "--rpc", run.rpc, "--deployment", str(stale)]) == 1
    assert_one_line_error(
        Result(1, *missing.readouterr()), "no ClearingHouse at", "run `bulwark deploy`"
    )

    elsewhere["chain_id"] = 1
    stale.write_text(json.dumps(elsewhere))
    assert cli.main(["status", "--rpc", run.rpc, "--deployment", str(stale)]) == 1
    assert_one_line_error(Result(1, *missing.readouterr()), "is for chain 1", "is chain 31337")

    stale.write_text("{not json")
    assert cli.main(["status", "--rpc", run.rpc, "--deployment", str(stale)]) == 1
    assert_one_line_error(Result(1, *missing.readouterr()), "is malformed")


def test_stale_price_is_reported_with_a_hint(run: Cli, protocol: World) -> None:
    protocol.seed_pool(100_000)
    protocol.fund_trader(dev_account(TRADER), 1_000)
    protocol.warp(3601)
    result = run("trade", "open", "ETH-USD", "0.1", "--dev-account", "4")
    assert_one_line_error(result, "OracleStalePrice(", "bulwark feed set")


def test_unexpected_errors_are_one_line_unless_debugging(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(ctx: cli.Context) -> int:
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(cli, "cmd_status", boom)
    result = run("status")
    assert_one_line_error(
        result, "unexpected error: RuntimeError: something broke", "BULWARK_DEBUG=1"
    )
    monkeypatch.setenv("BULWARK_DEBUG", "1")
    result = run("status")
    assert result.code == 1 and "Traceback" in result.err


# ---------------------------------------------------------------------------- delegated commands


def test_stress_and_demo_get_typed_options(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    outcome = Outcome({"checks": {"ok": True}}, ["all good"], True)

    def run_command(opts: Any) -> Outcome:
        seen["stress"] = opts
        return outcome

    def run_demo(out: Path, chain: Any) -> Outcome:
        seen["demo"] = (out, chain)
        return outcome

    import bulwark.sim.demo
    import bulwark.sim.stress

    monkeypatch.setattr(bulwark.sim.stress, "run_command", run_command)
    monkeypatch.setattr(bulwark.sim.demo, "run", run_demo)
    argv = ["--json", "stress", "scenarios/gap.csv", "--accounts", "50", "--seed", "7"]
    assert cli.main([*argv, "--speed", "60", "--rpc", "http://h:1"]) == 0
    assert cli.main(["demo", "--out", "/tmp/x"]) == 0
    stress, (demo_out, demo_chain) = seen["stress"], seen["demo"]
    cfg = stress.config
    assert (cfg.scenario, cfg.accounts, cfg.seed, cfg.speed) == ("scenarios/gap.csv", 50, 7, 60.0)
    assert stress.json is True and stress.chain.rpc == "http://h:1" and stress.sweep is None
    assert stress.out.as_posix().endswith("reports/gap")
    assert demo_out == Path("/tmp/x") and demo_chain.rpc is None


def test_a_failed_check_exits_3_after_the_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bulwark.sim.demo

    failed = Outcome({"checks": {"ok": False}}, ["What happened", "a check failed"], False)
    monkeypatch.setattr(bulwark.sim.demo, "run", lambda out, chain: failed)
    assert cli.main(["demo", "--out", "/tmp/x"]) == 3
    assert capsys.readouterr().out.splitlines() == ["What happened", "a check failed"]


@pytest.mark.parametrize(
    "flags",
    [["--window-caps", "10,50"], ["--adl-policy", "prorata"], ["--compare-policies"]],
)
def test_stress_refuses_sweep_flags_without_a_sweep(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep-only flag on a plain replay would be ignored: it is one line and nothing runs."""
    assert cli.main(["stress", "scenarios/gap.csv", *flags, "--rpc", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"bulwark stress: error: {flags[0]} applies to a fund sweep: add --fund-sweep"


def test_deploy_without_a_node_is_a_dry_run_on_an_embedded_anvil(
    run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULWARK_DEPLOYMENT", str(tmp_path / "never.json"))
    result = run("deploy", chain=False)
    assert result.code == 0, result.err
    assert "embedded Anvil, gone when this command ends" in result.out
    assert not (tmp_path / "never.json").exists()


def test_compile_reports_sizes_under_the_limit(run: Cli) -> None:
    data = run.json("compile")
    assert data["over_limit"] == [] and data["limit"] == 24_576
    assert 0 < data["sizes"]["ClearingHouse"] <= 24_576


def test_docs_show_every_command_with_an_example() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    for command in cli.iter_commands():
        assert f"`bulwark {command}" in text, command
        assert f"$ bulwark {command}" in text, command
