"""`bulwark demo` end to end on its own embedded Anvil: the story happens, and the report says so.

Given nothing but the build, when the demo runs, then the keeper liquidated accounts, padding
flowed into the fund, the fund paid a shortfall and was then exhausted, ADL cleared the rest, bad
debt ended at zero with no overshoot, conservation holds, and the narration points at the report
and the plots."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from bulwark import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One demo, run as `bulwark demo --out DIR` would run it; its printout and its folder."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["demo", "--out", str(out)])
    return {
        "out": out,
        "code": code,
        "text": printed.getvalue(),
        "data": json.loads((out / "report.json").read_text()),
    }


def test_demo_tells_the_whole_story(demo_run: dict[str, Any]) -> None:
    assert demo_run["code"] == 0
    data, out = demo_run["data"], demo_run["out"]

    checks = data["checks"]
    assert checks["conservation_ok"] and checks["bad_debt_zero_at_end"] and checks["overshoot_zero"]
    assert (
        data["conservation"]["vault_gap_wad"] == "0" and data["conservation"]["mirror_errors"] == []
    )
    assert int(data["bad_debt"]["closing_wad"]) == 0
    assert int(data["bad_debt"]["overshoot_wad"]) == 0

    rows = data["timeline"]
    first_padding = next(r["step"] for r in rows if r["padding_usd"] > 0)
    paid_in_full = next(
        r["step"] for r in rows if r["fund_paid_usd"] > 0 and r["bad_debt_recorded_usd"] == 0
    )
    exhausted = next(r["step"] for r in rows if r["bad_debt_recorded_usd"] > 0)
    adl = next(r["step"] for r in rows if r["adl_steps"] > 0)
    # padding flows in, then the fund pays a shortfall, then it is exhausted and ADL clears the rest
    assert first_padding < paid_in_full < exhausted <= adl
    gap = rows[exhausted]
    assert (
        gap["fund_available_usd"] == 0 and gap["fund_assets_usd"] > 0
    )  # the window cap, not empty
    assert gap["adl_haircut_usd"] == pytest.approx(gap["bad_debt_recorded_usd"], abs=1e-5)
    assert rows[-1]["bad_debt_usd"] == 0

    assert data["adl"]["steps"] >= 2 and data["adl"]["scores_non_increasing"]
    assert 0 < data["adl"]["largest_share"] < 1
    for name in ("overview", "price", "fund", "bad_debt", "liquidations", "haircuts"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC

    story = "\n".join(data["narrative"])
    assert "the fund paid" in story and "became bad debt" in story and "ran ADL" in story
    assert "Conservation holds" in story and "Overshoot $0.00" in story
    assert str(out / "report.json") in story and "overview.png" in story


def test_each_gini_is_named_with_its_population(demo_run: dict[str, Any]) -> None:
    """The story and the Lorenz plot's title give the same two coefficients, each with the traders
    it is over (those hit; every eligible trader, zeros included), so neither reads as the other."""
    from bulwark.sim import report

    adl = demo_run["data"]["adl"]
    story = "\n".join(demo_run["data"]["narrative"])
    hit = f"Gini {adl['gini_affected']:.2f} over the {adl['accounts_hit']} traders hit"
    eligible = f"{adl['gini_eligible']:.2f} over all {adl['eligible_at_start']} traders eligible"
    assert hit in story and eligible in story
    title = report._lorenz_title(adl, len(adl["eligible_haircuts_wad"]))
    assert f"Gini {adl['gini_eligible']:.2f} over the eligible" in title
    assert f"Gini {adl['gini_affected']:.2f} over the {adl['accounts_hit']} hit" in title
    assert adl["gini_affected"] != adl["gini_eligible"]  # the two populations differ here


def test_demo_prints_the_story_in_plain_words(demo_run: dict[str, Any]) -> None:
    text = demo_run["text"]
    assert text.startswith("What happened")
    assert text.splitlines() == demo_run["data"]["narrative"]
    assert "ETH gapped to $2,250 (-25.0% from the start)" in text
    assert f"Plots: {demo_run['out']}/" in text


def test_demo_on_an_unreachable_node_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), "--rpc", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bulwark demo: error: cannot reach the node") and err.count("\n") == 1
