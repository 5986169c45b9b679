"""Price paths for `bulwark stress` and `bulwark feed replay`: CSVs of `timestamp,market,price`.

A scenario is a CSV file (one row per market per timestamp, rows in time order) plus, for the ones
shipped in scenarios/, a name, a description and a default sampling step. Real series are copied
digit for digit from their sources (scenarios/README.md gives the provenance); synthetic ones are
written by the generators below, so anyone can check how they were made
(`python -m bulwark.sim.scenarios --check` compares the shipped files with the generators' output).

Prices are kept as Decimal until they become a feed answer (8 decimals, an exact integer).
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from bulwark.core import paths

HEADER = ("timestamp", "market", "price")
FEED_DECIMALS = 8


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Step:
    """Prices known at `timestamp` (unix seconds): every market that printed in this step."""

    timestamp: int
    prices: dict[str, Decimal]


@dataclass(frozen=True)
class PricePath:
    """A scenario's steps in time order, the first of which sets the opening prices."""

    name: str
    source: str
    steps: list[Step]

    @property
    def markets(self) -> list[str]:
        seen: dict[str, None] = {}
        for step in self.steps:
            seen.update(dict.fromkeys(step.prices))
        return list(seen)

    @property
    def duration(self) -> int:
        return self.steps[-1].timestamp - self.steps[0].timestamp if self.steps else 0

    def opening_prices(self) -> dict[str, Decimal]:
        """The first price of every market, whenever it first prints."""
        first: dict[str, Decimal] = {}
        for step in self.steps:
            for market, price in step.prices.items():
                first.setdefault(market, price)
        return first

    def resample(self, seconds: int | None) -> PricePath:
        """One step per `seconds` bucket, holding each market's last price in the bucket (the
        bucket's close, as a candle of that length would). The first step is kept on its own so the
        opening prices stay exact. None or 0: unchanged."""
        if not seconds or len(self.steps) < 2:
            return self
        if seconds < 0:
            raise ScenarioError(f"the sampling step must be positive, got {seconds}")
        first, rest = self.steps[0], self.steps[1:]
        buckets: dict[int, Step] = {}
        for step in rest:
            key = (step.timestamp - first.timestamp - 1) // seconds
            held = buckets.get(key)
            merged = {**held.prices, **step.prices} if held else dict(step.prices)
            buckets[key] = Step(step.timestamp, merged)
        return PricePath(self.name, self.source, [first, *(buckets[k] for k in sorted(buckets))])

    def limit(self, max_steps: int | None) -> PricePath:
        """The first `max_steps` steps (the opening step included); None: unchanged."""
        if max_steps is None or max_steps >= len(self.steps):
            return self
        if max_steps < 2:
            raise ScenarioError(f"a scenario needs at least 2 steps, got a limit of {max_steps}")
        return PricePath(self.name, self.source, self.steps[:max_steps])


@dataclass(frozen=True)
class Scenario:
    """A scenario shipped in scenarios/."""

    name: str
    file: str
    title: str
    summary: str
    default_step: int | None = None  # seconds; None replays every row
    synthetic: bool = False
    aliases: tuple[str, ...] = field(default=())

    @property
    def path(self) -> Path:
        return scenarios_dir() / self.file


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "black-thursday",
            "black-thursday-2020-03-12.csv",
            "12 March 2020 (Black Thursday)",
            "real BTC (1 min, Binance BTCUSDT perpetual) and ETH (10 min, CoinAPI) from 12 March "
            "2020 00:00 UTC: BTC falls about 53% peak to trough, with a 24% hour and a 17% "
            "ten minutes",
            default_step=300,
            aliases=("2020-03-12", "march-2020"),
        ),
        Scenario(
            "cascade-2025-10-10",
            "cascade-2025-10-10.csv",
            "10 October 2025 liquidation cascade",
            "real BTC (1 min, Binance BTCUSDT perpetual) from 17:07 UTC: -9.6% in ten minutes, "
            "-12.5% peak to trough; ETH is synthetic, BTC's path with a beta of 1.25 (-15.3%)",
            default_step=None,
            aliases=("2025-10-10", "oct-2025", "cascade"),
        ),
        Scenario(
            "slow-grind",
            "slow-grind.csv",
            "Slow grind down",
            "synthetic: hourly for 10 days, ETH -30% and BTC -25% with small daily waves; "
            "funding accrues, positions bleed into liquidation one by one",
            synthetic=True,
            aliases=("grind",),
        ),
        Scenario(
            "demo",
            "demo.csv",
            "The demo's crash",
            "synthetic: ETH slides 10% in four ten-minute steps, then gaps to -25%; BTC stays flat",
            synthetic=True,
        ),
        Scenario(
            "gap",
            "gap.csv",
            "Gap through every bankruptcy price",
            "synthetic: both markets gap 25% down in one ten-minute step (an oracle that "
            "stalled, then reopened), far beyond the fund's daily window: the fund is "
            "exhausted and ADL clears what it can; a day later the fund's window reopens and "
            "the grace period ends",
            synthetic=True,
            aliases=("gap-adl",),
        ),
    )
}


def scenarios_dir() -> Path:
    return paths.project_root() / "scenarios"


def find(name_or_path: str) -> tuple[Scenario | None, Path]:
    """The shipped scenario called `name_or_path` (or an alias), else the CSV file at that path."""
    key = name_or_path.strip().lower()
    for scenario in SCENARIOS.values():
        if key == scenario.name or key in scenario.aliases:
            return scenario, scenario.path
    file = Path(name_or_path)
    if file.suffix.lower() == ".csv" or file.exists():
        if not file.is_file():
            raise ScenarioError(f"scenario file not found: {file}")
        return None, file
    known = ", ".join(SCENARIOS)
    raise ScenarioError(f"unknown scenario {name_or_path!r} (shipped: {known}; or a path to a CSV)")


def load(name_or_path: str) -> tuple[Scenario | None, PricePath]:
    scenario, file = find(name_or_path)
    return scenario, read_csv(file, name=scenario.name if scenario else file.stem)


def read_csv(file: str | Path, name: str | None = None) -> PricePath:
    """Parses `timestamp,market,price` rows; the rows of one timestamp form one step."""
    file = Path(file)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {file}: {exc.strerror}") from None
    return parse_rows(text.splitlines(), source=str(file), name=name or file.stem)


def parse_rows(lines: Iterable[str], source: str, name: str) -> PricePath:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise ScenarioError(f"{source}:1: the header must be {','.join(HEADER)}, got {header}")
    steps: list[Step] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        timestamp, market, price = _parse_row(row, f"{source}:{line_no}")
        if steps and timestamp < steps[-1].timestamp:
            raise ScenarioError(
                f"{source}:{line_no}: timestamp {timestamp} is earlier than {steps[-1].timestamp}"
            )
        if steps and timestamp == steps[-1].timestamp:
            if market in steps[-1].prices:
                raise ScenarioError(f"{source}:{line_no}: {market} appears twice at {timestamp}")
            steps[-1].prices[market] = price
        else:
            steps.append(Step(timestamp, {market: price}))
    if len(steps) < 2:
        raise ScenarioError(f"{source}: a scenario needs at least two timestamps")
    return PricePath(name, source, steps)


def _parse_row(row: Sequence[str], where: str) -> tuple[int, str, Decimal]:
    if len(row) != 3:
        raise ScenarioError(f"{where}: expected 3 columns (timestamp,market,price), got {len(row)}")
    raw_ts, raw_market, raw_price = (cell.strip() for cell in row)
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise ScenarioError(
            f"{where}: timestamp {raw_ts!r} is not a whole number of seconds"
        ) from None
    market = raw_market.upper()
    if not market or "-" not in market:
        raise ScenarioError(f"{where}: market {raw_market!r} is not a name like ETH-USD")
    try:
        price = Decimal(raw_price)
    except InvalidOperation:
        raise ScenarioError(f"{where}: price {raw_price!r} is not a number") from None
    if not price.is_finite() or price <= 0:
        raise ScenarioError(f"{where}: price {raw_price!r} must be positive")
    if price.as_tuple().exponent < -FEED_DECIMALS:  # type: ignore[operator]
        raise ScenarioError(f"{where}: price {raw_price!r} has more than {FEED_DECIMALS} decimals")
    return timestamp, market, price


def feed_answer(price: Decimal) -> int:
    """The 8-decimal aggregator answer for a price (exact: at most 8 decimals are accepted)."""
    return int(price.scaleb(FEED_DECIMALS))


def write_csv(file: Path, rows: Iterable[tuple[int, str, str]]) -> None:
    with file.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


# ---------------------------------------------------------------------------- synthetic generators

GRIND_START = 1_767_225_600  # 2026-01-01 00:00 UTC: a label only, the chain keeps its own clock
GAP_START = 1_767_225_600


def slow_grind_rows() -> list[tuple[int, str, str]]:
    """Hourly for 10 days: a straight-line decline (ETH 3000 -> 2100, BTC 60000 -> 45000) times
    1 + 1.2% sin(2 pi h / 24) + 0.5% sin(2 pi h / 7): daily waves that liquidate in clusters."""
    hours = 240
    rows: list[tuple[int, str, str]] = []
    for h in range(hours + 1):
        wave = 1 + 0.012 * math.sin(2 * math.pi * h / 24) + 0.005 * math.sin(2 * math.pi * h / 7)
        for market, start, end in (("ETH-USD", 3000.0, 2100.0), ("BTC-USD", 60000.0, 45000.0)):
            trend = start + (end - start) * h / hours
            price = trend if h in (0, hours) else trend * wave
            rows.append((GRIND_START + 3600 * h, market, f"{price:.2f}"))
    return rows


def gap_rows() -> list[tuple[int, str, str]]:
    """Ten-minute steps: two flat, one 25% gap down in both markets, then a small drift and a 2%
    bounce; then two quiet steps 12 and 25 hours after the gap, so that the fund's next window opens
    (it may cover bad debt again) and the grace period ends (what is left may be socialised). The
    gap jumps past the bankruptcy price of every long above 4x leverage at once."""
    path = [
        (0, 1.00, 1.00),
        (600, 1.00, 1.00),
        (1200, 0.995, 0.997),
        (1800, 0.75, 0.75),
        (2400, 0.745, 0.748),
        (3000, 0.74, 0.745),
        (3600, 0.755, 0.76),
        (4200, 0.76, 0.765),
        (1800 + 12 * 3600, 0.765, 0.77),
        (1800 + 25 * 3600, 0.77, 0.775),
    ]
    rows: list[tuple[int, str, str]] = []
    for offset, eth, btc in path:
        ts = GAP_START + offset
        rows.append((ts, "ETH-USD", f"{3000 * eth:.2f}"))
        rows.append((ts, "BTC-USD", f"{60000 * btc:.2f}"))
    return rows


def sources_dir() -> Path:
    return scenarios_dir() / "sources"


def _source_rows(file: str) -> list[tuple[int, str, str]]:
    """Rows of a real series in scenarios/sources/, prices as written (digit for digit)."""
    with (sources_dir() / file).open(newline="") as src:
        reader = csv.reader(src)
        next(reader)
        return [(int(ts), market, price) for ts, market, price in reader]


def black_thursday_rows() -> list[tuple[int, str, str]]:
    """The real BTC (1 min) and ETH (10 min) series of 12 March 2020, merged in time order."""
    rows = _source_rows("btc_usd_2020-03-12_1m.csv") + _source_rows("eth_usd_2020-03-12_10m.csv")
    return sorted(rows, key=lambda r: (r[0], r[1]))


CASCADE_ETH_BETA = 1.25


def cascade_rows() -> list[tuple[int, str, str]]:
    """The real BTC series of 10 October 2025 (1 min) and a synthetic ETH leg that follows it with
    a beta of 1.25: ETH_t = 3000 x (BTC_t / BTC_0) ** 1.25, to two decimals."""
    btc = _source_rows("btc_usd_2025-10-10_1m.csv")
    first = float(btc[0][2])
    rows: list[tuple[int, str, str]] = []
    for ts, market, price in btc:
        rows.append((ts, market, price))
        eth = 3000.0 * (float(price) / first) ** CASCADE_ETH_BETA
        rows.append((ts, "ETH-USD", f"{eth:.2f}"))
    return rows


def demo_rows() -> list[tuple[int, str, str]]:
    """`bulwark demo`'s path, ten-minute steps: ETH 3000, then -3.3%, -5%, -7%, -10.3% (steps that
    liquidate the 18x, 12x and 10x longs in turn), a pause, a gap to 2250 (-25%) and a small bounce.
    BTC holds 60000 throughout."""
    eth = ["3000", "2995", "2900", "2850", "2790", "2690", "2680", "2250", "2265", "2290"]
    rows: list[tuple[int, str, str]] = []
    for i, price in enumerate(eth):
        ts = GAP_START + 600 * i
        rows.append((ts, "ETH-USD", f"{Decimal(price):.2f}"))
        rows.append((ts, "BTC-USD", "60000.00"))
    return rows


GENERATORS = {
    "black-thursday": black_thursday_rows,
    "cascade-2025-10-10": cascade_rows,
    "slow-grind": slow_grind_rows,
    "gap": gap_rows,
    "demo": demo_rows,
}


def regenerate(check_only: bool = False) -> list[str]:
    """Writes (or, with check_only, compares) the scenario files built from sources/ and the
    synthetic generators; returns the files that differ."""
    mismatches: list[str] = []
    for name, generate in GENERATORS.items():
        file = SCENARIOS[name].path
        rows = generate()
        if check_only:
            expected = [",".join(HEADER), *(",".join(map(str, r)) for r in rows)]
            actual = file.read_text().splitlines() if file.is_file() else []
            if actual != expected:
                mismatches.append(str(file))
        else:
            write_csv(file, rows)
    return mismatches


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--check"]:
        bad = regenerate(check_only=True)
        for file in bad:
            print(f"{file} differs from its generator", file=sys.stderr)
        return 1 if bad else 0
    if args == ["--write"]:
        regenerate()
        return 0
    print("usage: python -m bulwark.sim.scenarios --check | --write", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
