"""The fund-adequacy sweep: one setup, one snapshot, one replay per fund size, on a real Anvil.

Given 24 accounts through the gap scenario, when the sweep replays it for three fund sizes from one
snapshot, then a point that ran after a revert gives exactly the measures of a fresh setup and the
same point (no snapshot), every point starts from the same block with the fund and window cap it
asked for, the measures of the last point agree with the chain's raw logs, and the markers (the
smallest fund that avoided ADL, the smallest that kept haircuts within the bound) agree with the
points. The marker and episode logic is also pinned on hand-made points and events."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import fresh_point as run_fresh_point
from support import gap_run, raw_logs

from bulwark.chain.contracts import WAD, Bulwark
from bulwark.sim import sweep
from bulwark.sim.report import Event
from bulwark.sim.sweep import FundSweep, Point, SweepConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CAP = 50.0
FUNDS = (0.0, 1.0, 25.0)  # % of open interest: ADL, ADL, none
BOUND = 0.5


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The sweep; the chain stays up (at the last point's end) while the tests look."""
    with gap_run() as run:
        result = FundSweep(run, SweepConfig(FUNDS, (CAP,), BOUND, refine=1)).execute()
        data = sweep.to_json(result)
        files = sweep.write(data, tmp_path_factory.mktemp("sweep"))
        yield {"bw": run.bw, "result": result, "data": data, "files": files}


@pytest.fixture(scope="module")
def fresh_point() -> Point:
    """The middle point alone on a fresh chain: setup, then the point, no snapshot taken."""
    return run_fresh_point(FUNDS[1], CAP)


def test_point_from_the_snapshot_equals_a_fresh_run(
    swept: dict[str, Any], fresh_point: Point
) -> None:
    from_snapshot = swept["result"].points[1]  # ran after the first point was reverted
    assert from_snapshot.fund_pct_asked == fresh_point.fund_pct_asked
    # Every measure, wei for wei, but the block numbers after the replay's first: automine may
    # pack two transactions the keeper sent back to back into one block or two, as timing has it
    # (chain time does not move within a step, so nothing else depends on it).
    packing = {"blocks", "blocks_to_clear_max"}
    assert {k: v for k, v in from_snapshot.metrics.items() if k not in packing} == {
        k: v for k, v in fresh_point.metrics.items() if k not in packing
    }
    assert from_snapshot.metrics["blocks"][0] == fresh_point.metrics["blocks"][0]
    assert from_snapshot.metrics["adl_events"] > 0  # a point where something happened


def test_every_point_starts_from_the_same_state(swept: dict[str, Any]) -> None:
    points = swept["result"].points
    oi = int(swept["data"]["population"]["open_interest_wad"])
    floor = swept["data"]["population"]["fund_floor_usd"]
    assert len({p.metrics["blocks"][0] for p in points}) == 1
    for p in points:
        assert p.metrics["window_cap_pct_set"] == CAP
        fund = int(p.metrics["fund_start_wad"])
        target = oi * p.fund_pct_asked / 100
        if target <= floor * WAD:
            assert p.metrics["donated_tokens"] == 0
            assert p.metrics["fund_start_usd"] == floor
        else:  # the donation rounds up to a whole token unit (a micro-dollar)
            assert 0 <= fund - target < 10**12 + 1
    # the floor is the fee share of the setup's trades: small but not zero
    assert 0 < floor < 0.001 * oi / WAD


def test_shortfall_identity_and_fund_size_order(swept: dict[str, Any]) -> None:
    points = [p for p in swept["result"].points if not p.refined]
    for p in points:
        m = p.metrics
        paid_then = m["fund_paid_at_liquidation_usd"]
        assert m["shortfall_usd"] == pytest.approx(paid_then + m["bad_debt_recorded_usd"], abs=1e-5)
        assert m["overshoot_wad"] == "0"
        assert m["bystander_loss_usd"] == pytest.approx(
            m["haircut_total_usd"] + m["socialized_usd"], abs=1e-5
        )
    # the same crash over the same book: the shortfall does not depend on the fund
    assert len({p.metrics["shortfall_wad"] for p in points}) == 1
    small, large = points[0].metrics, points[-1].metrics
    assert small["adl_events"] > 0 and small["haircut_total_usd"] > 0
    assert large["adl_events"] == 0 and large["bad_debt_recorded_usd"] == 0


def test_refinement_bisects_towards_each_marker(swept: dict[str, Any]) -> None:
    points = swept["result"].points
    grid = [p for p in points if not p.refined]
    refined = [p for p in points if p.refined]
    assert [p.fund_pct_asked for p in grid] == sorted(FUNDS)
    assert len(refined) == 2  # one per marker
    marker_pcts = {m["fund_pct_oi"] for m in swept["data"]["markers"][f"{CAP:g}"].values()
                   if isinstance(m, dict)}  # fmt: skip
    for p in refined:
        below = [g for g in grid if g.metrics["fund_pct_oi"] < p.fund_pct_asked]
        above = [g for g in grid if g.metrics["fund_pct_oi"] > p.fund_pct_asked]
        assert below and above  # strictly between two swept sizes
    # the markers are read over every replay, the refined ones included
    assert marker_pcts <= {p.metrics["fund_pct_oi"] for p in points}


def test_last_point_measures_match_theraw_logs(swept: dict[str, Any]) -> None:
    bw: Bulwark = swept["bw"]
    m = swept["result"].points[-1].metrics
    start, end = m["blocks"]
    settled = raw_logs(bw, bw.ch, "ShortfallSettled", start, end)
    covered = raw_logs(bw, bw.fund, "ShortfallCovered", start, end)
    assert int(m["shortfall_wad"]) == sum(a["shortfallWad"] for a in settled)
    assert int(m["fund_paid_wad"]) == sum(a["paidWad"] for a in covered)
    assert m["adl_events"] == len(raw_logs(bw, bw.ch, "AutoDeleveraged", start, end))
    assert int(m["fund_start_wad"]) == bw.fund.functions.assetsWad().call(
        block_identifier=start - 1
    )


def test_markers_agree_with_the_points(swept: dict[str, Any]) -> None:
    data = swept["data"]
    points = sorted(data["points"], key=lambda p: p["fund_pct_oi"])
    marker = data["markers"][f"{CAP:g}"]
    # the smallest fund from which no larger swept fund needed ADL
    expected = points[-1]
    for p in reversed(points):
        if p["adl_events"] or p["haircut_total_usd"]:
            break
        expected = p
    assert marker["no_adl"]["fund_pct_oi"] == expected["fund_pct_oi"]
    below = [p for p in points if p["fund_pct_oi"] < expected["fund_pct_oi"]]
    assert below and below[-1]["adl_events"] > 0
    within = marker["haircuts_within_bound"]["fund_pct_oi"]
    assert all(p["haircut_pct_oi"] <= BOUND for p in points if p["fund_pct_oi"] >= within)
    assert within <= marker["no_adl"]["fund_pct_oi"]
    line = data["headline"][0]
    assert f"ADL avoided from a fund of {expected['fund_pct_oi']:.2f}% of open interest" in line


def test_files_are_written(swept: dict[str, Any]) -> None:
    files = swept["files"]
    assert files["plot"].read_bytes()[:8] == PNG_MAGIC and files["plot"].stat().st_size > 20_000
    assert json.loads(files["json"].read_text()) == json.loads(json.dumps(swept["data"]))
    text = "\n".join(sweep.summary_lines(swept["data"], files))
    assert "fund %OI" in text and "ADL avoided from a fund of" in text


# ---------------------------------------------------------------------------- without a chain


def _point(fund_pct: float, adl: int, haircut_pct: float, cap: float = CAP) -> Point:
    oi = 1_000_000 * WAD
    return Point(
        fund_pct,
        cap,
        {
            "fund_start_wad": str(int(oi * fund_pct / 100)),
            "fund_pct_oi": fund_pct,
            "fund_start_usd": 10_000 * fund_pct,
            "adl_events": adl,
            "haircut_total_usd": 10_000 * haircut_pct,
            "haircut_pct_oi": haircut_pct,
        },
    )


def test_markers_need_every_larger_fund_to_agree() -> None:
    points = [
        _point(0, 9, 3.0),
        _point(1, 0, 0.0),  # a lucky point below one that needed ADL again
        _point(2, 2, 0.05),
        _point(4, 0, 0.0),
        _point(8, 0, 0.0),
    ]
    m = sweep.markers(points, bound_pct=0.1)[CAP]
    assert m["no_adl"] == {"fund_pct_oi": 4, "fund_usd": 40_000}
    assert m["haircuts_within_bound"] == {"fund_pct_oi": 1, "fund_usd": 10_000}
    none = sweep.markers([_point(0, 3, 1.0), _point(1, 1, 0.5)], bound_pct=0.1)[CAP]
    assert none["no_adl"] is None and none["haircuts_within_bound"] is None


def _event(name: str, block: int, **args: int) -> Event:
    return Event(name, block, "0x00", 0, dict(args))


def test_debt_episodes_follow_the_running_total() -> None:
    events = [
        _event("BadDebtRecorded", 10, amountWad=5, totalBadDebtWad=5),
        _event("BadDebtRecorded", 10, amountWad=3, totalBadDebtWad=8),
        _event("AutoDeleveraged", 12, haircutWad=6),
        _event("BadDebtCovered", 15, amountWad=2, totalBadDebtWad=0),
        _event("Liquidated", 16),
        _event("BadDebtRecorded", 20, amountWad=4, totalBadDebtWad=4),
    ]
    found = [(e.first_block, e.last_block, e.peak_wad) for e in sweep.debt_episodes(events, 0)]
    assert found == [(10, 15, 8), (20, 20, 4)]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"fund_sweep": "0,abc"}, "--fund-sweep takes percentages separated by commas"),
        ({"fund_sweep": "-1"}, "a fund size must be 0 to 1000"),
        ({"fund_sweep": "", "window_caps": "0.5"}, "a window cap must be 1 to 100"),
        ({"fund_sweep": "", "haircut_bound": "x"}, "--haircut-bound takes percentages"),
        ({"fund_sweep": "", "adl_policy": "fifo"}, "--adl-policy must be one of queue, prorata"),
        (
            {"fund_sweep": "", "adl_policy": "queue", "compare_policies": True},
            "leave out --adl-policy",
        ),
    ],
)
def test_sweep_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: dict[str, Any], message: str
) -> None:
    from bulwark.cli.ops import run_stress as run_from_cli

    args = argparse.Namespace(
        scenario="gap", accounts=10, out=str(tmp_path), speed=None, seed=0, json=False,
        rpc="http://127.0.0.1:9", deployment=None, keystore=None, dev_account=None,
        window_caps=None, haircut_bound=None, adl_policy=None, compare_policies=False,
    )  # fmt: skip
    for key, value in flags.items():
        setattr(args, key, value)
    assert run_from_cli(args) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_command_line_flags_reach_the_sweep() -> None:
    from bulwark.cli import parse_args
    from bulwark.cli.ops import sweep_config

    plain = parse_args(["stress", "gap"])
    assert plain.fund_sweep is None  # a plain stress run
    bare = parse_args(["stress", "gap", "--fund-sweep"])
    assert bare.fund_sweep == "" and sweep_config(bare) == SweepConfig()
    full = parse_args(
        ["stress", "gap", "--fund-sweep", "0,1.5%,3", "--window-caps", "25,100",
         "--haircut-bound", "0.2", "--refine", "2"]
    )  # fmt: skip
    assert sweep_config(full) == SweepConfig((0.0, 1.5, 3.0), (25.0, 100.0), 0.2, 2)
