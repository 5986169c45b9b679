"""The ADL-policy comparison of the fund sweep: one setup, one snapshot, each point under the queue and
under pro rata, on a real Anvil.

Given 24 accounts through the gap scenario and funds of 0% and 12% of open interest at window caps
of 100% and 50% (the book's shortfall is about 9% of open interest, so the 12% fund at a 100% cap
pays it all and at 50% does not), when the sweep compares the two policies, then every point is
measured under both with the policy the chain reports, from the same pre-crash state; under both,
the haircuts add up to exactly the debt ADL retired (no overshoot), no haircut exceeds the target's
profit, and the ledger of bad debt balances; the pro-rata replays really ran pro-rata calls (and the
queue's none) and hit at least as many accounts; a point without bad debt is not replayed under pro
rata and says so; a pro-rata point replayed after a revert gives exactly what a fresh setup and the
same point give. The last replay left on the chain (pro rata) is checked against the raw logs: each
call's haircuts add up to what it absorbed, at most the debt it took; each target paid at most its
profit; the set presented was every account the contract scored above zero on the winning side.
`--adl-policy prorata` sets the policy before the snapshot, and the flags reach the sweep."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from support import GAP_ACCOUNTS, GAP_SEED, gap_run
from support import fresh_point as run_fresh_point

from bulwark.chain.contracts import Bulwark
from bulwark.core import riskmath as rm
from bulwark.keeper.prorata import PRO_RATA
from bulwark.sim import sweep
from bulwark.sim.stress import derived_account
from bulwark.sim.sweep import FundSweep, SweepConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FUNDS = (0.0, 12.0)  # % of open interest
CAPS = (100.0, 50.0)  # in this order: the last replay is pro rata at the 50% cap, with ADL
POLICIES = ("queue", "pro rata")


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The comparison; the chain stays up (at the last replay's end) while the tests look."""
    with gap_run() as run:
        cfg = SweepConfig(FUNDS, CAPS, 0.1, compare_policies=True)
        result = FundSweep(run, cfg).execute()
        data = sweep.to_json(result)
        files = sweep.write(data, tmp_path_factory.mktemp("policies"))
        yield {"bw": run.bw, "result": result, "data": data, "files": files}


@pytest.fixture(scope="module")
def fresh_pro_rata() -> sweep.Point:
    """The first pro-rata point alone on a fresh chain: setup, then the point, no snapshot."""
    return run_fresh_point(FUNDS[0], CAPS[0], PRO_RATA)


def _by_point(data: dict[str, Any]) -> dict[tuple[float, float], dict[str, dict[str, Any]]]:
    out: dict[tuple[float, float], dict[str, dict[str, Any]]] = defaultdict(dict)
    for p in data["points"]:
        out[(p["window_cap_pct"], p["fund_pct_asked"])][p["adl_policy"]] = p
    return out


def test_every_point_runs_under_both_policies_from_the_same_state(
    compared: dict[str, Any],
) -> None:
    points = _by_point(compared["data"])
    assert set(points) == {(c, f) for c in CAPS for f in FUNDS}
    for pair in points.values():
        assert set(pair) == set(POLICIES)  # the name each replay's chain reported
        queue, prorata = pair["queue"], pair["pro rata"]
        for key in ("fund_start_wad", "window_cap_pct_set", "shortfall_wad", "blocks"):
            if key == "blocks":  # the same first block: the same snapshot and pinned time
                assert queue[key][0] == prorata[key][0]
            else:
                assert queue[key] == prorata[key]
    assert compared["data"]["sweep"]["adl_policy"] == "queue"
    assert compared["data"]["sweep"]["compare_policies"] is True


def test_a_pro_rata_point_from_the_snapshot_equals_a_fresh_run(
    compared: dict[str, Any], fresh_pro_rata: sweep.Point
) -> None:
    (from_snapshot,) = [
        p
        for p in compared["result"].points
        if (p.policy, p.window_cap_pct, p.fund_pct_asked) == ("pro rata", CAPS[0], FUNDS[0])
    ]
    assert from_snapshot.replayed and from_snapshot.metrics["prorata_calls"] > 0
    # every measure but the block numbers after the replay's first (the packing of the keeper's
    # back-to-back sends; see tests/test_stress_sweep.py)
    packing = {"blocks", "blocks_to_clear_max"}
    assert {k: v for k, v in from_snapshot.metrics.items() if k not in packing} == {
        k: v for k, v in fresh_pro_rata.metrics.items() if k not in packing
    }


def test_both_policies_take_exactly_the_debt_and_nobody_more_than_its_profit(
    compared: dict[str, Any],
) -> None:
    for p in compared["data"]["points"]:
        assert int(p["overshoot_wad"]) == 0
        assert p["adl_haircuts_wad"] == p["retired_by_adl_wad"]
        assert p["haircuts_above_profit"] == 0
        assert p["prorata_calls_inconsistent"] == 0
        # where the bad debt went adds up to what was recorded
        assert p["bad_debt_recorded_usd"] == pytest.approx(
            p["fund_covered_later_usd"]
            + p["haircut_total_usd"]
            + p["socialized_usd"]
            + p["bad_debt_end_usd"],
            abs=1e-5,
        )
        largest = max((int(v) for v in p["haircuts_wad"].values()), default=0)
        assert largest <= int(p["adl_haircuts_wad"]) + round(p["close_haircuts_usd"] * 10**18) + 1


def test_the_policies_differ_where_adl_ran(compared: dict[str, Any]) -> None:
    rows = compared["data"]["comparison"]
    with_adl = [r for r in rows if r["policies"]["queue"]["adl_events"]]
    assert len(with_adl) >= 2  # no fund at either cap, and the 12% fund at a 50% cap
    for r in with_adl:
        queue, prorata = r["policies"]["queue"], r["policies"]["pro rata"]
        assert queue["replayed"] and prorata["replayed"]
        assert prorata["adl_events"] > 0
        assert prorata["accounts_hit"] >= queue["accounts_hit"]
        assert 0 <= prorata["gini_union"] <= 1 and 0 <= queue["gini_union"] <= 1
        assert prorata["adl_gas_largest_call"] < 30_000_000  # a call fits a block
    points = [p for p in compared["data"]["points"] if p["adl_events"]]
    assert all(p["prorata_calls"] == 0 for p in points if p["adl_policy"] == "queue")
    assert all(p["prorata_calls"] > 0 for p in points if p["adl_policy"] == "pro rata")


def test_a_point_without_bad_debt_is_not_replayed_under_pro_rata(
    compared: dict[str, Any],
) -> None:
    pair = _by_point(compared["data"])[(100.0, 12.0)]
    queue, prorata = pair["queue"], pair["pro rata"]
    assert queue["bad_debt_recorded_wad"] == "0" and queue["adl_events"] == 0, (
        "the premise: a 12% fund at a 100% cap pays the whole shortfall of this book"
    )
    assert queue["replayed"] and not prorata["replayed"]
    same = {k: v for k, v in prorata.items() if k not in ("adl_policy", "replayed", "wall_seconds")}
    assert same == {k: v for k, v in queue.items() if k in same}
    assert all(
        p["replayed"] for p in compared["data"]["points"] if p["bad_debt_recorded_wad"] != "0"
    )


def test_last_pro_rata_replay_against_the_raw_logs(compared: dict[str, Any]) -> None:
    bw: Bulwark = compared["bw"]
    last = compared["result"].points[-1]
    assert (last.policy, last.window_cap_pct, last.fund_pct_asked) == ("pro rata", 50.0, 12.0)
    start, end = last.metrics["blocks"]
    calls = bw.ch.events.AdlProRataApplied().get_logs(from_block=start, to_block=end)
    steps = bw.ch.events.AutoDeleveraged().get_logs(from_block=start, to_block=end)
    assert calls and steps
    # the traders' keys are derived from the seed (bulwark/sim/stress.py)
    addresses = [derived_account(GAP_SEED, f"trader-{i}").address for i in range(GAP_ACCOUNTS)]
    for call in calls:
        a = call["args"]
        mine = [s for s in steps if s["transactionHash"] == call["transactionHash"]]
        assert sum(int(s["args"]["haircutWad"]) for s in mine) == a["absorbedWad"]
        assert a["absorbedWad"] <= a["debtTakenWad"]
        assert len(mine) == a["targets"]
        before = int(call["blockNumber"]) - 1
        market = int(a["marketId"])
        for s in mine:
            pos = bw.ch.functions.positionOf(s["args"]["account"], market).call(
                block_identifier=before
            )
            profit = rm.unrealized_pnl(int(pos[0]), int(pos[1]), int(s["args"]["priceWad"]))
            assert 0 <= s["args"]["haircutWad"] <= profit
        # the set presented: every account the contract scored above zero on the winning side
        scores = bw.ch.functions.adlScoresOf(market, addresses).call(block_identifier=before)
        winning_long = int(mine[0]["args"]["closedSizeWad"]) > 0
        eligible = set()
        for account, score in zip(addresses, scores, strict=True):
            size = int(bw.ch.functions.positionOf(account, market).call(block_identifier=before)[0])
            if score > 0 and (size > 0) == winning_long:
                eligible.add(account)
        assert {s["args"]["account"] for s in mine} == eligible


def test_files_and_summary_show_the_comparison(compared: dict[str, Any]) -> None:
    files = compared["files"]
    assert files["comparison"].read_bytes()[:8] == PNG_MAGIC
    text = "\n".join(sweep.summary_lines(compared["data"], files))
    assert "ADL policies at each fund size with ADL" in text
    assert "queue against pro rata, window cap 50%" in text
    assert "ADL policy queue" in text


def test_adl_policy_is_set_before_the_snapshot() -> None:
    with gap_run() as run:
        result = FundSweep(run, SweepConfig((0.0,), (50.0,), adl_policy="prorata")).execute()
    (point,) = result.points
    assert point.policy == "pro rata" and point.metrics["prorata_calls"] > 0
    assert sweep.to_json(result)["sweep"]["adl_policy"] == "pro rata"


def test_command_line_policy_flags() -> None:
    from bulwark.cli import parse_args
    from bulwark.cli.ops import sweep_config

    args = parse_args(["stress", "gap", "--fund-sweep", "0,1", "--adl-policy", "prorata"])
    assert sweep_config(args).adl_policy == "prorata"
    args = parse_args(["stress", "gap", "--fund-sweep", "--compare-policies"])
    cfg = sweep_config(args)
    assert cfg.compare_policies and cfg.adl_policy is None
    assert sweep_config(parse_args(["stress", "gap", "--fund-sweep"])).adl_policy is None
