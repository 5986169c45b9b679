"""The benchmarks still run: a one-iteration gas run on its own Anvil, the screening kernel against the
exact integer health, and the report. Nothing here is timed; the figures live in bench/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from bulwark.core import riskmath as rm

WAD = 10**18
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is run from the checkout, not installed
    sys.path.insert(0, str(ROOT))


def to_wad(x: float) -> int:
    return round(x * WAD)


def test_bench_modules_import() -> None:
    for name in ("common", "profile", "gas", "screening", "e2e", "buildtime", "report"):
        importlib.import_module(f"bench.{name}")
    main = importlib.import_module("bench.__main__")
    assert main.main(["nonsense"]) == 2


def test_compile_bench_times_a_cached_compile_in_fresh_interpreters() -> None:
    from bench import buildtime

    result = buildtime.cached_compile(repeats=1)
    assert 0 < result["seconds"] < result["fresh_interpreter_seconds"]


@pytest.fixture(scope="module")
def gas_result() -> dict:
    from bench import gas

    return gas.run(runs=1, profile=True, only=("trading", "liquidate_full", "batch_10"))


def test_gas_one_iteration_measures_and_checks(gas_result: dict) -> None:
    ops = gas_result["ops"]
    assert set(ops) == {"open", "increase", "open_second_market", "withdraw_with_positions", "decrease",
                        "close", "liquidate_full", "batch_10"}  # fmt: skip
    for op in ops.values():
        assert len(op["gas_runs"]) == 1
        assert 21_000 < op["gas_median"] < 15_000_000
    # the scenarios verified what they measured
    assert gas_result["checks"]["liquidate_full"] == "closed in full, not bankrupt"
    assert gas_result["checks"]["batch_10"] == "10 full liquidations, none skipped"
    # a batch of ten costs less than ten single liquidations
    assert ops["batch_10"]["gas_median"] < 10 * ops["liquidate_full"]["gas_median"]


def test_gas_profile_accounts_for_every_unit_of_gas(gas_result: dict) -> None:
    for key in ("open", "liquidate_full"):
        p = gas_result["profiles"][key]
        execution = sum(p["by_class"].values())
        assert (
            p["intrinsic"] + execution - p["refund"]
            == p["gas_used"]
            == gas_result["ops"][key]["gas_median"]
        )
        assert sum(p["by_contract"].values()) == execution == sum(p["by_function"].values())
        assert p["by_contract"]["ClearingHouse"] > 0
        # prices come from the clearing house's copy of the feeds: the aggregator, not the adapter
        assert any("latestRoundData" in k for k in p["calls"])
        assert not any("OracleAdapter" in k for k in p["calls"])
        # the logic library's code is cold when its EXTCODESIZE check runs: an account access
        assert p["by_class"]["account access, cold (EXTCODESIZE and the like)"] == 2_600
    slots = {s["slot"] for s in gas_result["profiles"]["open"]["storage"]}
    assert "_s.positions[trader][0].sizeWad|openNotionalWad|fundingIndexWad" in slots


def test_screening_kernel_matches_exact_health() -> None:
    from bench import screening

    book, prices, markets = screening.synthetic_book(300, 3, seed=3)
    indices = np.array([0.01, -0.02, 0.005])
    equity, mmr, flagged = screening.screen(book, prices, indices, markets)
    config = rm.MarketConfig(int(0.05e18), int(0.025e18), 0, 0, 0, 0, 1, 1, 0)
    exact_flags = set()
    for i in range(book.accounts):
        positions = {m: rm.Position(to_wad(book.size[i, m]), to_wad(book.open_notional[i, m]),
                                    to_wad(book.funding_basis[i, m]))
                     for m in range(3) if book.size[i, m] != 0}  # fmt: skip
        h = rm.health(to_wad(book.margin[i]), positions, {m: to_wad(p) for m, p in enumerate(prices)},
                      {m: to_wad(x) for m, x in enumerate(indices)}, [config] * 3)  # fmt: skip
        assert equity[i] == pytest.approx(h.equity / WAD, rel=1e-9, abs=1e-6)
        assert mmr[i] == pytest.approx(h.mmr / WAD, rel=1e-9, abs=1e-6)
        if h.liquidatable and abs(h.equity - h.mmr) > WAD:  # away from the float boundary
            exact_flags.add(i)
    flagged_set = set(flagged.tolist())
    assert exact_flags <= flagged_set
    assert 0 < len(flagged_set) < book.accounts


def test_report_renders_tables_from_results(tmp_path: Path) -> None:
    from bench import common, report

    common.write_result("screening", {
        "runs": 1, "baseline_rss_mb": 30.0, "kernels": {"core": "numpy"},
        "cases": [{"kernel": "core", "accounts": 100_000, "markets": 2, "seconds_median": 0.004,
                   "seconds_p95": 0.005, "peak_rss_mb": 60.0, "target_seconds": 0.05, "met": True}],
    }, tmp_path)  # fmt: skip
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmarks\n\nkept text\n")
    report.write(tmp_path, md)
    text = md.read_text()
    assert "kept text" in text and "<!-- bench:tables:begin -->" in text
    assert "| numpy core, arrays resident | 100,000 x 2 | 4.00 ms |" in text
    report.write(tmp_path, md)  # idempotent: the generated part is replaced, not appended
    assert md.read_text() == text
