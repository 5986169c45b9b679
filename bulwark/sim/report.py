"""The stress report: JSON, PNG plots and a terminal summary, every number read from the chain.

Sources: the views sampled after each step (bulwark/sim/stress.py `Sample`), the clearing house's and the
fund's events over the replay (Liquidated, PositionLiquidated, ShortfallSettled, BadDebtRecorded,
BadDebtCovered, BadDebtSocialized, AutoDeleveraged, ProfitHaircutOnClose, ShortfallCovered), views
at the last block, and the conservation check of bulwark/keeper/invariants.py.

ADL measures, after T. Chitra's 2025 papers on auto-deleveraging:

- overshoot: haircuts taken beyond the bad debt they retired. The debt ADL retired is what the
  ledger of bad debt says it must have: opening debt + recorded - covered by the fund - socialised
  - haircuts on profitable closes - closing debt. Overshoot = sum of ADL haircuts - that; it must
  be zero (Hyperliquid's queue overshot by $45-52M on 10 October 2025).
- concentration: the largest share of all haircuts borne by one trader, and the Gini coefficient
  of the haircuts, over the traders who bore one and over every trader who was eligible (a
  profitable position opposite the debt, by the contract's own `adlScoresOf`) when ADL began.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulwark.chain.contracts import WAD, Bulwark
from bulwark.core.errors import BulwarkError
from bulwark.keeper import invariants

if TYPE_CHECKING:
    from bulwark.sim.stress import RunResult

SIDES = ("long", "short")
CH_EVENTS = (
    "Liquidated",
    "PositionLiquidated",
    "ShortfallSettled",
    "BadDebtRecorded",
    "BadDebtCovered",
    "BadDebtSocialized",
    "AutoDeleveraged",
    "ProfitHaircutOnClose",
    "LiquidationSkipped",
    "AdlProRataApplied",
)
PLOTS = ("overview", "price", "fund", "bad_debt", "liquidations", "haircuts")


def usd(wad: int) -> float:
    """WAD quote to dollars, six decimals, for reading (exact values stay in the *_wad fields)."""
    return round(wad / WAD, 6)


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    name: str
    block: int
    tx: str
    log_index: int
    args: dict[str, Any]


def fetch_events(bw: Bulwark, from_block: int, to_block: int) -> list[Event]:
    """Every event of interest in [from_block, to_block], in chain order."""
    found: list[Event] = []
    sources = [(bw.ch, name) for name in CH_EVENTS] + [(bw.fund, "ShortfallCovered")]
    for contract, name in sources:
        for log in getattr(contract.events, name).get_logs(
            from_block=from_block, to_block=to_block
        ):
            found.append(
                Event(
                    name,
                    int(log["blockNumber"]),
                    log["transactionHash"].hex(),
                    int(log["logIndex"]),
                    dict(log["args"]),
                )
            )
    found.sort(key=lambda e: (e.block, e.log_index))
    return found


# ---------------------------------------------------------------------------- measures


def gini(values: Sequence[int]) -> float:
    """Gini coefficient of non-negative amounts (0: equal; towards 1: one holder has it all)."""
    xs = sorted(v for v in values if v >= 0)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


def lorenz(values: Sequence[int]) -> tuple[list[float], list[float]]:
    xs = sorted(values)
    total = sum(xs) or 1
    people = [0.0] + [(i + 1) / len(xs) for i in range(len(xs))]
    share, run = [0.0], 0
    for x in xs:
        run += x
        share.append(run / total)
    return people, share


def _sum(events: Iterable[Event], field: str) -> int:
    return sum(int(e.args[field]) for e in events)


def by_name(events: Sequence[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        grouped[e.name].append(e)
    return grouped


def liquidation_totals(ev: Mapping[str, list[Event]]) -> dict[str, Any]:
    liq = ev.get("Liquidated", [])
    closes = ev.get("PositionLiquidated", [])
    settled = ev.get("ShortfallSettled", [])
    return {
        "count": len(liq),
        "accounts": len({e.args["account"] for e in liq}),
        "bankrupt": sum(1 for e in liq if e.args["bankrupt"]),
        "partial_closes": sum(1 for e in closes if int(e.args["newSizeWad"]) != 0),
        "full_closes": sum(1 for e in closes if int(e.args["newSizeWad"]) == 0),
        "skipped_in_batches": len(ev.get("LiquidationSkipped", [])),
        "closed_notional_usd": usd(
            sum(abs(int(e.args["closedSizeWad"])) * int(e.args["priceWad"]) // WAD for e in closes)
        ),
        "penalty_usd": usd(_sum(liq, "penaltyWad")),
        "keeper_rewards_usd": usd(_sum(liq, "rewardWad")),
        "padding_usd": usd(_sum(liq, "paddingWad")),
        "padding_wad": str(_sum(liq, "paddingWad")),
        "shortfall_usd": usd(_sum(settled, "shortfallWad")),
        "shortfall_wad": str(_sum(settled, "shortfallWad")),
        "shortfall_covered_usd": usd(_sum(settled, "coveredWad")),
        "shortfall_covered_wad": str(_sum(settled, "coveredWad")),
        "shortfall_to_bad_debt_usd": usd(_sum(settled, "badDebtWad")),
        "shortfall_to_bad_debt_wad": str(_sum(settled, "badDebtWad")),
    }


def bad_debt_ledger(
    ev: Mapping[str, list[Event]], opening_wad: int, closing_wad: int
) -> dict[str, Any]:
    recorded = _sum(ev.get("BadDebtRecorded", []), "amountWad")
    covered = _sum(ev.get("BadDebtCovered", []), "amountWad")
    socialized = _sum(ev.get("BadDebtSocialized", []), "amountWad")
    close_haircuts = _sum(ev.get("ProfitHaircutOnClose", []), "haircutWad")
    adl_haircuts = _sum(ev.get("AutoDeleveraged", []), "haircutWad")
    retired_by_adl = opening_wad + recorded - covered - socialized - close_haircuts - closing_wad
    by_market: dict[str, int] = defaultdict(int)
    for e in ev.get("BadDebtRecorded", []):
        by_market[f"{e.args['marketId']}:{SIDES[int(e.args['side'])]}"] += int(e.args["amountWad"])
    return {
        "opening_usd": usd(opening_wad),
        "recorded_usd": usd(recorded),
        "recorded_wad": str(recorded),
        "recorded_by_market_side_usd": {k: usd(v) for k, v in sorted(by_market.items())},
        "covered_by_fund_later_usd": usd(covered),
        "socialized_usd": usd(socialized),
        "close_haircuts_usd": usd(close_haircuts),
        "adl_haircuts_usd": usd(adl_haircuts),
        "adl_haircuts_wad": str(adl_haircuts),
        "retired_by_adl_wad": str(retired_by_adl),
        "closing_usd": usd(closing_wad),
        "closing_wad": str(closing_wad),
        "overshoot_wad": str(adl_haircuts - retired_by_adl),
    }


def adl_measures(
    bw: Bulwark, ev: Mapping[str, list[Event]], traders: Sequence[str]
) -> dict[str, Any]:
    adl = ev.get("AutoDeleveraged", [])
    closes = ev.get("ProfitHaircutOnClose", [])
    per_account: dict[str, int] = defaultdict(int)
    for e in [*adl, *closes]:
        per_account[e.args["account"]] += int(e.args["haircutWad"])
    total = sum(per_account.values())
    eligible = _eligible_at_first_adl(bw, adl, traders)
    eligible_haircuts = [per_account.get(a, 0) for a in eligible]
    steps_after_clear = _steps_after_clear(adl)
    later = _bankrupt_after_adl(adl, ev.get("ShortfallSettled", []))
    largest = max(per_account.values(), default=0)
    ranked = sorted(per_account.items(), key=lambda kv: -kv[1])
    return {
        "steps": len(adl),
        "transactions": len({e.tx for e in adl}),
        "targets": len({e.args["account"] for e in adl}),
        "accounts_hit": len(per_account),  # ADL targets and profitable closes that paid a haircut
        "largest_haircut_usd": usd(largest),
        "haircut_total_usd": usd(total),
        "closed_notional_usd": usd(
            sum(abs(int(e.args["closedSizeWad"])) * int(e.args["priceWad"]) // WAD for e in adl)
        ),
        "largest_share": round(largest / total, 6) if total else 0.0,
        "gini_affected": round(gini(list(per_account.values())), 6),
        "gini_eligible": round(gini(eligible_haircuts), 6) if eligible else None,
        "eligible_at_start": len(eligible),
        "steps_after_debt_cleared": steps_after_clear,
        # steps that closed a position but took nothing (the target had no room above maintenance)
        "steps_without_haircut": sum(1 for e in adl if int(e.args["haircutWad"]) == 0),
        "scores_non_increasing": _scores_ordered(adl),
        "targets_later_bankrupt": len(later),
        "shortfall_of_targets_later_bankrupt_usd": usd(sum(later.values())),
        "top_haircuts": [{"account": a, "haircut_usd": usd(h)} for a, h in ranked[:10]],
        "haircuts_wad": {a: str(h) for a, h in ranked},
        "eligible_haircuts_wad": [str(h) for h in eligible_haircuts],
    }


def _eligible_at_first_adl(bw: Bulwark, adl: Sequence[Event], traders: Sequence[str]) -> list[str]:
    """Traders the contract scored above zero, on the side opposite the debt, in the block before
    each market's first ADL step."""
    eligible: list[str] = []
    seen: set[int] = set()
    for e in adl:
        market = int(e.args["marketId"])
        if market in seen:
            continue
        seen.add(market)
        target_long = int(e.args["closedSizeWad"]) > 0
        block = e.block - 1
        scores = bw.ch.functions.adlScoresOf(market, list(traders)).call(block_identifier=block)
        for account, score in zip(traders, scores, strict=True):
            if score == 0 or account in eligible:
                continue
            size = int(bw.ch.functions.positionOf(account, market).call(block_identifier=block)[0])
            if (size > 0) == target_long:
                eligible.append(account)
    return eligible


def _bankrupt_after_adl(adl: Sequence[Event], settled: Sequence[Event]) -> dict[str, int]:
    """ADL targets that went bankrupt afterwards (a cross-margin account whose haircut profit had
    been carrying a losing position elsewhere), with the shortfall each then left."""
    first_hit: dict[str, tuple[int, int]] = {}
    for e in adl:
        first_hit.setdefault(e.args["account"], (e.block, e.log_index))
    later: dict[str, int] = defaultdict(int)
    for e in settled:
        hit = first_hit.get(e.args["account"])
        if hit is not None and (e.block, e.log_index) > hit:
            later[e.args["account"]] += int(e.args["shortfallWad"])
    return dict(later)


def _steps_after_clear(adl: Sequence[Event]) -> int:
    """ADL steps in a transaction after an earlier step of it had left the debt at zero."""
    cleared: set[tuple[str, int]] = set()
    late = 0
    for e in adl:
        key = (e.tx, int(e.args["marketId"]))
        if key in cleared:
            late += 1
        if int(e.args["badDebtRemainingWad"]) == 0:
            cleared.add(key)
    return late


def _scores_ordered(adl: Sequence[Event]) -> bool:
    last: dict[str, int] = {}
    for e in adl:
        score = int(e.args["scoreWad"])
        if e.tx in last and score > last[e.tx]:
            return False
        last[e.tx] = score
    return True


# ---------------------------------------------------------------------------- timeline


def timeline(
    result: RunResult, events: Sequence[Event], market_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per step: the sampled views and what the events of the step's blocks add up to."""
    rows: list[dict[str, Any]] = []
    bounds = [s.block for s in result.samples]
    per_step: list[list[Event]] = [[] for _ in bounds]
    k = 0
    for e in sorted(events, key=lambda x: x.block):
        while k < len(bounds) - 1 and e.block > bounds[k]:
            k += 1
        per_step[k].append(e)
    for s, evs in zip(result.samples, per_step, strict=True):
        g = by_name(evs)
        liq = g.get("Liquidated", [])
        rows.append(
            {
                "step": s.step,
                "block": s.block,
                "chain_time": s.chain_time,
                "scenario_time": s.scenario_time,
                "prices": {m: usd(s.prices_wad[m]) for m in market_names},
                "fund_assets_usd": usd(s.fund_assets_wad),
                "fund_available_usd": usd(s.fund_available_wad),
                "window_remaining_usd": usd(s.window_remaining_wad),
                "bad_debt_usd": usd(s.bad_debt_wad),
                "bad_debt_peak_usd": usd(_peak_debt(s.bad_debt_wad, g.get("BadDebtRecorded", []))),
                "pool_equity_usd": usd(s.pool_equity_wad),
                "liquidations": len(liq),
                "liquidated_accounts": len({e.args["account"] for e in liq}),
                "bankrupt": sum(1 for e in liq if e.args["bankrupt"]),
                "padding_usd": usd(_sum(liq, "paddingWad")),
                "shortfall_usd": usd(_sum(g.get("ShortfallSettled", []), "shortfallWad")),
                "fund_paid_usd": usd(_sum(g.get("ShortfallCovered", []), "paidWad")),
                "fund_paid_at_liquidation_usd": usd(
                    _sum(g.get("ShortfallSettled", []), "coveredWad")
                ),
                "fund_covered_later_usd": usd(_sum(g.get("BadDebtCovered", []), "amountWad")),
                "bad_debt_recorded_usd": usd(_sum(g.get("BadDebtRecorded", []), "amountWad")),
                "adl_steps": len(g.get("AutoDeleveraged", [])),
                "adl_haircut_usd": usd(_sum(g.get("AutoDeleveraged", []), "haircutWad")),
                "socialized_usd": usd(_sum(g.get("BadDebtSocialized", []), "amountWad")),
                "liquidatable_left": s.liquidatable_left,
                "keeper_seconds": round(s.keeper_seconds, 4),
            }
        )
    return rows


def _peak_debt(after_wad: int, recorded: Sequence[Event]) -> int:
    """Bad debt at its highest in a step: right after a recording (only those raise it)."""
    return max([after_wad, *(int(e.args["totalBadDebtWad"]) for e in recorded)])


# ---------------------------------------------------------------------------- the report


def build(bw: Bulwark, result: RunResult) -> dict[str, Any]:
    """Reads the events and the closing views, checks conservation: the report, JSON-able."""
    pop = result.population
    traders = pop.addresses
    markets = [m for m in bw.market_names()]
    events = fetch_events(bw, result.start_block, result.end_block)
    ev = by_name(events)
    end = result.end_block
    opening_debt = int(
        bw.ch.functions.totalBadDebtWad().call(block_identifier=result.start_block - 1)
    )
    closing_debt = int(bw.ch.functions.totalBadDebtWad().call(block_identifier=end))
    ledger = bad_debt_ledger(ev, opening_debt, closing_debt)
    adl = adl_measures(bw, ev, traders)
    fund_paid = _sum(ev.get("ShortfallCovered", []), "paidWad")
    conservation = invariants.check(bw, block=end)
    samples = result.samples
    first, last = samples[0], samples[-1]
    overshoot = int(ledger["overshoot_wad"])
    fund_assets = [s.fund_assets_wad for s in samples]
    checks = {
        "conservation_ok": conservation.ok,
        "overshoot_zero": overshoot == 0 and adl["steps_after_debt_cleared"] == 0,
        "bad_debt_zero_at_end": closing_debt == 0,
        "fund_paid_matches_ledger": fund_paid
        == _sum(ev.get("ShortfallSettled", []), "coveredWad")
        + _sum(ev.get("BadDebtCovered", []), "amountWad"),
        "adl_scores_non_increasing": adl["scores_non_increasing"],
        # each shortfall splits into what the fund paid at once and what became bad debt
        "shortfall_adds_up": _sum(ev.get("ShortfallSettled", []), "shortfallWad")
        == _sum(ev.get("ShortfallSettled", []), "coveredWad")
        + _sum(ev.get("BadDebtRecorded", []), "amountWad"),
    }
    checks["ok"] = (
        all(checks.values())
        if closing_debt == 0
        else all(v for k, v in checks.items() if k != "bad_debt_zero_at_end")
    )
    cfg = result.config
    return {
        "scenario": {
            "name": result.path.name,
            "title": result.scenario_title,
            "source": result.path.source,
            "markets": result.path.markets,
            "steps": len(result.path.steps) - 1,
            "step_seconds": result.step_seconds,
            "speed": cfg.speed,
            "start_utc": _utc(result.path.steps[0].timestamp),
            "synthetic": result.synthetic,
            "duration_hours": round(result.path.duration / 3600, 3),
        },
        "run": {
            "accounts": cfg.accounts,
            "seed": cfg.seed,
            "chain_id": bw.w3.eth.chain_id,
            "blocks": [result.setup_block, result.start_block, end],
            "transactions_by_runner": result.tx_count,
            "keeper": result.keeper_kind,
            "keeper_address": pop.keeper.address,
            "wall_seconds": {k: round(v, 2) for k, v in result.wall_seconds.items()},
            "generated_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "setup": setup_summary(bw, result),
        "prices": price_summary(samples, markets),
        "liquidations": liquidation_totals(ev),
        "fund": {
            "assets_start_usd": usd(first.fund_assets_wad),
            "assets_min_usd": usd(min(fund_assets)),
            "assets_end_usd": usd(last.fund_assets_wad),
            "assets_end_wad": str(last.fund_assets_wad),
            "paid_usd": usd(fund_paid),
            "paid_wad": str(fund_paid),
            "payouts": sum(1 for e in ev.get("ShortfallCovered", []) if int(e.args["paidWad"]) > 0),
            "steps_exhausted": sum(1 for s in samples if s.fund_available_wad == 0),
            "first_exhausted_step": next(
                (s.step for s in samples if s.fund_available_wad == 0), None
            ),
        },
        "bad_debt": ledger,
        "adl": adl,
        "keeper": {
            "log": _log_summary(result),
            "liquidatable_left_max": max(s.liquidatable_left for s in samples),
            "liquidatable_left_end": last.liquidatable_left,
            "pass_seconds_median": round(
                statistics.median(s.keeper_seconds for s in samples[1:]), 4
            )
            if len(samples) > 1
            else 0.0,
            "pass_seconds_max": round(max(s.keeper_seconds for s in samples), 4),
        },
        "pool": {
            "equity_start_usd": usd(first.pool_equity_wad),
            "equity_end_usd": usd(last.pool_equity_wad),
        },
        "conservation": conservation.as_dict(),
        "checks": checks,
        "timeline": timeline(result, events, markets),
    }


def _log_summary(result: RunResult) -> dict[str, Any]:
    tally = result.keeper_log
    if tally is None:
        return {"file": None, "warnings": 0, "by_message": {}}
    return {
        "file": str(tally.file) if tally.file is not None else None,
        "warnings": tally.total,
        "by_message": dict(sorted(tally.counts.items(), key=lambda kv: -kv[1])),
    }


def setup_summary(bw: Bulwark, result: RunResult) -> dict[str, Any]:
    pop = result.population
    block = result.start_block - 1
    scale = bw.token_scale
    oi: dict[str, dict[str, float]] = {}
    for name in bw.market_names():
        st = bw.ch.functions.marketState(bw.market_id(name)).call(block_identifier=block)
        price = int(bw.oracle.functions.priceWad(bw.market_id(name)).call(block_identifier=block))
        oi[name] = {
            "long_usd": usd(int(st[4]) * price // WAD),
            "short_usd": usd(int(st[5]) * price // WAD),
        }
    leverages = sorted(t.leverage for t in pop.traders)
    return {
        "traders": len(pop.traders),
        "collateral_usd": usd(sum(t.collateral_tokens for t in pop.traders) * scale),
        "pool_seed_usd": usd(pop.pool_seed_tokens * scale),
        "fund_seed_usd": usd(pop.fund_seed_tokens * scale),
        "fund_assets_usd": usd(int(bw.fund.functions.assetsWad().call(block_identifier=block))),
        "pool_equity_usd": usd(int(bw.ch.functions.poolEquityWad().call(block_identifier=block))),
        "open_interest": oi,
        "leverage": {
            "min": leverages[0],
            "median": round(statistics.median(leverages), 3),
            "max": leverages[-1],
            "over_10x": sum(1 for x in leverages if x > 10),
        },
        "long_legs": sum(1 for t in pop.traders for leg in t.legs if leg.size_wad > 0),
        "short_legs": sum(1 for t in pop.traders for leg in t.legs if leg.size_wad < 0),
    }


def price_summary(samples: Sequence[Any], markets: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in markets:
        series = [s.prices_wad[m] for s in samples]
        peak, worst = series[0], 0.0
        for p in series:
            peak = max(peak, p)
            worst = min(worst, p / peak - 1)
        out[m] = {
            "start": usd(series[0]),
            "low": usd(min(series)),
            "end": usd(series[-1]),
            "max_drawdown": round(worst, 6),
        }
    return out


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------------------- files


def write(data: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.json and the PNGs in `out_dir`; returns the files by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json"}
    files["json"].write_text(json.dumps(data, indent=2) + "\n")
    files.update(plot(data, out))
    return files


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend; it comes with the ``sim`` extra."""
    try:
        import matplotlib
    except ImportError:
        raise BulwarkError(
            "plots need matplotlib, which comes with the sim extra: pip install 'bulwark[sim]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(data: Mapping[str, Any], out: Path) -> dict[str, Path]:
    plt = pyplot()

    rows = data["timeline"]
    steps = [float(i) for i in range(len(rows))]  # one slot per step: gaps of a day stay readable
    files: dict[str, Path] = {}
    panels = (_price_panel, _fund_panel, _debt_panel, _liquidation_panel)
    fig, axes = plt.subplots(4, 1, figsize=(11, 13), sharex=True)
    for draw, ax in zip(panels, axes, strict=True):
        draw(ax, steps, rows, data)
    _time_axis(axes[-1], rows, data)
    fig.suptitle(_title(data), fontsize=12)
    fig.tight_layout()
    files["overview"] = out / "overview.png"
    fig.savefig(files["overview"], dpi=110)
    plt.close(fig)
    for name, draw in zip(("price", "fund", "bad_debt", "liquidations"), panels, strict=True):
        fig, ax = plt.subplots(figsize=(10, 4.2))
        draw(ax, steps, rows, data)
        _time_axis(ax, rows, data)
        fig.tight_layout()
        files[name] = out / f"{name}.png"
        fig.savefig(files[name], dpi=110)
        plt.close(fig)
    if data["adl"]["steps"]:
        files["haircuts"] = _haircut_plot(plt, data, out)
    return files


def _time_axis(ax: Any, rows: Sequence[Mapping[str, Any]], data: Mapping[str, Any]) -> None:
    """Ticks at evenly spaced steps, labelled with the scenario time elapsed at that step."""
    from matplotlib.ticker import FixedLocator

    n = len(rows)
    every = max(1, round(n / 10))
    ticks = list(range(0, n, every))
    elapsed = [rows[i]["scenario_time"] - rows[0]["scenario_time"] for i in ticks]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([_elapsed(e, long=elapsed[-1] >= 2 * 86_400) for e in elapsed])
    start = "the start" if data["scenario"].get("synthetic") else data["scenario"]["start_utc"]
    ax.set_xlabel(f"time from {start} (one slot per step)")
    ax.set_xlim(-0.5, n)


def _elapsed(seconds: int, long: bool) -> str:
    if long:
        return f"{seconds // 86_400}d {seconds % 86_400 // 3600:02d}h"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}"


def _title(data: Mapping[str, Any]) -> str:
    s, r = data["scenario"], data["run"]
    return f"{s['title']}: {r['accounts']} accounts, {s['steps']} steps"


def _price_panel(
    ax: Any, x: list[float], rows: list[dict[str, Any]], data: Mapping[str, Any]
) -> None:
    for market, p in data["prices"].items():
        series = [100 * r["prices"][market] / p["start"] for r in rows]
        label = f"{market}: {p['start']:,.2f} -> low {p['low']:,.2f} -> {p['end']:,.2f}"
        ax.plot(x, series, label=label, linewidth=1.4, drawstyle="steps-post")
    ax.axhline(100, color="grey", linewidth=0.6, linestyle=":")
    ax.set_ylabel("price (start = 100)")
    ax.set_title("Oracle price")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)


def _fund_panel(
    ax: Any, x: list[float], rows: list[dict[str, Any]], data: Mapping[str, Any]
) -> None:
    ax.plot(
        x,
        [r["fund_assets_usd"] for r in rows],
        label="fund assets",
        color="tab:green",
        linewidth=1.6,
        drawstyle="steps-post",
    )
    ax.plot(
        x,
        [r["fund_available_usd"] for r in rows],
        label="available now (window cap)",
        color="tab:olive",
        linewidth=1.0,
        linestyle="--",
        drawstyle="steps-post",
    )
    label = "nothing available: ADL may run"
    for first, last in _runs([r["fund_available_usd"] == 0 for r in rows]):
        ax.axvspan(x[first], x[last] + 1, color="tab:red", alpha=0.12, linewidth=0, label=label)
        label = "_"
    ax.set_ylim(bottom=0)
    ax.set_ylabel("USD")
    ax.set_title("Insurance fund")
    ax.yaxis.set_major_formatter(_dollars())
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)


def _debt_panel(
    ax: Any, x: list[float], rows: list[dict[str, Any]], data: Mapping[str, Any]
) -> None:
    steps = {"drawstyle": "steps-post"}
    ax.bar(
        x,
        [r["bad_debt_peak_usd"] for r in rows],
        width=_bar_width(x),
        align="edge",
        color="tab:red",
        alpha=0.35,
        label="bad debt at its peak within the step",
    )
    ax.plot(
        x,
        [r["bad_debt_usd"] for r in rows],
        label="bad debt outstanding after the keeper's pass",
        color="tab:red",
        linewidth=1.8,
        **steps,
    )
    ax.plot(
        x,
        _cumulative(rows, "fund_paid_usd"),
        label="paid by the fund (cumulative)",
        color="tab:green",
        linewidth=1.0,
        **steps,
    )
    ax.plot(
        x,
        _cumulative(rows, "bad_debt_recorded_usd"),
        label="bad debt recorded (cumulative)",
        color="tab:orange",
        linewidth=1.0,
        linestyle="--",
        **steps,
    )
    ax.plot(
        x,
        _cumulative(rows, "adl_haircut_usd"),
        label="ADL haircuts (cumulative)",
        color="tab:purple",
        linewidth=1.0,
        linestyle="-.",
        **steps,
    )
    ax.set_ylabel("USD")
    ax.set_title("Shortfalls, bad debt and ADL")
    ax.yaxis.set_major_formatter(_dollars())
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)


def _liquidation_panel(
    ax: Any, x: list[float], rows: list[dict[str, Any]], data: Mapping[str, Any]
) -> None:
    width = _bar_width(x)
    solvent = [r["liquidations"] - r["bankrupt"] for r in rows]
    bankrupt = [r["bankrupt"] for r in rows]
    ax.bar(x, solvent, width=width, align="edge", color="tab:blue", label="liquidations (solvent)")
    ax.bar(
        x,
        bankrupt,
        width=width,
        align="edge",
        bottom=solvent,
        color="tab:red",
        label="liquidations (bankrupt)",
    )
    adl = [r["adl_steps"] for r in rows]
    if any(adl):
        ax.bar(
            x,
            [-a for a in adl],
            width=width,
            align="edge",
            color="tab:purple",
            label="ADL steps (below zero)",
        )
        ax.axhline(0, color="black", linewidth=0.6)
    from matplotlib.ticker import MaxNLocator

    ax.margins(y=0.12)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("count per step")
    ax.set_title("Liquidations and ADL")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)


def _haircut_plot(plt: Any, data: Mapping[str, Any], out: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    adl = data["adl"]
    haircuts = sorted((int(v) for v in adl["haircuts_wad"].values()), reverse=True)
    eligible = [int(v) for v in adl["eligible_haircuts_wad"]] or haircuts
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = haircuts[:30]
    left.bar(range(1, len(top) + 1), [h / WAD for h in top], color="tab:purple")
    left.set_title(
        f"Largest haircuts of the {adl['accounts_hit']} traders hit "
        f"(largest {100 * adl['largest_share']:.1f}% of all)"
    )
    left.set_xlabel("trader, by haircut")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("USD")
    left.yaxis.set_major_formatter(_dollars())
    left.grid(alpha=0.3)
    x, y = lorenz(eligible)
    right.plot(x, y, color="tab:purple", label="haircuts")
    right.plot([0, 1], [0, 1], color="grey", linestyle=":", label="equal")
    right.set_title(_lorenz_title(adl, len(eligible)), fontsize=10)
    right.set_xlabel("share of traders")
    right.set_ylabel("share of haircuts")
    right.legend(loc="upper left", fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    file = out / "haircuts.png"
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return file


def _lorenz_title(adl: Mapping[str, Any], n: int) -> str:
    """Each Gini with the population it is over: the eligible traders (zeros included) and the
    traders hit differ, and so do their coefficients."""
    hit = f"Gini {adl['gini_affected']:.2f} over the {adl['accounts_hit']} hit"
    if adl["gini_eligible"] is None:
        return f"Lorenz curve over the {n} traders hit ({hit})"
    return (
        f"Lorenz curve over the {n} eligible traders, zeros included:\n"
        f"Gini {adl['gini_eligible']:.2f} over the eligible; {hit}"
    )


def _cumulative(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    run, out = 0.0, []
    for r in rows:
        run += r[key]
        out.append(run)
    return out


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) index of every run of True."""
    runs: list[tuple[int, int]] = []
    for i, flag in enumerate(flags):
        if not flag:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _bar_width(x: Sequence[float]) -> float:
    gaps = [b - a for a, b in itertools.pairwise(x) if b > a]
    return 0.8 * min(gaps) if gaps else 0.1


def _dollars() -> Any:
    from matplotlib.ticker import FuncFormatter

    def fmt(value: float, _pos: int) -> str:
        if abs(value) >= 1e6:
            return f"${value / 1e6:,.1f}M"
        if abs(value) >= 1e3:
            return f"${value / 1e3:,.0f}k"
        return f"${value:,.0f}"

    return FuncFormatter(fmt)


# ---------------------------------------------------------------------------- terminal


def _money(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def summary_lines(data: Mapping[str, Any], files: Mapping[str, Path] | None = None) -> list[str]:
    """The terminal summary: one line per subject."""
    s, r = data["scenario"], data["run"]
    step = f"{s['step_seconds']} s" if s["step_seconds"] else "every row"
    lines = [
        (
            f"{s['title']}: {r['accounts']} accounts, {s['steps']} steps ({step}), "
            f"{s['duration_hours']:g} h of prices from {s['start_utc']}"
        ),
        "  prices      " + "   ".join(_price_line(m, p) for m, p in data["prices"].items()),
        "  setup       " + _setup_line(data["setup"]),
        "  liquidated  " + _liquidation_line(data["liquidations"]),
        "  shortfall   " + _shortfall_line(data["liquidations"]),
        "  bad debt    " + _debt_line(data["bad_debt"]),
        "  fund        " + _fund_line(data["fund"], data["liquidations"], data["bad_debt"]),
        "  ADL         " + _adl_line(data["adl"], data["bad_debt"]),
        "  keeper      " + _keeper_line(data["keeper"]),
        "  conservation "
        + (
            "holds"
            if data["checks"]["conservation_ok"]
            else "BROKEN: " + json.dumps(data["conservation"])
        ),
        "  checks      " + _checks_line(data["checks"]),
        "  time        " + ", ".join(f"{k} {v:.1f} s" for k, v in r["wall_seconds"].items()),
    ]
    if files:
        folder = files["json"].parent
        names = ", ".join(p.name for k, p in files.items() if k != "json")
        lines.append(f"  report      {files['json']}; plots in {folder}/: {names}")
    return lines


def _price_line(market: str, p: Mapping[str, Any]) -> str:
    change = 100 * p["max_drawdown"]
    return f"{market} {p['start']:,.2f} -> low {p['low']:,.2f} ({change:+.1f}%) -> {p['end']:,.2f}"


def _setup_line(st: Mapping[str, Any]) -> str:
    lev = st["leverage"]
    return (
        f"{st['traders']} traders, {_money(st['collateral_usd'])} collateral, leverage "
        f"{lev['min']:.1f}x-{lev['max']:.1f}x (median {lev['median']:.1f}x); "
        f"pool {_money(st['pool_equity_usd'])}, fund {_money(st['fund_assets_usd'])}"
    )


def _liquidation_line(liq: Mapping[str, Any]) -> str:
    return (
        f"{liq['count']} times ({liq['accounts']} accounts; {liq['partial_closes']} partial, "
        f"{liq['bankrupt']} bankrupt); keeper rewards {_money(liq['keeper_rewards_usd'])}, "
        f"padding to the fund {_money(liq['padding_usd'])}"
    )


def _shortfall_line(liq: Mapping[str, Any]) -> str:
    """At liquidation, each shortfall is paid by the fund at once or recorded as bad debt: the two
    parts add up to the shortfall (what the fund pays later, from the bad debt, is on its own line)."""
    return (
        f"{_money(liq['shortfall_usd'])} at liquidation = {_money(liq['shortfall_covered_usd'])} "
        f"paid by the fund at once + {_money(liq['shortfall_to_bad_debt_usd'])} recorded as bad debt"
    )


def _debt_line(debt: Mapping[str, Any]) -> str:
    """Where the bad debt went: opening + recorded = covered later + ADL + close haircuts +
    socialised + closing (ADL's part is what the ledger leaves for it; its haircuts match it when
    the overshoot is zero)."""
    parts = [
        f"{_money(debt['covered_by_fund_later_usd'])} covered later by the fund",
        f"{_money(int(debt['retired_by_adl_wad']) / WAD)} by ADL",
    ]
    if debt["close_haircuts_usd"]:
        parts.append(f"{_money(debt['close_haircuts_usd'])} by haircuts on profitable closes")
    parts.append(f"{_money(debt['socialized_usd'])} socialised to the pool")
    opening = f"{_money(debt['opening_usd'])} open + " if debt["opening_usd"] else ""
    return (
        f"{opening}{_money(debt['recorded_usd'])} recorded = "
        + " + ".join(parts)
        + f" + {_money(debt['closing_usd'])} left at the end"
    )


def _fund_line(fund: Mapping[str, Any], liq: Mapping[str, Any], debt: Mapping[str, Any]) -> str:
    return (
        f"{_money(fund['assets_start_usd'])} -> min {_money(fund['assets_min_usd'])} -> "
        f"{_money(fund['assets_end_usd'])}; paid {_money(fund['paid_usd'])} in "
        f"{fund['payouts']} payouts ({_money(liq['shortfall_covered_usd'])} at liquidation + "
        f"{_money(debt['covered_by_fund_later_usd'])} later); nothing available during "
        f"{fund['steps_exhausted']} steps"
    )


def _adl_line(adl: Mapping[str, Any], debt: Mapping[str, Any]) -> str:
    overshoot = _money(int(debt["overshoot_wad"]) / WAD)
    text = (
        f"{adl['steps']} steps on {adl['targets']} traders, haircuts "
        f"{_money(adl['haircut_total_usd'])}; overshoot {overshoot} (must be zero); largest share "
        f"{100 * adl['largest_share']:.1f}%, Gini {adl['gini_affected']:.2f} over the "
        f"{adl['accounts_hit']} hit"
    )
    if adl["gini_eligible"] is not None:
        text += f", {adl['gini_eligible']:.2f} over the {adl['eligible_at_start']} eligible"
    if adl["targets_later_bankrupt"]:
        text += f"; {adl['targets_later_bankrupt']} targets went bankrupt afterwards"
    return text


def _keeper_line(k: Mapping[str, Any]) -> str:
    text = (
        f"at most {k['liquidatable_left_max']} accounts still liquidatable after a pass; "
        f"pass median {k['pass_seconds_median']:.2f} s"
    )
    log = k.get("log") or {}
    if log.get("warnings"):
        top = ", ".join(f"{n} x {m}" for m, n in list(log["by_message"].items())[:3])
        where = f" in {log['file']}" if log.get("file") else ""
        text += f"; {log['warnings']} warnings logged{where} ({top})"
    return text


def _checks_line(chk: Mapping[str, Any]) -> str:
    failed = [k for k, v in chk.items() if not v and k != "ok"]
    return "all passed" if chk["ok"] else "FAILED: " + ", ".join(failed)
