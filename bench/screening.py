"""Keeper screening: the health of every account at each price tick, vectorised with numpy.

The arrays are shaped like the keeper's account index: per account a margin, and per account and
market a size, an open notional (size x entry price summed over open fills) and a funding basis
(size x the funding index at the last settlement), all in quote units as floats. Per tick:

    equity = margin + sum_m (size x price - open notional) - (size x index - funding basis)
    MMR    = sum_m |size| x price x mmRatio
    flagged = equity < MMR and the account holds a position

That is the contract's Ledger.health; the floats only pick candidates, which the keeper confirms with
the exact on-chain view (healthsOf) before it liquidates anything.

Two kernels are timed: the keeper's own (bulwark.keeper.screening.screen, given an index of the same synthetic
accounts held as AccountIndex holds them) and this module's :func:`screen`, an element-wise pass over
resident arrays, kept as an independent baseline.

Each size runs in a child process, so its peak resident memory is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import Row, fmt_ms, median, peak_rss_mb

SIZES = (1_000, 10_000, 100_000)
MARKETS = 2  # the default deployment; a wider case is measured at 100k accounts
WIDE_MARKETS = 16
TICKS = 50
TARGET_SECONDS = 0.050
TARGET_RSS_MB = 300.0

Array = npt.NDArray[np.float64]


@dataclass
class Book:
    """Per-account state as the keeper indexes it (float64, quote units)."""

    margin: Array  # (N,)
    size: Array  # (N, M), base units, long > 0
    open_notional: Array  # (N, M)
    funding_basis: Array  # (N, M)

    @property
    def accounts(self) -> int:
        return int(self.margin.shape[0])


@dataclass(frozen=True)
class Markets:
    mm_ratio: Array  # (M,)
    im_ratio: Array  # (M,)


def screen(
    book: Book, prices: Array, indices: Array, markets: Markets
) -> tuple[Array, Array, npt.NDArray[np.intp]]:
    """Equity and maintenance margin of every account, and the indices of those below it."""
    value = book.size * (prices - indices) - book.open_notional + book.funding_basis
    equity = book.margin + value.sum(axis=1)
    mmr = np.abs(book.size) @ (prices * markets.mm_ratio)
    holds = (book.size != 0).any(axis=1)
    return equity, mmr, np.flatnonzero((equity < mmr) & holds)


def synthetic_book(n: int, m: int, seed: int = 7) -> tuple[Book, Array, Markets]:
    """N accounts over M markets: about half the markets held per account, leverage 1-20x, entries
    within 10% of the current price, funding bases at a small index; returns book, prices, markets."""
    rng = np.random.default_rng(seed)
    prices = np.geomspace(1.0, 60_000.0, m)
    held = rng.random((n, m)) < 0.5
    held[np.arange(n), rng.integers(0, m, n)] = True  # everyone holds something
    notional = rng.lognormal(np.log(20_000.0), 1.0, (n, m)) * held
    side = np.where(rng.random((n, m)) < 0.5, -1.0, 1.0)
    entry = prices * rng.uniform(0.9, 1.1, (n, m))
    size = side * notional / prices
    open_notional = size * entry
    index0 = rng.normal(0.0, 0.5, m)
    funding_basis = size * index0
    leverage = rng.uniform(1.0, 20.0, n)
    margin = notional.sum(axis=1) / leverage
    markets = Markets(mm_ratio=np.full(m, 0.025), im_ratio=np.full(m, 0.05))
    return Book(margin, size, open_notional, funding_basis), prices, markets


def keeper_kernel_available() -> bool:
    try:
        from bulwark.keeper import screening as keeper_screening
    except ImportError:
        return False
    return hasattr(keeper_screening, "screen")


def _keeper_has_arrays() -> bool:
    try:
        from bulwark.keeper import index as keeper_index
    except ImportError:
        return False
    return hasattr(keeper_index, "ScreenArrays")


def _keeper_inputs(book: Book, prices: Array, markets: Markets) -> tuple[Any, Any]:
    """The same accounts as the keeper's AccountIndex holds them (exact AccountState with WAD integers
    and, when the keeper keeps them, its resident ScreenArrays, written once as the index does when it
    reads accounts), and a MarketSnapshot; `screen` reads ``index.arrays`` or ``index.accounts``."""
    from types import SimpleNamespace

    from bulwark.core import riskmath as rm
    from bulwark.keeper import index as keeper_index
    from bulwark.keeper.index import AccountState, BlockRef
    from bulwark.keeper.screening import MarketSnapshot

    w = 10**18
    accounts: dict[str, AccountState] = {}
    for i in range(book.accounts):
        size, notional, basis = book.size[i], book.open_notional[i], book.funding_basis[i]
        positions = {
            int(m): rm.Position(int(size[m] * w), int(notional[m] * w), int(basis[m] * w))
            for m in np.flatnonzero(size)
        }
        accounts[f"0x{i:040x}"] = AccountState(int(book.margin[i] * w), positions)
    m = len(prices)
    config = rm.MarketConfig(
        *(int(x) for x in (0.05e18, 0.025e18, 5e14, 1e16, 5e17, 3e15, 1e22, 1e23, 1e22))
    )
    risk = rm.RiskParams(int(0.2e18), int(3e18), int(0.2e18), 86_400, int(5e18), int(1e21))
    snap = MarketSnapshot(
        block=BlockRef(1, "0x0", 0, 0),
        prices={k: int(prices[k] * w) for k in range(m)},
        indices={k: 0 for k in range(m)},
        configs={k: config for k in range(m)},
        risk=risk,
    )
    del markets
    index = SimpleNamespace(accounts=accounts)
    screen_arrays = getattr(keeper_index, "ScreenArrays", None)
    if screen_arrays is not None:
        index.arrays = screen_arrays.from_states(accounts)
    return index, snap


def _tick_keeper(index: Any, snap: Any, prices: Array, indices: Array) -> int:
    from bulwark.keeper.screening import screen as keeper_screen

    w = 10**18
    snap.prices = {k: int(p * w) for k, p in enumerate(prices)}
    snap.indices = {k: int(x * w) for k, x in enumerate(indices)}
    return len(keeper_screen(index, snap, 0.0).candidates)


def measure(n: int, m: int, ticks: int = TICKS, kernel: str = "core") -> dict[str, Any]:
    """Times `ticks` screens of N accounts in M markets on a random price walk (this process).

    kernel "core": :func:`screen` over arrays kept resident; "keeper": bulwark.keeper.screening.screen, which
    rebuilds its arrays from the account index on every call."""
    rss_before = peak_rss_mb()
    book, prices, markets = synthetic_book(n, m)
    indices = np.zeros(m)
    if kernel == "keeper":
        index, snap = _keeper_inputs(book, prices, markets)
        del book  # the keeper holds its index, not these arrays

        def tick(p: Array, x: Array) -> int:
            return _tick_keeper(index, snap, p, x)
    else:

        def tick(p: Array, x: Array) -> int:
            return len(screen(book, p, x, markets)[2])

    rng = np.random.default_rng(11)
    tick(prices, indices)  # warm-up
    times: list[float] = []
    flagged_counts: list[int] = []
    for _ in range(ticks):
        prices = prices * np.exp(rng.normal(0.0, 0.01, m))
        indices = indices + rng.normal(0.0, 0.001, m)
        start = time.perf_counter()
        flagged_counts.append(tick(prices, indices))
        times.append(time.perf_counter() - start)
    ordered = sorted(times)
    return {
        "accounts": n,
        "markets": m,
        "ticks": ticks,
        "kernel": kernel,
        "seconds_median": median(times),
        "seconds_p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "seconds_min": ordered[0],
        "flagged_median": int(median(flagged_counts)),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_in_child(n: int, m: int, ticks: int, kernel: str) -> dict[str, Any]:
    """`measure` in a fresh interpreter, so the peak RSS is this case's alone (plus numpy)."""
    code = (
        "import json; from bench.screening import measure; "
        f"print(json.dumps(measure({n}, {m}, {ticks}, {kernel!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"screening child failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def baseline_rss_mb() -> float:
    """Peak RSS of an interpreter that only imported numpy (what every figure includes)."""
    code = "import numpy; from bench.common import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _ticks_for(n: int, kernel: str) -> int:
    return TICKS if kernel == "core" or n <= 10_000 else 10


def run(runs: int = 3, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Each case `runs` times (a fresh child each); the median of the per-run medians."""
    kernels = ["keeper", "core"] if keeper_kernel_available() else ["core"]
    cases = [(k, n, MARKETS) for k in kernels for n in sizes]
    if max(sizes) >= 100_000:  # the core alone: the keeper's index of 800k positions takes minutes
        cases.append(("core", max(sizes), WIDE_MARKETS))
    results = []
    for kernel, n, m in cases:
        samples = [measure_in_child(n, m, _ticks_for(n, kernel), kernel) for _ in range(runs)]
        seconds = median(s["seconds_median"] for s in samples)
        rss = max(s["peak_rss_mb"] for s in samples)
        targeted = n >= 100_000
        results.append(
            {
                **samples[0],
                "seconds_median": seconds,
                "seconds_p95": median(s["seconds_p95"] for s in samples),
                "seconds_runs": [s["seconds_median"] for s in samples],
                "peak_rss_mb": rss,
                "target_seconds": TARGET_SECONDS if targeted else None,
                "target_rss_mb": TARGET_RSS_MB if targeted else None,
                "met": (seconds < TARGET_SECONDS and rss < TARGET_RSS_MB) if targeted else None,
            }
        )
    return {
        "runs": runs,
        "kernels": {
            "keeper": "bulwark.keeper.screening.screen(index, snapshot) over an index holding the accounts as "
            "AccountIndex does (exact states, plus its resident ScreenArrays when bulwark.keeper.index has "
            "them: "
            + ("yes" if _keeper_has_arrays() else "no, so the arrays are built per call")
            + ")",
            "core": "bench.screening.screen: an element-wise numpy pass over resident arrays of margin, "
            "size, open notional and funding basis, kept as an independent baseline",
        },
        "keeper_screening_present": keeper_kernel_available(),
        "baseline_rss_mb": baseline_rss_mb(),
        "cases": results,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    section = "Keeper screening per price tick"
    out = []
    for c in result["cases"]:
        name = (
            "bulwark.keeper.screening.screen"
            if c["kernel"] == "keeper"
            else "numpy core, arrays resident"
        )
        item = f"{name}: {c['accounts']:,} accounts x {c['markets']} markets"
        value = f"{fmt_ms(c['seconds_median'])}, {c['peak_rss_mb']:.0f} MB peak RSS"
        target = "< 50 ms, < 300 MB" if c["target_seconds"] else ""
        out.append(Row(section, item, value, target, c["met"]))
    return out


if __name__ == "__main__":
    print(json.dumps(run(runs=1), indent=2))
