"""`bulwark demo` (= `make demo`): the insurance fund's story on an embedded Anvil, in plain words.

Deploy; an LP seeds the pool and a staker the fund; traders open ETH longs from 2.5x to 18x, ETH
shorts and BTC positions both ways; ETH slides 10% in four steps (the keeper liquidates the most
levered longs in turn, their penalties pad the fund, the first bankruptcies are paid by the fund),
then gaps to -25%: the shortfall is far beyond what the fund may pay in one window, the rest
becomes bad debt, and ADL closes the most profitable shorts, highest score first, until the bad
debt is exactly zero. The conservation law is checked at the end and the stress report written.

It is the stress runner (bulwark/sim/stress.py) with a hand-made population and scenarios/demo.csv;
every number in the story is read back from the chain by bulwark/sim/report.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from bulwark.chain.contracts import WAD, dev_account
from bulwark.sim import report
from bulwark.sim.stress import (
    ChainOptions,
    Leg,
    Outcome,
    Population,
    StressConfig,
    StressRun,
    TraderPlan,
    chain_for,
    derived_account,
    fresh_log,
)

DEMO_SEED = 2020
POOL_SEED_USD = 2_000_000
FUND_SEED_USD = 30_000

# (count, collateral in USD, leverage, market, long?) of each group of traders.
GROUPS: tuple[tuple[int, int, float, str, bool], ...] = (
    (4, 8_000, 18.0, "ETH-USD", True),  # liquidated (partially) at -3.3%
    (4, 10_000, 12.0, "ETH-USD", True),  # liquidated at -5% to -7%
    (3, 12_000, 10.0, "ETH-USD", True),  # bankrupt at -10.3%: the fund pays
    (5, 25_000, 7.0, "ETH-USD", True),  # bankrupt in the gap: beyond the fund's window
    (3, 30_000, 2.5, "ETH-USD", True),  # survive
    (1, 15_000, 3.0, "ETH-USD", False),  # the shorts: ADL targets, in score order
    (1, 15_000, 4.0, "ETH-USD", False),
    (1, 15_000, 5.0, "ETH-USD", False),
    (1, 15_000, 6.0, "ETH-USD", False),
    (1, 15_000, 8.0, "ETH-USD", False),
    (1, 15_000, 10.0, "ETH-USD", False),
    (2, 20_000, 3.0, "BTC-USD", True),  # bystanders in the other market
    (2, 20_000, 3.0, "BTC-USD", False),
)


def demo_population(
    cfg: StressConfig, admin: LocalAccount, prices_wad: Mapping[str, int], decimals: int
) -> Population:
    unit = 10**decimals
    traders: list[TraderPlan] = []
    for count, usd, leverage, market, long in GROUPS:
        for _ in range(count):
            notional_wad = int(usd * leverage) * WAD
            size = notional_wad * WAD // prices_wad[market]
            account = derived_account(cfg.seed, f"demo-trader-{len(traders)}")
            leg = Leg(market, size if long else -size)
            traders.append(TraderPlan(account, usd * unit, leverage, (leg,)))
    return Population.seeded(cfg.seed, admin, traders, POOL_SEED_USD * unit, FUND_SEED_USD * unit)


def demo_config() -> StressConfig:
    accounts = sum(g[0] for g in GROUPS)
    return StressConfig(scenario="demo", accounts=accounts, seed=DEMO_SEED)


# ---------------------------------------------------------------------------- the story


def _m(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}"


def _moves(row: Mapping[str, Any], prev: Mapping[str, Any], start: Mapping[str, Any]) -> str:
    parts = []
    for market, price in row["prices"].items():
        if price == prev["prices"][market]:
            continue
        change = price / start["prices"][market] - 1
        verb = (
            "gapped"
            if abs(price / prev["prices"][market] - 1) > 0.1
            else ("fell" if change < 0 else "rose")
        )
        parts.append(
            f"{market.split('-')[0]} {verb} to {_m(price)} ({100 * change:+.1f}% from the start)"
        )
    return " and ".join(parts) or "prices held"


def narrate(data: Mapping[str, Any], files: Mapping[str, Path] | None = None) -> list[str]:
    """The story in plain words, every number taken from the report (and so from the chain)."""
    st, rows, adl, debt, fund = (
        data["setup"],
        data["timeline"],
        data["adl"],
        data["bad_debt"],
        data["fund"],
    )
    lev = st["leverage"]
    lines = [
        "What happened (every number below was read back from the chain):",
        (
            f"- Bulwark was deployed on a local Anvil chain (id {data['run']['chain_id']}). An LP "
            f"put {_m(st['pool_seed_usd'])} in the liquidity pool and a staker "
            f"{_m(st['fund_seed_usd'])} in the insurance fund."
        ),
        (
            f"- {st['traders']} traders deposited {_m(st['collateral_usd'])} and opened positions "
            f"at {lev['min']:g}x to {lev['max']:g}x leverage: {st['long_legs']} long, "
            f"{st['short_legs']} short."
        ),
    ]
    start = rows[0]
    for prev, row in itertools.pairwise(rows):
        if row["liquidations"] == 0 and row["adl_steps"] == 0 and row["shortfall_usd"] == 0:
            continue
        when = _clock(row["scenario_time"] - start["scenario_time"])
        lines.append(f"- At {when}, {_moves(row, prev, start)}.")
        lines.extend(_step_story(row))
    lines.extend(_ending(data, adl, debt, fund))
    if files:
        folder = files["json"].parent
        plots = ", ".join(p.name for k, p in files.items() if k != "json")
        lines.append(
            f"Plots: {folder}/ ({plots}); overview.png has price, fund, bad debt and "
            "liquidations on one page."
        )
        lines.append(f"Every number: {files['json']}")
    return lines


def _step_story(row: Mapping[str, Any]) -> list[str]:
    out = []
    liq, bankrupt, accounts = row["liquidations"], row["bankrupt"], row["liquidated_accounts"]
    if liq:
        times = (
            f" ({liq} liquidations: a partial one can leave an account to liquidate again)"
            if liq > accounts
            else ""
        )
        text = f"  The keeper liquidated {accounts} account{'s' if accounts != 1 else ''}{times}"
        if bankrupt:
            text += f"; {bankrupt} of them bankrupt, their equity below zero"
        if row["padding_usd"]:
            text += f"; {_m(row['padding_usd'])} of the penalties went to the fund as padding"
        out.append(text + ".")
    if row["shortfall_usd"]:
        paid, recorded = row["fund_paid_at_liquidation_usd"], row["bad_debt_recorded_usd"]
        shortfall = _m(row["shortfall_usd"])
        text = f"  The bankrupt accounts left a shortfall of {shortfall}: the fund paid {_m(paid)}"
        if recorded:
            limit = "its window cap (at most half its assets per 24 hours)"
            if row["fund_assets_usd"] == 0:
                limit = "everything it had"
            text += f", all that {limit} still allowed, and {_m(recorded)} became bad debt."
        else:
            text += " in full."
        out.append(text)
    if row["adl_steps"]:
        out.append(
            f"  The fund had nothing left to pay now, so the keeper ran ADL: {row['adl_steps']} "
            f"profitable position{'s' if row['adl_steps'] != 1 else ''} on the other side, highest "
            f"score first, gave up {_m(row['adl_haircut_usd'])} of profit; bad debt is now "
            f"{_m(row['bad_debt_usd'])}."
        )
    out.append(
        f"  Fund assets: {_m(row['fund_assets_usd'])}, of which it may pay out now "
        f"{_m(row['fund_available_usd'])}."
    )
    return out


def _ending(
    data: Mapping[str, Any],
    adl: Mapping[str, Any],
    debt: Mapping[str, Any],
    fund: Mapping[str, Any],
) -> list[str]:
    liq = data["liquidations"]
    overshoot = int(debt["overshoot_wad"]) / WAD
    lines = [
        (
            f"- In all: {liq['count']} liquidations, {_m(liq['padding_usd'])} of padding into the "
            f"fund, {_m(liq['keeper_rewards_usd'])} of keeper rewards. Of "
            f"{_m(liq['shortfall_usd'])} in shortfalls the fund paid "
            f"{_m(liq['shortfall_covered_usd'])} at once and "
            f"{_m(liq['shortfall_to_bad_debt_usd'])} became bad debt"
            + (
                f", of which the fund covered {_m(debt['covered_by_fund_later_usd'])} later"
                if debt["covered_by_fund_later_usd"]
                else ""
            )
            + f"; the fund ends with {_m(fund['assets_end_usd'])}."
        ),
    ]
    if adl["steps"]:
        lines.append(
            f"- ADL: {adl['steps']} steps on {adl['targets']} traders absorbed "
            f"{_m(adl['haircut_total_usd'])} of bad debt. Overshoot {_m(overshoot)} (haircuts "
            "beyond the debt; Hyperliquid's queue "
            f"overshot by $45-52M on 10 October 2025). The largest share borne by one trader was "
            f"{100 * adl['largest_share']:.0f}%; {_gini_words(adl)}."
        )
    lines.append(f"- Bad debt at the end: {_m(debt['closing_usd'])}.")
    cons = data["conservation"]
    if cons["ok"]:
        lines.append(
            "- Conservation holds: vault balance + bad debt = the sum of every margin "
            f"(gap {cons['vault_gap_wad']} wei), and the pool mirrors the traders exactly."
        )
    else:
        lines.append(f"- CONSERVATION BROKEN: {cons}")
    return lines


def _gini_words(adl: Mapping[str, Any]) -> str:
    """Each Gini named with its population, as the Lorenz curve in haircuts.png is."""
    hit = f"Gini {adl['gini_affected']:.2f} over the {adl['accounts_hit']} traders hit"
    if adl["gini_eligible"] is None:
        return hit
    return (
        f"{hit}, {adl['gini_eligible']:.2f} over all {adl['eligible_at_start']} traders eligible "
        "for ADL, zeros included (the Lorenz curve in haircuts.png)"
    )


# ---------------------------------------------------------------------------- the command


def run(out: Path, chain: ChainOptions | None = None) -> Outcome:
    """`bulwark demo`: the story on a fresh deployment (on an embedded Anvil unless `chain` names
    a node), its report in `out`; the narration is the outcome's lines. A mistake raises
    :class:`BulwarkError` or :class:`ScenarioError`."""
    with chain_for(chain or ChainOptions(), fresh=True) as (bw, _embedded):
        admin = dev_account(0)
        log_file = fresh_log(out / "keeper.log")
        run = StressRun(bw, demo_config(), admin, planner=demo_population, keeper_log_file=log_file)
        result = run.run()
        data = report.build(bw, result)
    files = report.write(data, out)
    data["narrative"] = narrate(data, files)
    files["json"].write_text(json.dumps(data, indent=2) + "\n")
    return Outcome(data, list(data["narrative"]), demo_ok(data))


def demo_ok(data: Mapping[str, Any]) -> bool:
    """The demo's promises: conservation, no bad debt left, no overshoot, the whole story told."""
    chk = data["checks"]
    told = (
        data["fund"]["paid_usd"] > 0
        and data["adl"]["steps"] > 0
        and data["liquidations"]["padding_usd"] > 0
    )
    return bool(chk["ok"] and chk["bad_debt_zero_at_end"] and chk["overshoot_zero"] and told)
