"""`bulwark stress SCENARIO --fund-sweep`: how big must the insurance fund be for this book?

One crash, one population, one pre-crash chain state, replayed for a range of fund sizes (as a
share of the open interest) and of window caps, each point from a snapshot of the chain:

1. Setup once (bulwark/sim/stress.py `StressRun.prepare`), with no stake in the fund: it holds only the
   fee share the setup's trades paid in. The chain is snapshotted (`evm_snapshot`).
2. For each window cap and each fund size: back to the snapshot (`evm_revert`); the staker donates
   to the fund what it lacks of the size (`InsuranceFund.donate`, minted by the admin, who owns the
   mock token), the risk admin sets the window cap (`InsuranceFund.setParams`, the other
   parameters unchanged); a block is mined at a pinned time; then the replay runs the real
   contracts and a new keeper (`bulwark.keeper.daemon.Keeper`) exactly as `bulwark stress` does.
3. Each point's measures come from the events of its replay (bulwark/sim/report.py): the shortfall at
   liquidation and its split into what the fund paid at once and what became bad debt, what the fund
   covered later, ADL (steps, accounts hit, total and largest haircut, Gini, overshoot, gas, blocks
   until the debt was cleared), socialised debt, and the bystanders' losses.

ADL policy: with `adl_policy`, the risk admin sets it on every market (`setAdlPolicy`) after setup,
before the snapshot. With `compare_policies`, every point is replayed twice from the snapshot, the
policy set after each revert: under the queue, then under pro rata (skipped, and marked so, when the
queue's replay recorded no bad debt: no ADL call ran, so the policy was never read); `comparison`
puts the two side by side (accounts hit, Gini over the same accounts, largest share, overshoot, gas,
transactions and blocks to clear, socialised debt) and `plot_comparison` draws them.

Block timestamps are pinned (`StressRun.steady_clock`, a pinned block before each replay): a point
from the snapshot gives exactly what a fresh setup and the same point give (tests/test_stress_sweep.py
and tests/test_stress_policies.py check it, under each policy).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from web3.types import BlockIdentifier

from bulwark.chain.contracts import WAD, Bulwark, dev_account
from bulwark.chain.rpc import Calls, RpcFailure, rpc_batch
from bulwark.chain.sender import Pipeline
from bulwark.core import riskmath as rm
from bulwark.core.progress import Progress
from bulwark.keeper.prorata import POLICY_NAMES, PRO_RATA, QUEUE
from bulwark.sim import report, scenarios
from bulwark.sim.report import Event, usd
from bulwark.sim.stress import (
    Outcome,
    Prepared,
    RunResult,
    StressConfig,
    StressError,
    StressOptions,
    StressRun,
    admin_signer,
    chain_for,
    fresh_log,
    pipeline,
    rpc,
)

DEFAULT_FUND_PCTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # fund size, % of open interest
DEFAULT_WINDOW_CAPS_PCT = (50.0,)  # share of the fund it may pay per window (deployed default)
DEFAULT_HAIRCUT_BOUND_PCT = 0.1  # haircuts, % of open interest, that a risk team would accept
PIN_SECONDS = 60  # the first replay block comes this long after the snapshot, for every point
DONATE_GAS = 400_000
POLICY_GAS = 200_000
ADL_POLICIES = {"queue": QUEUE, "prorata": PRO_RATA}  # --adl-policy's words


@dataclass(frozen=True)
class SweepConfig:
    """The grid: fund sizes in % of open interest, window caps in % of the fund's assets."""

    fund_pcts: tuple[float, ...] = DEFAULT_FUND_PCTS
    window_caps_pct: tuple[float, ...] = DEFAULT_WINDOW_CAPS_PCT
    haircut_bound_pct: float = DEFAULT_HAIRCUT_BOUND_PCT
    refine: int = 0  # extra replays per marker and window cap, bisecting towards it
    # ADL policy set on every market before the snapshot ("queue" or "prorata"); None: as deployed
    adl_policy: str | None = None
    compare_policies: bool = False  # each point under the queue, then under pro rata

    def validate(self) -> None:
        if self.adl_policy is not None and self.adl_policy not in ADL_POLICIES:
            raise StressError(
                f"--adl-policy must be one of {', '.join(ADL_POLICIES)}, got {self.adl_policy!r}"
            )
        if self.adl_policy is not None and self.compare_policies:
            raise StressError("--compare-policies replays both policies: leave out --adl-policy")
        if not self.fund_pcts:
            raise StressError("--fund-sweep needs at least one fund size")
        for pct in self.fund_pcts:
            if not (math.isfinite(pct) and 0 <= pct <= 1000):
                raise StressError(f"a fund size must be 0 to 1000 (% of open interest), got {pct}")
        for cap in self.window_caps_pct:
            if not (math.isfinite(cap) and 1 <= cap <= 100):
                raise StressError(
                    f"a window cap must be 1 to 100 (% of the fund per window, the contract's "
                    f"bounds), got {cap}"
                )
        if not 0 <= self.refine <= 10:
            raise StressError(f"--refine must be 0 to 10 replays, got {self.refine}")
        if not (math.isfinite(self.haircut_bound_pct) and self.haircut_bound_pct >= 0):
            raise StressError(
                f"--haircut-bound must be zero or more (% of open interest), "
                f"got {self.haircut_bound_pct}"
            )

    @property
    def grid(self) -> list[tuple[float, float]]:
        """(window cap %, fund %) in the order they run: by cap, then by fund size."""
        return [(c, f) for c in self.window_caps_pct for f in sorted(set(self.fund_pcts))]


@dataclass
class Point:
    """One replay of the sweep: what was asked for, and what happened."""

    fund_pct_asked: float
    window_cap_pct: float
    metrics: dict[str, Any]
    wall_seconds: float = 0.0
    refined: bool = False  # a bisection point between two swept sizes
    # False: not replayed, because the queue's replay of the point recorded no bad debt, so no ADL
    # call ran and the policy was never read; its measures are the queue's (see compare_point)
    replayed: bool = True

    @property
    def policy(self) -> str:
        return str(self.metrics.get("adl_policy", ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "fund_pct_asked": self.fund_pct_asked,
            "refined": self.refined,
            "replayed": self.replayed,
            "window_cap_pct": self.window_cap_pct,
            "wall_seconds": round(self.wall_seconds, 2),
            **self.metrics,
        }


@dataclass
class SweepResult:
    config: StressConfig
    sweep: SweepConfig
    population: dict[str, Any]
    points: list[Point]
    scenario: dict[str, Any]
    wall_seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------- chain reads


def open_interest_wad(bw: Bulwark, block: BlockIdentifier = "latest") -> int:
    """Open interest: every trader's notional at the oracle price, longs and shorts added, over
    all markets (the pool's side not counted again)."""
    total = 0
    for name in bw.market_names():
        market = bw.market_id(name)
        st = bw.ch.functions.marketState(market).call(block_identifier=block)
        price = int(bw.oracle.functions.priceWad(market).call(block_identifier=block))
        total += (int(st[4]) + int(st[5])) * price // WAD
    return total


def fund_assets_wad(bw: Bulwark, block: BlockIdentifier = "latest") -> int:
    return int(bw.fund.functions.assetsWad().call(block_identifier=block))


def window_cap_pct(bw: Bulwark, block: BlockIdentifier = "latest") -> float:
    return int(bw.fund.functions.windowCapRatioWad().call(block_identifier=block)) / WAD * 100


def policy_name(bw: Bulwark, block: BlockIdentifier = "latest") -> str:
    """The markets' ADL policy as the chain has it (`adlPolicyOf`): one name when every market has
    the same, else each market's."""
    names = {
        m: POLICY_NAMES.get(p, f"policy {p}")
        for m in bw.market_names()
        for p in [int(bw.ch.functions.adlPolicyOf(bw.market_id(m)).call(block_identifier=block))]
    }
    if len(set(names.values())) == 1:
        return next(iter(names.values()))
    return ", ".join(f"{m} {n}" for m, n in names.items())


def add_policy_calls(run: StressRun, pipe: Pipeline, policy: int) -> None:
    """The risk admin's `setAdlPolicy(market, policy)` on every market, queued on `pipe` (the
    contract refuses it while a market carries bad debt: the sweep sets it with none)."""
    bw = run.bw
    for name in bw.market_names():
        pipe.add(
            run.admin,
            bw.ch.functions.setAdlPolicy(bw.market_id(name), policy),
            f"set {name}'s ADL policy to {POLICY_NAMES[policy]}",
            gas=POLICY_GAS,
        )


def set_policy(run: StressRun, policy: int) -> None:
    pipe = pipeline(run.bw)
    add_policy_calls(run, pipe, policy)
    pipe.wait()


# ---------------------------------------------------------------------------- one point


def set_fund(
    run: StressRun,
    prepared: Prepared,
    target_wad: int,
    cap_pct: float,
    policy: int | None = None,
) -> tuple[int, int]:
    """The fund brought up to `target_wad` by a donation from the staker (the admin mints it: it
    owns the mock token) and its window cap set by the risk admin, and with `policy` every
    market's ADL policy too; all through the contracts' own entry points. Returns (donated
    tokens, assets after). A target below what the fund holds stays at what it holds (nothing is
    taken out)."""
    bw = run.bw
    pop = prepared.population
    pipe = pipeline(bw)
    current = fund_assets_wad(bw)
    donate = -(-(target_wad - current) // bw.token_scale) if target_wad > current else 0
    if donate:
        pipe.add(
            run.admin, bw.token.functions.mint(pop.staker.address, donate), "mint the donation"
        )
        pipe.add(
            pop.staker,
            bw.fund.functions.donate(donate),
            f"donate {donate / 10**bw.deployment.collateral_decimals:,.0f} to the fund",
            gas=DONATE_GAS,
        )
    f = bw.fund.functions
    pipe.add(
        run.admin,
        f.setParams(
            int(f.cooldown().call()),
            int(f.windowDuration().call()),
            round(cap_pct * WAD / 100),
            int(f.capAssets().call()),
            f.treasury().call(),
        ),
        f"set the fund's window cap to {cap_pct:g}%",
    )
    if policy is not None:
        add_policy_calls(run, pipe, policy)
    pipe.wait()
    return donate, fund_assets_wad(bw)


def run_point(
    run: StressRun,
    prepared: Prepared,
    oi_wad: int,
    fund_pct: float,
    cap_pct: float,
    pinned_at: int,
    policy: int | None = None,
) -> Point:
    """Sets the fund, the window cap and (given) the ADL policy, mines a block at `pinned_at`,
    replays, measures. The same call on a fresh setup gives the same measures (the clock is steady
    and pinned)."""
    started = time.monotonic()
    target = round(oi_wad * fund_pct / 100)
    donated, assets = set_fund(run, prepared, target, cap_pct, policy)
    rpc(run.w3, "evm_setNextBlockTimestamp", pinned_at)
    rpc(run.w3, "evm_mine")
    result = run.replay(prepared)
    metrics = point_metrics(run.bw, result, oi_wad)
    metrics["donated_tokens"] = donated
    metrics["fund_target_usd"] = usd(target)
    if assets != int(metrics["fund_start_wad"]):
        raise StressError("the fund moved between its setting and the replay")
    return Point(fund_pct, cap_pct, metrics, time.monotonic() - started)


# ---------------------------------------------------------------------------- measures


def point_metrics(bw: Bulwark, result: RunResult, oi_wad: int) -> dict[str, Any]:
    """The measures of one replay, from its events and the views sampled after each step. Those
    marked (policy) compare ADL policies: accounts hit, Gini and largest share of the haircuts,
    overshoot, gas, blocks until the debt was cleared."""
    start, end = result.start_block, result.end_block
    events = report.fetch_events(bw, start, end)
    ev = report.by_name(events)
    opening = int(bw.ch.functions.totalBadDebtWad().call(block_identifier=start - 1))
    closing = int(bw.ch.functions.totalBadDebtWad().call(block_identifier=end))
    liq = report.liquidation_totals(ev)
    ledger = report.bad_debt_ledger(ev, opening, closing)
    adl = report.adl_measures(bw, ev, result.population.addresses)
    samples = result.samples
    fund_start = fund_assets_wad(bw, start - 1)
    fund_paid = sum(int(e.args["paidWad"]) for e in ev.get("ShortfallCovered", []))
    adl_events = ev.get("AutoDeleveraged", [])
    haircuts = int(ledger["adl_haircuts_wad"]) + sum(
        int(e.args["haircutWad"]) for e in ev.get("ProfitHaircutOnClose", [])
    )
    socialized = sum(int(e.args["amountWad"]) for e in ev.get("BadDebtSocialized", []))
    largest = max((int(v) for v in adl["haircuts_wad"].values()), default=0)
    episodes = debt_episodes(events, opening)
    prorata_calls = ev.get("AdlProRataApplied", [])
    gas = adl_gas_per_call(bw, adl_events)
    return {
        "adl_policy": policy_name(bw, start - 1),
        "fund_start_wad": str(fund_start),
        "fund_start_usd": usd(fund_start),
        "fund_pct_oi": _pct(fund_start, oi_wad),
        "window_cap_pct_set": round(window_cap_pct(bw, start - 1), 6),
        "fund_end_usd": usd(fund_assets_wad(bw, end)),
        "fund_min_usd": usd(min(s.fund_assets_wad for s in samples)),
        "liquidations": liq["count"],
        "bankrupt": liq["bankrupt"],
        "shortfall_usd": liq["shortfall_usd"],
        "shortfall_wad": liq["shortfall_wad"],
        "fund_paid_at_liquidation_usd": liq["shortfall_covered_usd"],
        "bad_debt_recorded_usd": ledger["recorded_usd"],
        "bad_debt_recorded_wad": ledger["recorded_wad"],
        "fund_covered_later_usd": ledger["covered_by_fund_later_usd"],
        "fund_paid_usd": usd(fund_paid),
        "fund_paid_wad": str(fund_paid),
        "bad_debt_peak_usd": usd(max((e.peak_wad for e in episodes), default=0)),
        "bad_debt_end_usd": ledger["closing_usd"],
        "adl_events": adl["steps"],
        "adl_transactions": adl["transactions"],
        "adl_accounts": adl["targets"],
        "adl_events_without_haircut": adl["steps_without_haircut"],
        "accounts_hit": adl["accounts_hit"],  # (policy) ADL targets and profitable closes
        "haircut_total_usd": usd(haircuts),
        "haircut_total_wad": str(haircuts),
        "haircut_pct_oi": _pct(haircuts, oi_wad),
        "largest_haircut_usd": usd(largest),
        "largest_share": adl["largest_share"],  # (policy)
        "gini_hit": adl["gini_affected"],  # (policy)
        "gini_eligible": adl["gini_eligible"],  # (policy)
        "eligible_at_start": adl["eligible_at_start"],
        "overshoot_wad": ledger["overshoot_wad"],  # (policy) must be "0" (never above)
        "adl_haircuts_wad": ledger["adl_haircuts_wad"],
        "retired_by_adl_wad": ledger["retired_by_adl_wad"],
        # (policy) checks read from the chain, must be 0: ADL haircuts above the target's profit
        # before the call, and pro-rata calls whose haircuts differ from what the call says it
        # absorbed or exceed the debt it took
        "haircuts_above_profit": haircuts_above_profit(bw, adl_events),
        "prorata_calls": len(prorata_calls),
        "prorata_calls_inconsistent": prorata_inconsistent(prorata_calls, adl_events),
        "close_haircuts_usd": ledger["close_haircuts_usd"],
        "socialized_usd": usd(socialized),
        "bystander_loss_usd": usd(haircuts + socialized),
        "bystander_loss_pct_oi": _pct(haircuts + socialized, oi_wad),
        "adl_gas": sum(gas),  # (policy)
        "adl_gas_largest_call": max(gas, default=0),  # (policy) must fit a block
        "debt_episodes": len(episodes),
        # (policy) the longest episode, in transactions mined (the keeper's and the feeds'): the
        # count of blocks behind it also depends on how the node packed back-to-back sends
        "txs_to_clear_max": max(
            (transactions_between(bw, e.first_tx, e.last_tx) for e in episodes), default=0
        ),
        "blocks_to_clear_max": max((e.last_block - e.first_block for e in episodes), default=0),
        "targets_later_bankrupt": adl["targets_later_bankrupt"],
        "keeper_warnings": result.keeper_log.total if result.keeper_log else 0,
        "haircuts_wad": adl["haircuts_wad"],  # per account, for Lorenz curves and comparisons
        "blocks": [start, end],
    }


def haircuts_above_profit(bw: Bulwark, adl_events: Sequence[Event]) -> int:
    """How many times ADL took more than the target's profit: per account, market and block, the
    haircuts against the position's unrealised profit at the step's price, the position read in the
    block before (a haircut comes out of the profit its close realises, so it must never be more)."""
    taken: dict[tuple[str, int, int], list[int]] = {}
    for e in adl_events:
        key = (str(e.args["account"]), int(e.args["marketId"]), e.block)
        entry = taken.setdefault(key, [0, int(e.args["priceWad"])])
        entry[0] += int(e.args["haircutWad"])
    ch = Calls(bw.ch)
    keys = list(taken)
    replies = rpc_batch(bw.w3, [ch.request("positionOf", [a, m], b - 1) for a, m, b in keys])
    above = 0
    for key, reply in zip(keys, replies, strict=True):
        size, open_notional, _ = ch.decode("positionOf", reply)
        haircut, price = taken[key]
        if haircut > max(0, rm.unrealized_pnl(int(size), int(open_notional), price)):
            above += 1
    return above


def prorata_inconsistent(calls: Sequence[Event], adl_events: Sequence[Event]) -> int:
    """Pro-rata calls whose targets' haircuts do not add up to what the call absorbed, or that
    absorbed more than the debt they took (`AdlProRataApplied`)."""
    per_call: dict[tuple[str, int], int] = {}
    for e in adl_events:
        key = (e.tx, int(e.args["marketId"]))
        per_call[key] = per_call.get(key, 0) + int(e.args["haircutWad"])
    bad = 0
    for c in calls:
        absorbed, taken = int(c.args["absorbedWad"]), int(c.args["debtTakenWad"])
        if per_call.get((c.tx, int(c.args["marketId"])), 0) != absorbed or absorbed > taken:
            bad += 1
    return bad


def _pct(wad: int, oi_wad: int) -> float:
    return round(100 * wad / oi_wad, 6) if oi_wad else 0.0


def adl_gas(bw: Bulwark, adl_events: Sequence[Event]) -> int:
    """Gas used by the transactions that ran ADL steps."""
    return sum(adl_gas_per_call(bw, adl_events))


def adl_gas_per_call(bw: Bulwark, adl_events: Sequence[Event]) -> list[int]:
    """Gas used by each transaction that ran ADL steps, in chain order."""
    out = []
    for tx in dict.fromkeys(e.tx for e in adl_events):
        receipt = bw.w3.eth.get_transaction_receipt(_hex(tx))  # type: ignore[arg-type]
        out.append(int(receipt["gasUsed"]))
    return out


@dataclass(frozen=True)
class Episode:
    """A stretch with bad debt outstanding, from the event that opened it to the one that cleared
    it (or the last event, when it was still open)."""

    first_block: int
    last_block: int
    peak_wad: int
    first_tx: str
    last_tx: str


def debt_episodes(events: Iterable[Event], opening_wad: int) -> list[Episode]:
    """Every episode of bad debt, from the running total the events carry."""
    episodes: list[Episode] = []
    total, peak = opening_wad, opening_wad
    opened: Event | None = None
    last: Event | None = None
    for e in sorted(events, key=lambda x: (x.block, x.log_index)):
        if e.name in ("BadDebtRecorded", "BadDebtCovered", "BadDebtSocialized"):
            total = int(e.args["totalBadDebtWad"])
        elif e.name in ("AutoDeleveraged", "ProfitHaircutOnClose"):
            total -= int(e.args["haircutWad"])
        else:
            continue
        if total > 0 and opened is None:
            opened, peak = e, total
        elif total > 0:
            peak = max(peak, total)
        elif opened is not None:
            episodes.append(Episode(opened.block, e.block, peak, opened.tx, e.tx))
            opened = None
        last = e
    if opened is not None and last is not None:
        episodes.append(Episode(opened.block, last.block, peak, opened.tx, last.tx))
    return episodes


def transactions_between(bw: Bulwark, first_tx: str, last_tx: str) -> int:
    """Transactions mined from `first_tx` to `last_tx`, both included. Unlike a count of blocks, it
    does not depend on how the node packed transactions sent back to back into blocks."""
    w3 = bw.w3
    a = w3.eth.get_transaction_receipt(_hex(first_tx))  # type: ignore[arg-type]
    b = w3.eth.get_transaction_receipt(_hex(last_tx))  # type: ignore[arg-type]
    first_block, last_block = int(a["blockNumber"]), int(b["blockNumber"])
    if first_block == last_block:
        return int(b["transactionIndex"]) - int(a["transactionIndex"]) + 1
    middle = range(first_block, last_block)
    counts = _batch_counts(bw, middle)
    return counts - int(a["transactionIndex"]) + int(b["transactionIndex"]) + 1


def _batch_counts(bw: Bulwark, blocks: range) -> int:
    calls = [("eth_getBlockTransactionCountByNumber", [hex(n)]) for n in blocks]
    total = 0
    for n, reply in zip(blocks, rpc_batch(bw.w3, calls), strict=True):
        if isinstance(reply, RpcFailure) or reply is None:
            raise StressError(f"the node has no transaction count for block {n}")
        total += int(reply, 16)
    return total


def _hex(tx: str) -> str:
    return tx if tx.startswith("0x") else "0x" + tx


# ---------------------------------------------------------------------------- markers


def smallest_from_which(points: Sequence[Point], ok: Any) -> Point | None:
    """The smallest fund (as it was at the crash) from which every larger swept fund satisfies
    `ok` too; None when the largest does not."""
    ranked = sorted(points, key=lambda p: int(p.metrics["fund_start_wad"]))
    found: Point | None = None
    for p in reversed(ranked):
        if not ok(p):
            break
        found = p
    return found


def no_adl(p: Point) -> bool:
    return int(p.metrics["adl_events"]) == 0 and float(p.metrics["haircut_total_usd"]) == 0


def within_bound(p: Point, bound_pct: float) -> bool:
    return float(p.metrics["haircut_pct_oi"]) <= bound_pct


def markers(points: Sequence[Point], bound_pct: float) -> dict[float, dict[str, Any]]:
    """Per window cap: the smallest fund that avoided ADL and the smallest that kept haircuts
    within the bound (each with every larger swept fund doing so too)."""
    out: dict[float, dict[str, Any]] = {}
    for cap in dict.fromkeys(p.window_cap_pct for p in points):
        line = [p for p in points if p.window_cap_pct == cap]
        avoid = smallest_from_which(line, no_adl)
        within = smallest_from_which(line, lambda p: within_bound(p, bound_pct))
        out[cap] = {
            "no_adl": _marker(avoid),
            "haircuts_within_bound": _marker(within),
            "largest_swept_pct": max(p.metrics["fund_pct_oi"] for p in line),
        }
    return out


def _marker(p: Point | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"fund_pct_oi": p.metrics["fund_pct_oi"], "fund_usd": p.metrics["fund_start_usd"]}


def headline(data: Mapping[str, Any]) -> list[str]:
    """One line per window cap: the two fund sizes a risk team asks for."""
    pop, bound = data["population"], data["sweep"]["haircut_bound_pct"]
    lines = []
    for cap, m in data["markers"].items():
        head = (
            f"{data['scenario']['name']}, {pop['traders']} accounts, open interest "
            f"{_money(pop['open_interest_usd'])}, window cap {float(cap):g}%, ADL policy "
            f"{data['sweep']['adl_policy']}: "
        )
        top = f"{m['largest_swept_pct']:.2f}%"
        avoid = (
            f"ADL avoided from a fund of {_size(m['no_adl'])}"
            if m["no_adl"]
            else f"ADL at every swept size up to {top} of open interest"
        )
        within = (
            f"haircuts at most {bound:g}% of open interest from {_size(m['haircuts_within_bound'])}"
            if m["haircuts_within_bound"]
            else f"haircuts above {bound:g}% of open interest up to {top}"
        )
        lines.append(head + avoid + "; " + within)
    return lines + comparison_headline(data.get("comparison", []))


def comparison_headline(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per window cap: the two policies over the fund sizes where ADL ran."""
    lines = []
    for cap in dict.fromkeys(r["window_cap_pct"] for r in rows):
        line = [r for r in rows if r["window_cap_pct"] == cap]
        names = list(line[0]["policies"]) if line else []
        adl = [r for r in line if any(v["adl_events"] for v in r["policies"].values())]
        if len(names) != 2:
            continue
        a, b = names
        head = f"{a} against {b}, window cap {cap:g}%: "
        if not adl:
            lines.append(head + f"no ADL at any of the {len(line)} fund sizes: nothing to compare")
            continue

        def span(key: str, name: str, fmt: str, adl: list[Any] = adl) -> str:
            vals = [r["policies"][name][key] for r in adl if r["policies"][name][key] is not None]
            lo, hi = min(vals), max(vals)
            return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"

        over = max(int(v["overshoot_wad"]) for r in line for v in r["policies"].values())
        lines.append(
            head
            + f"ADL at {len(adl)} of {len(line)} fund sizes; accounts hit "
            + f"{span('accounts_hit', a, '{}')} against {span('accounts_hit', b, '{}')}; Gini "
            + f"{span('gini_union', a, '{:.2f}')} against {span('gini_union', b, '{:.2f}')}; "
            + f"largest share {span('largest_share', a, '{:.0%}')} against "
            + f"{span('largest_share', b, '{:.0%}')}; ADL gas {span('adl_gas', a, '{:,}')} "
            + f"against {span('adl_gas', b, '{:,}')}; overshoot at most {_money(over / WAD)}"
        )
    return lines


def _size(m: Mapping[str, Any]) -> str:
    return f"{m['fund_pct_oi']:.2f}% of open interest ({_money(m['fund_usd'])})"


def _money(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


# ---------------------------------------------------------------------------- the sweep


def needs_adl_replay(p: Point) -> bool:
    """Whether another ADL policy could change the point: only if the replay recorded bad debt.
    The policy is read by `autoDeleverage` alone, which needs bad debt the fund cannot pay; with
    none recorded, no ADL call ran and a replay under another policy is the same replay."""
    m = p.metrics
    return int(m["bad_debt_recorded_wad"]) > 0 or int(m["adl_events"]) > 0


def unreplayed(p: Point, policy: int) -> Point:
    """The point under `policy`, without a replay: the same measures (see needs_adl_replay)."""
    return Point(
        p.fund_pct_asked,
        p.window_cap_pct,
        {**p.metrics, "adl_policy": POLICY_NAMES[policy]},
        0.0,
        p.refined,
        replayed=False,
    )


class FundSweep:
    """Setup once, snapshot, then one replay per (window cap, fund size) from the snapshot; with
    `refine`, that many more replays per marker and cap, bisecting between the largest swept fund
    that fell short and the marker, so the marker is known to within a fraction of the grid step."""

    def __init__(self, run: StressRun, sweep: SweepConfig, restore: bool = False) -> None:
        sweep.validate()
        self.run = run
        self.sweep = sweep
        self.restore = restore  # revert the chain to where it was before the setup, at the end
        self._snapshot: Any = None
        self._done = 0

    def execute(self) -> SweepResult:
        run, w3 = self.run, self.run.w3
        walls: dict[str, float] = {}
        before = rpc(w3, "evm_snapshot") if self.restore else None
        try:
            with run.steady_clock():
                result = self._execute(walls)
        finally:
            if before is not None:
                rpc(w3, "evm_revert", before)
        return result

    def _execute(self, walls: dict[str, float]) -> SweepResult:
        run, w3 = self.run, self.run.w3
        prepared = run.prepare()
        if self.sweep.adl_policy is not None:  # before the snapshot: every point starts with it
            set_policy(run, ADL_POLICIES[self.sweep.adl_policy])
        walls["setup"] = prepared.setup_seconds
        oi = open_interest_wad(run.bw)
        pinned_at = int(w3.eth.get_block("latest")["timestamp"]) + PIN_SECONDS
        population = describe_population(run, prepared, oi)
        caps = self.sweep.window_caps_pct
        compare = self.sweep.compare_policies
        total = (len(self.sweep.grid) + 2 * self.sweep.refine * len(caps)) * (2 if compare else 1)
        steps = len(run.path.steps) - 1
        progress = Progress(total * steps, run.progress_stream, label="fund sweep")
        points: list[Point] = []
        t0 = time.monotonic()

        def replay(cap: float, pct: float, refined: bool, policy: int | None) -> Point:
            k = self._done
            named = f" {POLICY_NAMES[policy]}" if policy is not None else ""
            where = f"replay {k + 1} of up to {total}: fund {pct:.3g}% cap {cap:g}%{named}"

            def step(i: int, note: str) -> None:
                progress.update(k * steps + i, f"{where}: {note}")

            self._restore()
            run.on_step = step
            p = run_point(run, prepared, oi, pct, cap, pinned_at, policy)
            p.refined = refined
            self._done += 1
            points.append(p)
            return p

        def point(cap: float, pct: float, refined: bool = False) -> Point:
            """One point: under the sweep's policy; when comparing, under the queue then pro
            rata. Returns the first (the one the markers and the refinement follow)."""
            if not compare:
                return replay(cap, pct, refined, None)
            first = replay(cap, pct, refined, QUEUE)
            if needs_adl_replay(first):
                replay(cap, pct, refined, PRO_RATA)
            else:
                points.append(unreplayed(first, PRO_RATA))
                self._done += 1
            return first

        try:
            for cap in caps:
                line = [point(cap, pct) for pct in sorted(set(self.sweep.fund_pcts))]
                bound = self.sweep.haircut_bound_pct
                for ok in (no_adl, lambda p, b=bound: within_bound(p, b)):
                    self._refine(line, ok, lambda pct, c=cap: point(c, pct, refined=True))
        finally:
            run.on_step = None
            progress.close()
        walls["points"] = time.monotonic() - t0
        return SweepResult(
            config=run.cfg,
            sweep=self.sweep,
            population=population,
            points=points,
            scenario={
                "name": run.path.name,
                "title": run.scenario.title if run.scenario else run.path.name,
                "steps": steps,
                "step_seconds": run.step_seconds,
                "synthetic": bool(run.scenario and run.scenario.synthetic),
            },
            wall_seconds=walls,
        )

    def _restore(self) -> None:
        """Back to the prepared chain: the first point starts there; every later one reverts to the
        snapshot (which Anvil consumes, so a new one is taken at once)."""
        w3 = self.run.w3
        if self._snapshot is not None and not rpc(w3, "evm_revert", self._snapshot):
            raise StressError("the node could not revert to the sweep's snapshot")
        self._snapshot = rpc(w3, "evm_snapshot")

    def _refine(self, line: list[Point], ok: Any, replay: Any) -> None:
        """Bisects between the marker and the swept fund just below it, `refine` times."""
        for _ in range(self.sweep.refine):
            marker = smallest_from_which(line, ok)
            if marker is None:
                return
            ranked = sorted(line, key=lambda p: int(p.metrics["fund_start_wad"]))
            i = ranked.index(marker)
            if i == 0:
                return
            low, high = ranked[i - 1].metrics["fund_pct_oi"], marker.metrics["fund_pct_oi"]
            line.append(replay((low + high) / 2))


def describe_population(run: StressRun, prepared: Prepared, oi_wad: int) -> dict[str, Any]:
    """What docs/stress.md publishes beside the curves: accounts, leverage, open interest, seed."""
    pop = prepared.population
    bw = run.bw
    leverages = sorted(t.leverage for t in pop.traders)
    n = len(leverages)
    return {
        "traders": n,
        "seed": run.cfg.seed,
        "collateral_usd": usd(sum(t.collateral_tokens for t in pop.traders) * bw.token_scale),
        "open_interest_usd": usd(oi_wad),
        "open_interest_wad": str(oi_wad),
        "leverage": {
            "min": leverages[0],
            "p25": leverages[n // 4],
            "median": leverages[n // 2],
            "p75": leverages[3 * n // 4],
            "max": leverages[-1],
            "over_10x": sum(1 for x in leverages if x > 10),
        },
        "long_legs": sum(1 for t in pop.traders for leg in t.legs if leg.size_wad > 0),
        "short_legs": sum(1 for t in pop.traders for leg in t.legs if leg.size_wad < 0),
        "pool_equity_usd": usd(int(bw.ch.functions.poolEquityWad().call())),
        "fund_floor_usd": usd(fund_assets_wad(bw)),  # the fee share of the setup's trades
    }


def to_json(res: SweepResult) -> dict[str, Any]:
    order = list(dict.fromkeys(p.policy for p in res.points))
    primary = order[0] if order else ""
    own = [p for p in res.points if p.policy == primary]  # the markers follow the first policy
    bound = res.sweep.haircut_bound_pct
    data: dict[str, Any] = {
        "scenario": res.scenario,
        "run": {
            "accounts": res.config.accounts,
            "seed": res.config.seed,
            "speed": res.config.speed,
            "wall_seconds": {k: round(v, 2) for k, v in res.wall_seconds.items()},
            "generated_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "sweep": {
            "fund_pcts": list(res.sweep.fund_pcts),
            "window_caps_pct": list(res.sweep.window_caps_pct),
            "haircut_bound_pct": res.sweep.haircut_bound_pct,
            "refine": res.sweep.refine,
            "adl_policy": primary,
            "compare_policies": res.sweep.compare_policies,
        },
        "population": res.population,
        "points": [
            p.as_dict()
            for p in sorted(
                res.points,
                key=lambda p: (
                    p.window_cap_pct,
                    int(p.metrics["fund_start_wad"]),
                    p.fund_pct_asked,
                    order.index(p.policy),
                ),
            )
        ],
        "markers": {f"{cap:g}": m for cap, m in markers(own, bound).items()},
    }
    if res.sweep.compare_policies:
        data["markers_by_policy"] = {
            name: {
                f"{cap:g}": m
                for cap, m in markers([p for p in res.points if p.policy == name], bound).items()
            }
            for name in order
        }
        data["comparison"] = comparison(res.points)
    data["headline"] = headline(data)
    return data


COMPARED = (
    "accounts_hit",
    "adl_accounts",
    "eligible_at_start",
    "haircut_total_usd",
    "largest_haircut_usd",
    "largest_share",
    "gini_hit",
    "gini_eligible",
    "overshoot_wad",
    "adl_haircuts_wad",
    "retired_by_adl_wad",
    "adl_events",
    "adl_transactions",
    "adl_gas",
    "adl_gas_largest_call",
    "txs_to_clear_max",
    "blocks_to_clear_max",
    "socialized_usd",
    "bystander_loss_usd",
    "bystander_loss_pct_oi",
    "bad_debt_recorded_usd",
    "bad_debt_end_usd",
    "targets_later_bankrupt",
    "haircuts_above_profit",
    "prorata_calls_inconsistent",
)


def comparison(points: Sequence[Point]) -> list[dict[str, Any]]:
    """One row per (window cap, fund size): each policy's measures side by side, and the Gini of
    each policy's haircuts over the same accounts (every account hit under either, zero where it
    paid nothing), so the two are comparable."""
    groups: dict[tuple[float, float, bool], dict[str, Point]] = {}
    for p in points:
        groups.setdefault((p.window_cap_pct, p.fund_pct_asked, p.refined), {})[p.policy] = p
    rows = []
    for (cap, pct, refined), by_policy in groups.items():
        if len(by_policy) < 2:
            continue
        everyone = sorted({a for p in by_policy.values() for a in p.metrics["haircuts_wad"]})
        first = next(iter(by_policy.values())).metrics
        row: dict[str, Any] = {
            "window_cap_pct": cap,
            "fund_pct_asked": pct,
            "refined": refined,
            "fund_pct_oi": first["fund_pct_oi"],
            "fund_start_usd": first["fund_start_usd"],
            "shortfall_usd": first["shortfall_usd"],
            "policies": {},
        }
        for name, p in by_policy.items():
            m = p.metrics
            hit = [int(m["haircuts_wad"].get(a, 0)) for a in everyone]
            row["policies"][name] = {
                "replayed": p.replayed,
                **{k: m[k] for k in COMPARED},
                "gini_union": round(report.gini(hit), 6) if everyone else None,
            }
        rows.append(row)
    rows.sort(key=lambda r: (r["window_cap_pct"], r["fund_pct_oi"], r["fund_pct_asked"]))
    return rows


# ---------------------------------------------------------------------------- files


def write(data: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "fund_sweep.json", "plot": out_dir / "fund_sweep.png"}
    files["json"].write_text(json.dumps(data, indent=2) + "\n")
    plot(data, files["plot"])
    if data.get("comparison"):
        files["comparison"] = out_dir / "adl_policies.png"
        plot_comparison(data, files["comparison"])
    return files


COMPARISON_PANELS = (
    ("accounts_hit", "accounts hit", "{:.0f}"),
    ("gini_union", "Gini of the haircuts (accounts hit under either)", "{:.2f}"),
    ("largest_share", "largest share of the haircuts", "{:.0%}"),
    ("adl_gas", "gas of the ADL calls", "{:,.0f}"),
    ("txs_to_clear_max", "transactions until the debt was cleared", "{:.0f}"),
    ("bystander_loss_pct_oi", "haircuts + socialised, % of open interest", "{:.2f}"),
)


def plot_comparison(data: Mapping[str, Any], file: Path) -> None:
    """The two ADL policies side by side against the fund's size: one panel per measure, one
    colour per window cap, the queue solid and pro rata dashed; only sizes where ADL ran."""
    plt = report.pyplot()
    import matplotlib.ticker

    rows = [r for r in data["comparison"] if any(v["adl_events"] for v in r["policies"].values())]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    colors = ("tab:purple", "tab:blue", "tab:green", "tab:orange", "tab:red", "tab:brown")
    styles = (("o-", 1.0), ("s--", 0.8))
    caps = list(dict.fromkeys(r["window_cap_pct"] for r in rows))
    ticks = sorted({r["fund_pct_oi"] for r in rows if not r["refined"]})
    low = min((x for x in ticks if x > 0), default=0.01)
    for ax, (key, title, _) in zip(axes.flat, COMPARISON_PANELS, strict=True):
        for i, cap in enumerate(caps):
            line = sorted((r for r in rows if r["window_cap_pct"] == cap),
                          key=lambda r: r["fund_pct_oi"])  # fmt: skip
            x = [r["fund_pct_oi"] for r in line]
            for j, name in enumerate(line[0]["policies"]):
                style, alpha = styles[j % 2]
                y = [r["policies"][name][key] or 0 for r in line]
                ax.plot(x, y, style, color=colors[i % len(colors)], alpha=alpha,
                        label=f"{name}, window cap {cap:g}%")  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_xscale("symlog", linthresh=max(low, 0.01), linscale=0.5)
        ax.set_xticks(ticks, [f"{x:.2g}" for x in ticks], fontsize=8)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("insurance fund when the crash begins, % of open interest", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        if key == "largest_share":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        if key == "adl_gas":
            ax.yaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g}M")
            )
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    pop = data["population"]
    over = max(
        (int(v["overshoot_wad"]) for r in data["comparison"] for v in r["policies"].values()),
        default=0,
    )
    fig.suptitle(
        f"{data['scenario']['title']}: ADL policies side by side, {pop['traders']} accounts "
        f"(seed {pop['seed']}), open interest {_money(pop['open_interest_usd'])}; overshoot at "
        f"most {_money(over / WAD)} under both; {len(rows)} fund sizes with ADL".replace(
            "$", r"\$"
        ),  # a literal dollar: matplotlib reads a pair of them as mathematics
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(file, dpi=100)
    plt.close(fig)


def plot(data: Mapping[str, Any], file: Path) -> None:
    """ADL severity (haircuts, % of open interest) and frequency (ADL steps, accounts hit) against
    the fund's size (% of open interest), one line per window cap, the markers as vertical lines."""
    plt = report.pyplot()
    import matplotlib.ticker

    pop, bound = data["population"], data["sweep"]["haircut_bound_pct"]
    policy = data["sweep"]["adl_policy"]
    fig, (sev, freq) = plt.subplots(1, 2, figsize=(12, 6.2))
    colors = ("tab:purple", "tab:blue", "tab:green", "tab:orange", "tab:red", "tab:brown")
    caps = list(data["markers"])
    for i, cap in enumerate(caps):
        pts = sorted(
            (
                p
                for p in data["points"]
                if f"{p['window_cap_pct']:g}" == cap and p["adl_policy"] == policy
            ),
            key=lambda p: p["fund_pct_oi"],
        )
        x = [p["fund_pct_oi"] for p in pts]
        c = colors[i % len(colors)]
        label = f"window cap {cap}%"
        sev.plot(x, [p["haircut_pct_oi"] for p in pts], "o-", color=c, label=f"{label}: total")
        sev.plot(
            x,
            [100 * p["largest_haircut_usd"] / pop["open_interest_usd"] for p in pts],
            "s--",
            color=c,
            alpha=0.6,
            label=f"{label}: largest one",
        )
        freq.plot(x, [p["adl_events"] for p in pts], "o-", color=c, label=f"{label}: ADL steps")
        freq.plot(
            x, [p["accounts_hit"] for p in pts], "s--", color=c, alpha=0.6,
            label=f"{label}: accounts hit",
        )  # fmt: skip
        m = data["markers"][cap]
        for key, style, text in (
            ("no_adl", "-", "no ADL"),
            ("haircuts_within_bound", ":", f"haircuts <= {bound:g}% of OI"),
        ):
            if m[key] is None:
                continue
            at = m[key]["fund_pct_oi"]
            sev.axvline(at, color=c, linestyle=style, linewidth=1.0,
                        label=f"{text}, cap {cap}%: from {at:.2f}%")  # fmt: skip
            freq.axvline(at, color=c, linestyle=style, linewidth=1.0)
    sev.axhline(bound, color="grey", linestyle=":", linewidth=0.8, label=f"bound {bound:g}% of OI")
    sev.set_ylabel("haircuts, % of open interest")
    sev.set_title("ADL severity: haircuts taken from traders")
    freq.set_ylabel("count")
    freq.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    freq.set_title("ADL frequency: steps and accounts hit")
    xs = sorted({p["fund_pct_oi"] for p in data["points"]})
    ticks = sorted({p["fund_pct_oi"] for p in data["points"] if not p.get("refined")})
    low = min((x for x in xs if x > 0), default=0.25)
    for ax in (sev, freq):
        ax.set_xscale("symlog", linthresh=max(low, 0.01), linscale=0.5)
        ax.set_xlim(0, max(xs) * 1.3 if xs and max(xs) > 0 else 1)
        ax.set_xticks(ticks, [f"{x:.2g}" for x in ticks], fontsize=8)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("insurance fund when the crash begins, % of open interest")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    handles, labels = sev.get_legend_handles_labels()
    more, more_labels = freq.get_legend_handles_labels()
    fig.legend(
        handles + more,
        labels + more_labels,
        loc="lower center",
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    lev = pop["leverage"]
    fig.suptitle(
        f"{data['scenario']['title']}: {pop['traders']} accounts (seed {pop['seed']}), open "
        f"interest {_money(pop['open_interest_usd'])}, leverage {lev['min']:.1f}x-{lev['max']:.1f}x "
        f"(median {lev['median']:.1f}x); ADL policy {policy}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(file, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- terminal


COLUMNS = (
    ("fund %OI", "fund_pct_oi", "{:.2f}"),
    ("fund $", "fund_start_usd", "money"),
    ("cap %", "window_cap_pct", "{:g}"),
    ("shortfall", "shortfall_usd", "money"),
    ("paid at liq.", "fund_paid_at_liquidation_usd", "money"),
    ("bad debt", "bad_debt_recorded_usd", "money"),
    ("fund later", "fund_covered_later_usd", "money"),
    ("ADL steps", "adl_events", "{}"),
    ("hit", "accounts_hit", "{}"),
    ("haircuts", "haircut_total_usd", "money"),
    ("largest", "largest_haircut_usd", "money"),
    ("socialised", "socialized_usd", "money"),
    ("bystanders", "bystander_loss_usd", "money"),
    ("Gini hit", "gini_hit", "{:.2f}"),
    ("txs to clear", "txs_to_clear_max", "{}"),
)


def table_lines(points: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [[name for name, _, _ in COLUMNS]]
    for p in points:
        row = []
        for _, key, fmt in COLUMNS:
            v = p[key]
            row.append(_money(v) if fmt == "money" else fmt.format(v))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def summary_lines(data: Mapping[str, Any], files: Mapping[str, Path]) -> list[str]:
    pop, run = data["population"], data["run"]
    lev = pop["leverage"]
    lines = [
        (
            f"{data['scenario']['title']}: fund sweep, {len(data['points'])} replays from one "
            f"snapshot; {pop['traders']} accounts (seed {pop['seed']}), collateral "
            f"{_money(pop['collateral_usd'])}, open interest {_money(pop['open_interest_usd'])}, "
            f"leverage {lev['min']:.1f}x-{lev['max']:.1f}x (median {lev['median']:.1f}x)"
        ),
        *table_lines([p for p in data["points"] if p["adl_policy"] == data["sweep"]["adl_policy"]]),
        *comparison_lines(data.get("comparison", [])),
        *data["headline"],
        "  time        " + ", ".join(f"{k} {v:.1f} s" for k, v in run["wall_seconds"].items()),
        f"  report      {files['json']}; plot {files['plot']}"
        + (f"; policies {files['comparison']}" if "comparison" in files else ""),
    ]
    return lines


COMPARISON_COLUMNS = (
    ("hit", "accounts_hit", "{}"),
    ("Gini", "gini_union", "{:.2f}"),
    ("largest", "largest_share", "{:.0%}"),
    ("overshoot", "overshoot_wad", "wad"),
    ("gas", "adl_gas", "{:,}"),
    ("txs", "txs_to_clear_max", "{}"),
    ("socialised", "socialized_usd", "money"),
)


def comparison_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The policies side by side at each fund size where ADL ran under either."""
    rows = [r for r in rows if any(v["adl_events"] for v in r["policies"].values())]
    if not rows:
        return []
    names = list(rows[0]["policies"])
    head = ["cap %", "fund %OI"] + [f"{c} {n}" for n in names for c, _, _ in COMPARISON_COLUMNS]
    table = [head]
    for r in rows:
        cells = [f"{r['window_cap_pct']:g}", f"{r['fund_pct_oi']:.2f}"]
        for n in names:
            v = r["policies"][n]
            for _, key, fmt in COMPARISON_COLUMNS:
                x = v[key]
                if x is None:
                    cells.append("-")
                elif fmt == "money":
                    cells.append(_money(x))
                elif fmt == "wad":
                    cells.append(_money(int(x) / WAD))
                else:
                    cells.append(fmt.format(x))
        table.append(cells)
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    out = ["  ADL policies at each fund size with ADL (Gini over the accounts hit under either):"]
    return out + [
        "  " + "  ".join(c.rjust(w) for c, w in zip(t, widths, strict=True)) for t in table
    ]


# ---------------------------------------------------------------------------- the command


def parse_pcts(text: str | None, default: tuple[float, ...], flag: str) -> tuple[float, ...]:
    """'0,0.5,1,2' (percent; a trailing % is allowed) into numbers; one readable line otherwise."""
    if text is None or text == "":
        return default
    out = []
    for part in str(text).split(","):
        item = part.strip().rstrip("%")
        try:
            value = float(item)
        except ValueError:
            raise StressError(
                f"{flag} takes percentages separated by commas (like 0,0.5,1,2), got {part!r}"
            ) from None
        out.append(value)
    return tuple(out)


def run_command(opts: StressOptions, sweep: SweepConfig) -> Outcome:
    """`bulwark stress SCENARIO --fund-sweep [PCTS]`: the sweep, its JSON, plots and summary. The
    run's own fund stake is left out (the sweep sets the fund per point). A mistake raises
    :class:`BulwarkError` or :class:`ScenarioError`."""
    cfg = StressConfig(**{**opts.config.__dict__, "fund_ratio": 0.0})
    cfg.validate()
    sweep.validate()
    scenarios.find(cfg.scenario)
    log_file = fresh_log(opts.out / "fund_sweep_keeper.log")
    with chain_for(opts.chain) as (bw, embedded):
        admin = dev_account(0) if embedded else admin_signer(opts.chain)
        run = StressRun(bw, cfg, admin, keeper_log_file=log_file)
        result = FundSweep(run, sweep, restore=not embedded).execute()
    data = to_json(result)
    files = write(data, opts.out)
    bad = [
        p
        for p in data["points"]
        if int(p["overshoot_wad"]) > 0
        or p["haircuts_above_profit"]
        or p["prorata_calls_inconsistent"]
    ]
    return Outcome(data, summary_lines(data, files), not bad)
