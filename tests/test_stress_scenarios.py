"""The shipped scenarios parse, have the shape scenarios/README.md documents, and are reproducible;
bad scenario files fail with a message naming the file and line. No chain needed."""

from __future__ import annotations

import hashlib
import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from bulwark.sim import scenarios
from bulwark.sim.scenarios import PricePath, ScenarioError, Step

DEPLOYED = {"ETH-USD", "BTC-USD"}


def series(path: PricePath, market: str) -> list[tuple[int, float]]:
    return [(s.timestamp, float(s.prices[market])) for s in path.steps if market in s.prices]


def worst_move(points: list[tuple[int, float]], window: int) -> float:
    """The largest fall from any price to a later one at most `window` seconds after it."""
    worst = 0.0
    for i, (t0, p0) in enumerate(points):
        for t1, p1 in points[i + 1 :]:
            if t1 - t0 > window:
                break
            worst = min(worst, p1 / p0 - 1)
    return worst


def drawdown(points: list[tuple[int, float]]) -> float:
    peak, worst = points[0][1], 0.0
    for _, p in points:
        peak = max(peak, p)
        worst = min(worst, p / peak - 1)
    return worst


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_shipped_scenario_parses_with_deployed_markets(name: str) -> None:
    scenario, path = scenarios.load(name)
    assert scenario is not None and scenario.path.is_file()
    assert set(path.markets) <= DEPLOYED
    assert set(path.opening_prices()) == set(path.markets)
    times = [s.timestamp for s in path.steps]
    assert times == sorted(times) and len(set(times)) == len(times)
    for step in path.steps:
        assert all(p > 0 for p in step.prices.values())
    header = scenario.path.read_text().splitlines()[0]
    assert header == "timestamp,market,price"


def test_black_thursday_has_the_documented_shape() -> None:
    _, path = scenarios.load("black-thursday")
    btc, eth = series(path, "BTC-USD"), series(path, "ETH-USD")
    assert btc[0] == (1583971200, 7954.40) and eth[0] == (1583971200, 194.52)
    assert btc[1][0] - btc[0][0] == 60 and eth[1][0] - eth[0][0] == 600
    assert drawdown(btc) < -0.50  # about -53% peak to trough
    assert worst_move(btc, 3600) < -0.15  # hours of -15% and worse
    assert drawdown(eth) < -0.40
    assert len(btc) == 2220 and len(eth) == 144


def test_cascade_has_the_documented_shape() -> None:
    _, path = scenarios.load("2025-10-10")
    btc, eth = series(path, "BTC-USD"), series(path, "ETH-USD")
    assert len(btc) == len(eth) == 397
    assert worst_move(btc, 600) < -0.09
    assert -0.13 < drawdown(btc) < -0.12
    assert drawdown(eth) < -0.15  # the synthetic leg: beta 1.25
    first = btc[0][1]
    for (_, b), (_, e) in zip(btc, eth, strict=True):
        assert e == pytest.approx(3000 * (b / first) ** 1.25, abs=0.006)


def test_slow_grind_has_no_sudden_move() -> None:
    _, path = scenarios.load("slow-grind")
    assert path.duration == 10 * 24 * 3600
    for market, total in (("ETH-USD", -0.30), ("BTC-USD", -0.25)):
        pts = series(path, market)
        assert pts[-1][1] / pts[0][1] - 1 == pytest.approx(total)
        assert worst_move(pts, 3600) > -0.03


def test_gap_falls_a_quarter_in_one_step() -> None:
    _, path = scenarios.load("gap")
    for market in DEPLOYED:
        pts = series(path, market)
        moves = [b[1] / a[1] - 1 for a, b in itertools.pairwise(pts)]
        assert min(moves) < -0.24
        assert sum(1 for m in moves if m < -0.05) == 1


def test_files_match_their_generators_and_sources() -> None:
    assert scenarios.regenerate(check_only=True) == []
    readme = (scenarios.scenarios_dir() / "README.md").read_text()
    for source in sorted(scenarios.sources_dir().glob("*.csv")):
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert f"`{digest}`" in readme, f"{source.name}: checksum not in scenarios/README.md"


def test_resample_keeps_each_bucket_close_and_the_opening() -> None:
    path = PricePath(
        "t",
        "t",
        [
            Step(0, {"ETH-USD": Decimal(100), "BTC-USD": Decimal(10)}),
            Step(60, {"ETH-USD": Decimal(90)}),
            Step(120, {"ETH-USD": Decimal(95), "BTC-USD": Decimal(11)}),
            Step(180, {"ETH-USD": Decimal(80)}),
            Step(600, {"BTC-USD": Decimal(12)}),
        ],
    )
    out = path.resample(300)
    assert [s.timestamp for s in out.steps] == [0, 180, 600]
    assert out.steps[1].prices == {"ETH-USD": Decimal(80), "BTC-USD": Decimal(11)}
    assert out.steps[2].prices == {"BTC-USD": Decimal(12)}
    assert path.resample(None) is path
    assert len(path.limit(3).steps) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,market,price\n1,ETH-USD,1\n2,ETH-USD,2\n", ":1: the header must be"),
        ("timestamp,market,price\n5,ETH-USD,1\n4,ETH-USD,2\n", ":3: timestamp 4 is earlier than 5"),
        ("timestamp,market,price\n1,ETH-USD,1\n2,ETH-USD,-2\n", ":3: price '-2' must be positive"),
        ("timestamp,market,price\n1,ETH-USD,1\n2,ETH-USD,abc\n", ":3: price 'abc' is not a number"),
        ("timestamp,market,price\n1,ETH-USD,1.123456789\n2,ETH-USD,1\n", "more than 8 decimals"),
        ("timestamp,market,price\n1,ETH-USD,1\n1,ETH-USD,2\n", ":3: ETH-USD appears twice at 1"),
        ("timestamp,market,price\n1.5,ETH-USD,1\n", ":2: timestamp '1.5' is not a whole number"),
        ("timestamp,market,price\n1,ETH-USD,1\n", "at least two timestamps"),
        ("timestamp,market,price\n1,ETH-USD\n", ":2: expected 3 columns"),
    ],
)
def test_bad_file_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "bad.csv"
    file.write_text(text)
    with pytest.raises(ScenarioError, match=message) as info:
        scenarios.read_csv(file)
    assert str(file) in str(info.value)


def test_unknown_name_and_missing_file_say_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'nope'.*black-thursday"):
        scenarios.find("nope")
    with pytest.raises(ScenarioError, match="scenario file not found"):
        scenarios.find(str(tmp_path / "missing.csv"))


def test_feed_answer_is_exact_at_eight_decimals() -> None:
    assert scenarios.feed_answer(Decimal("7954.40")) == 795_440_000_000
    assert scenarios.feed_answer(Decimal("0.00000001")) == 1
