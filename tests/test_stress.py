"""A small stress run on its own Anvil: the report's JSON and PNGs, its numbers against the chain.

Given a fresh deployment, when 30 accounts run through the gap scenario with the keeper daemon
making a pass after every step, then the report files exist, and every total in them agrees with
what the chain says independently: the closing views, the raw logs, and identities between them
(the fund's assets move by exactly padding minus payouts; the keeper's margin is exactly its
rewards)."""

from __future__ import annotations

import argparse
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import raw_logs

from bulwark.chain.contracts import WAD, Bulwark, connect, dev_account
from bulwark.cli.ops import run_stress as run_from_cli
from bulwark.core.progress import Progress
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.sim import report
from bulwark.sim.stress import StressConfig, StressRun, plan_population

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACCOUNTS = 30


@pytest.fixture(scope="module")
def gap_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One stress run shared by the tests of this module; the chain stays up while they look."""
    with AnvilNode() as node:
        w3 = connect(node.rpc_url, timeout=120)
        bw = Bulwark(w3, deploy_all(w3, dev_account(0)))
        result = StressRun(bw, StressConfig("gap", accounts=ACCOUNTS, seed=7), dev_account(0)).run()
        data = report.build(bw, result)
        out = tmp_path_factory.mktemp("gap-report")
        files = report.write(data, out)
        yield {"bw": bw, "result": result, "data": data, "files": files}


def test_report_files_are_written(gap_run: dict[str, Any]) -> None:
    files = gap_run["files"]
    for name in ("overview", "price", "fund", "bad_debt", "liquidations", "haircuts"):
        assert files[name].read_bytes()[:8] == PNG_MAGIC, name
        assert files[name].stat().st_size > 10_000
    assert json.loads(files["json"].read_text()) == json.loads(json.dumps(gap_run["data"]))


def test_gap_exhausts_the_fund_and_adl_clears_the_rest(gap_run: dict[str, Any]) -> None:
    data = gap_run["data"]
    assert data["liquidations"]["bankrupt"] > 0
    assert data["fund"]["paid_usd"] > 0
    assert data["fund"]["steps_exhausted"] > 0
    assert data["bad_debt"]["recorded_usd"] > 0
    assert data["adl"]["steps"] > 0
    assert data["checks"] == {
        **data["checks"],
        "conservation_ok": True,
        "overshoot_zero": True,
        "bad_debt_zero_at_end": True,
        "ok": True,
    }
    assert int(data["bad_debt"]["overshoot_wad"]) == 0


def test_totals_match_the_chain(gap_run: dict[str, Any]) -> None:
    bw, result, data = gap_run["bw"], gap_run["result"], gap_run["data"]
    start, end = result.start_block, result.end_block
    ch, fund = bw.ch.functions, bw.fund.functions
    liquidated = raw_logs(bw, bw.ch, "Liquidated", start, end)
    adl = raw_logs(bw, bw.ch, "AutoDeleveraged", start, end)
    paid = raw_logs(bw, bw.fund, "ShortfallCovered", start, end)
    assert data["liquidations"]["count"] == len(liquidated)
    assert data["liquidations"]["bankrupt"] == sum(1 for a in liquidated if a["bankrupt"])
    assert data["adl"]["steps"] == len(adl)
    assert data["adl"]["steps_without_haircut"] == sum(1 for a in adl if a["haircutWad"] == 0)
    assert int(data["bad_debt"]["adl_haircuts_wad"]) == sum(a["haircutWad"] for a in adl)
    assert int(data["fund"]["paid_wad"]) == sum(a["paidWad"] for a in paid)
    assert int(data["bad_debt"]["closing_wad"]) == ch.totalBadDebtWad().call(block_identifier=end)
    assert int(data["fund"]["assets_end_wad"]) == fund.assetsWad().call(block_identifier=end)
    # Nobody trades during the replay, so the fund moves by exactly padding in minus payouts out.
    start_assets = fund.assetsWad().call(block_identifier=start - 1)
    padding = sum(a["paddingWad"] for a in liquidated)
    assert int(data["fund"]["assets_end_wad"]) - start_assets == padding - int(
        data["fund"]["paid_wad"]
    )
    # The keeper's account starts empty and earns only rewards.
    rewards = sum(a["rewardWad"] for a in liquidated)
    assert ch.marginOf(result.population.keeper.address).call(block_identifier=end) == rewards
    assert data["liquidations"]["keeper_rewards_usd"] == pytest.approx(rewards / WAD, abs=1e-6)


def test_timeline_rows_are_the_chain_at_each_step(gap_run: dict[str, Any]) -> None:
    bw, result, data = gap_run["bw"], gap_run["result"], gap_run["data"]
    rows = data["timeline"]
    assert len(rows) == len(result.path.steps) == 10
    assert sum(r["liquidations"] for r in rows) == data["liquidations"]["count"]
    assert sum(r["adl_steps"] for r in rows) == data["adl"]["steps"]
    for row in rows:
        block = row["block"]
        for name, price in row["prices"].items():
            on_chain = bw.oracle.functions.priceWad(bw.market_id(name)).call(block_identifier=block)
            assert price == pytest.approx(on_chain / WAD, abs=1e-6)
        debt = bw.ch.functions.totalBadDebtWad().call(block_identifier=block)
        assert row["bad_debt_usd"] == pytest.approx(debt / WAD, abs=1e-6)
        assets = bw.fund.functions.assetsWad().call(block_identifier=block)
        assert row["fund_assets_usd"] == pytest.approx(assets / WAD, abs=1e-6)
    path_prices = [float(s.prices["ETH-USD"]) for s in result.path.steps]
    assert [r["prices"]["ETH-USD"] for r in rows] == path_prices


def test_haircut_concentration_matches_the_events(gap_run: dict[str, Any]) -> None:
    bw, result, data = gap_run["bw"], gap_run["result"], gap_run["data"]
    per_account: dict[str, int] = {}
    for a in raw_logs(bw, bw.ch, "AutoDeleveraged", result.start_block, result.end_block):
        per_account[a["account"]] = per_account.get(a["account"], 0) + a["haircutWad"]
    total = sum(per_account.values())
    adl = data["adl"]
    assert {k: int(v) for k, v in adl["haircuts_wad"].items()} == per_account
    assert adl["largest_share"] == pytest.approx(max(per_account.values()) / total, abs=1e-6)
    assert adl["gini_affected"] == pytest.approx(report.gini(list(per_account.values())), abs=1e-6)
    assert adl["eligible_at_start"] >= adl["targets"]
    assert adl["scores_non_increasing"] is True


def test_summary_names_the_measures(gap_run: dict[str, Any]) -> None:
    text = "\n".join(report.summary_lines(gap_run["data"], gap_run["files"]))
    assert "overshoot $0.00 (must be zero)" in text
    assert "largest share" in text and "Gini" in text
    assert "conservation holds" in text
    assert str(gap_run["files"]["json"]) in text


def test_gini_and_lorenz() -> None:
    assert report.gini([5, 5, 5]) == 0.0
    assert report.gini([0, 0, 0, 12]) == pytest.approx(0.75)
    assert report.gini([]) == 0.0
    people, share = report.lorenz([1, 3])
    assert people == [0.0, 0.5, 1.0] and share == [0.0, 0.25, 1.0]


def test_population_is_spread_and_deterministic() -> None:
    cfg = StressConfig("gap", accounts=200, seed=3)
    prices = {"ETH-USD": 3000 * WAD, "BTC-USD": 60000 * WAD}
    a = plan_population(cfg, dev_account(0), prices, 6)
    b = plan_population(cfg, dev_account(0), prices, 6)
    assert [t.account.address for t in a.traders] == [t.account.address for t in b.traders]
    leverages = [t.leverage for t in a.traders]
    assert min(leverages) < 2.5 and max(leverages) > 15
    markets = {tuple(leg.market for leg in t.legs) for t in a.traders}
    assert markets == {("ETH-USD",), ("BTC-USD",), ("ETH-USD", "BTC-USD")}
    longs = sum(1 for t in a.traders for leg in t.legs if leg.size_wad > 0)
    shorts = sum(1 for t in a.traders for leg in t.legs if leg.size_wad < 0)
    assert longs > shorts > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scenario": "nope"}, "unknown scenario 'nope'"),
        ({"accounts": 1}, "--accounts must be between 2 and 5000"),
        ({"speed": -1}, "--speed must be a positive number"),
        ({"speed": 0}, "--speed must be a positive number"),
    ],
)
def test_cli_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], changes: dict[str, Any], message: str
) -> None:
    args = argparse.Namespace(
        scenario="gap",
        accounts=30,
        out=None,
        speed=None,
        seed=0,
        json=False,
        rpc=None,
        deployment=None,
        keystore=None,
        dev_account=None,
    )
    for key, value in changes.items():
        setattr(args, key, value)
    assert run_from_cli(args) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_unreachable_node_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = argparse.Namespace(
        scenario="gap",
        accounts=30,
        out=str(tmp_path),
        speed=None,
        seed=0,
        json=False,
        rpc="http://127.0.0.1:9",
        deployment=None,
        keystore=None,
        dev_account=None,
    )
    assert run_from_cli(args) == 1
    assert "cannot reach the node at http://127.0.0.1:9" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    tty = _Terminal()
    bar = Progress(4, tty, label="gap")
    bar.update(1, "ETH 2,250")
    bar.update(4, "ETH 2,310")
    bar.close()
    text = tty.getvalue()
    assert "gap" in text and "4/4" in text and "ETH 2,310" in text and "\x1b[" in text
    plain = io.StringIO()
    bar = Progress(100, plain, label="gap")
    for i in range(1, 101):
        bar.update(i, f"step {i}")
    bar.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 10  # one line per tenth of the way, no terminal codes
    assert lines[0].startswith("gap: 10/100 step 10 (") and lines[-1].startswith("gap: 100/100")
    assert "\x1b[" not in plain.getvalue()


def test_progress_without_a_total_counts_and_stays_quiet_off_a_terminal() -> None:
    """A deployment's progress (no total known): on a terminal a count; elsewhere the first line,
    then at most one every few seconds, and the last."""
    tty = _Terminal()
    with Progress(None, tty, label="deploy") as bar:
        for action in ("deploy MockUSDC", "deploy OracleAdapter", "deploy ClearingHouse"):
            bar.advance(action)
    assert "deploy" in tty.getvalue() and "\x1b[" in tty.getvalue()
    plain = io.StringIO()
    with Progress(None, plain, label="deploy") as bar:
        for i in range(40):
            bar.advance(f"step {i + 1}")
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("deploy: 1 step 1 (") and lines[-1].startswith("deploy: 40 done (")
    assert len(lines) == 2  # a fast run: the first line and the last
    assert "\x1b[" not in plain.getvalue()


def test_summary_shortfall_adds_up_and_later_covers_stand_apart(gap_run: dict[str, Any]) -> None:
    data = gap_run["data"]
    liq, debt, fund = data["liquidations"], data["bad_debt"], data["fund"]
    assert int(liq["shortfall_wad"]) == int(liq["shortfall_covered_wad"]) + int(
        liq["shortfall_to_bad_debt_wad"]
    )
    assert int(liq["shortfall_to_bad_debt_wad"]) == int(debt["recorded_wad"])
    assert data["checks"]["shortfall_adds_up"] is True
    # the fund's payouts: at liquidation, then later from the bad debt
    assert fund["paid_usd"] == pytest.approx(
        liq["shortfall_covered_usd"] + debt["covered_by_fund_later_usd"], abs=1e-5
    )
    lines = report.summary_lines(data, gap_run["files"])
    shortfall = next(line for line in lines if line.startswith("  shortfall"))
    numbers = [float(x.replace(",", "")) for x in re.findall(r"\$([\d,]+(?:\.\d+)?)", shortfall)]
    assert len(numbers) == 3 and numbers[0] == pytest.approx(numbers[1] + numbers[2], abs=1.01)
    bad = next(line for line in lines if line.startswith("  bad debt"))
    parts = [float(x.replace(",", "")) for x in re.findall(r"\$([\d,]+(?:\.\d+)?)", bad)]
    assert parts[0] == pytest.approx(sum(parts[1:]), abs=len(parts))


def test_cli_keeps_the_keepers_log_off_the_terminal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The gap with ADL makes the keeper warn; the terminal shows progress and the summary only,
    the log goes to the report folder and the summary counts its warnings."""
    args = argparse.Namespace(
        scenario="gap", accounts=ACCOUNTS, out=str(tmp_path), speed=None, seed=7, json=False,
        rpc=None, deployment=None, keystore=None, dev_account=None,
    )  # fmt: skip
    assert run_from_cli(args) == 0
    out, err = capsys.readouterr()
    assert all(line.startswith(("setup: ", "gap: ")) for line in err.splitlines()), err
    log = (tmp_path / "keeper.log").read_text()
    assert "startup checks passed" in log
    data = json.loads((tmp_path / "report.json").read_text())
    warnings = data["keeper"]["log"]["warnings"]
    levels = [line.split()[1] for line in log.splitlines()]
    assert warnings == sum(1 for level in levels if level in ("WARNING", "ERROR", "CRITICAL"))
    if warnings:
        assert f"{warnings} warnings logged in {tmp_path / 'keeper.log'}" in out
