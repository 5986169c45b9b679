"""The keeper's decisions, as pure functions from a snapshot and settings to actions.

Nothing here reads the chain, the clock or the environment: the daemon (bulwark/keeper/daemon.py) gathers
what a decision needs, calls it, and carries out what it returns. Each decision is therefore tested
without a node (tests/test_decisions.py), against bulwark/core/riskmath.py's rules.

- :func:`choose_liquidations`: which confirmed-liquidatable accounts this keeper sends, in which
  market each, and which it leaves to the keeper whose shard they are in.
- :func:`liquidation_market`: the market a liquidation closes first.
- :func:`plan_batches` and :func:`fitted_gas`: how many entries per ``liquidateBatch`` and the gas
  limit each is sent with, from one estimate's gas per entry and the block gas limit.
- :func:`raised_gas`: the next limit a batch that fell short is checked with.
- :func:`bad_debt_turn`, :func:`bad_debt_sides` and :func:`side_action`: whether this keeper acts on
  bad debt now, on which market sides in which order, and for each side whether to cover from the
  fund, deleverage, socialise or wait (the contract's order: cover, then ADL, then socialise).
- :func:`adl_targets` and :func:`trim_adl_targets`: which accounts an ``autoDeleverage`` names, and
  the list to try after a simulation refused one of them.
- :func:`lapsed_requests`: which unstake requests of the insurance fund have outlived their claim
  window, so that ``lapse`` returns their shares to staked.
- :func:`passes_late` and :func:`block_interval`: whether passes are late, and the block interval
  learnt from the heads seen.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bulwark.core import riskmath as rm
from bulwark.keeper import prorata

BPS = 10_000
PROBE_ENTRIES = 32  # entries of the batch whose eth_estimateGas gives the gas per entry
BATCH_PREDICT_BPS = 1_000  # a batch's predicted limit: the probe's gas per entry + 10%
BATCH_FIXED_GAS = 30_000  # plus the transaction's own overhead
BATCH_HEADROOM_BPS = 300  # sent with 3% above the verified limit: state moves before inclusion
BATCH_FALLBACK_MULTIPLE = 4  # a batch no checked limit fitted: at most 4x its predicted limit
BATCH_BLOCK_SHARE = 4  # a batch takes at most a quarter of the block gas limit
BATCH_RAISE_PERCENT = 115  # a batch that fell short is checked again with 15% more gas

Entry = tuple[str, int]  # (account, market id)


# ---------------------------------------------------------------------------- liquidations


@dataclass(frozen=True)
class Sharding:
    """The part of the settings the choice of accounts depends on."""

    keeper_count: int = 1
    keeper_index: int = 0
    backup_delay_blocks: int = 0


@dataclass(frozen=True)
class AccountView:
    """What the keeper knows of one account: the chain's health verdict, its equity, and its
    open positions (market id to position)."""

    account: str
    liquidatable: bool
    equity: int
    positions: Mapping[int, rm.Position]


@dataclass(frozen=True)
class LiquidationChoice:
    """The entries to send (in the order given), the accounts deferred to their own shard's keeper,
    the accounts this keeper backs up (their keeper waited too long), and the block each account
    outside this keeper's shard was first seen liquidatable."""

    entries: tuple[Entry, ...]
    deferred: tuple[str, ...]
    backups: tuple[tuple[str, int], ...]
    first_seen: Mapping[str, int]


def liquidation_market(
    positions: Mapping[int, rm.Position],
    prices: Mapping[int, int],
    indices: Mapping[int, int],
    pool_margin: int,
    risk: rm.RiskParams,
    equity: int,
) -> int | None:
    """The market to liquidate first among those with a fresh price: any for a bankrupt account
    (all close; the lowest id), else the first in the contract's order (:func:`rm.liquidation_rank`:
    a position whose close the pool's margin pays before one it cannot, then the largest notional;
    ties to the lowest id)."""
    open_markets = sorted(m for m in positions if m in prices and m in indices)
    if not open_markets:
        return None
    if rm.is_bankrupt(equity, risk):
        return open_markets[0]
    return max(
        open_markets,
        key=lambda m: (
            rm.liquidation_rank(positions[m], prices[m], indices[m], pool_margin),
            -m,
        ),
    )


def choose_liquidations(
    accounts: Sequence[AccountView],
    prices: Mapping[int, int],
    risk: rm.RiskParams,
    *,
    indices: Mapping[int, int],
    pool_margin: int,
    me: str,
    busy: Iterable[str],
    block: int,
    first_seen: Mapping[str, int],
    sharding: Sharding,
    shard_of: Callable[[str, int], int],
) -> LiquidationChoice:
    """The accounts to liquidate now, each with its first market, in the order given.

    Left out: accounts not liquidatable, the keeper's own, those with a liquidation in flight,
    those with no position at a fresh price, and (with several keepers) those of another shard
    until they have been liquidatable for `backup_delay_blocks` (counted from `first_seen`)."""
    busy_set = set(busy)
    seen = dict(first_seen)
    entries: list[Entry] = []
    deferred: list[str] = []
    backups: list[tuple[str, int]] = []
    for view in accounts:
        if not view.liquidatable or view.account in busy_set or view.account == me:
            continue
        if (
            sharding.keeper_count > 1
            and shard_of(view.account, sharding.keeper_count) != sharding.keeper_index
        ):
            first = seen.setdefault(view.account, block)
            if block - first < sharding.backup_delay_blocks:
                if view.account not in deferred:
                    deferred.append(view.account)
                continue
            backups.append((view.account, first))
        market = liquidation_market(view.positions, prices, indices, pool_margin, risk, view.equity)
        if market is not None:
            entries.append((view.account, market))
    return LiquidationChoice(tuple(entries), tuple(deferred), tuple(backups), seen)


# ---------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class BatchPlan:
    """One ``liquidateBatch`` in the making: its entries and its predicted gas limit."""

    entries: tuple[Entry, ...]
    gas: int


def probe_entries(entries: Sequence[Entry], max_batch: int) -> tuple[Entry, ...]:
    """The entries whose eth_estimateGas as one batch gives the gas per entry."""
    return tuple(entries[: min(PROBE_ENTRIES, max_batch)])


def gas_per_entry(probe_estimate: int, probe_entries: int) -> float:
    """The gas one entry is predicted to take: the probe's estimate per entry, plus 10%."""
    return probe_estimate * (BPS + BATCH_PREDICT_BPS) / BPS / probe_entries


def plan_batches(
    entries: Sequence[Entry], per_entry: float, block_gas_limit: int, max_batch: int
) -> list[BatchPlan]:
    """Consecutive chunks of the entries, each at most `max_batch` entries and (as predicted) a
    quarter of the block gas limit, with the limit predicted for it (never above the block's)."""
    if not entries:
        return []
    share = block_gas_limit // BATCH_BLOCK_SHARE
    size = max(1, min(max_batch, int(share / per_entry)))
    return [
        BatchPlan(
            tuple(entries[i : i + size]),
            min(block_gas_limit, int(per_entry * len(entries[i : i + size])) + BATCH_FIXED_GAS),
        )
        for i in range(0, len(entries), size)
    ]


def fitted_gas(
    checked_gas: int, fits: bool, predicted: int, block_gas_limit: int
) -> tuple[int, int | None]:
    """The gas limit a batch is sent with, and the fallback limit it came from (None if none).

    A batch whose eth_call at `checked_gas` liquidated all it can gets that limit; one no checked
    limit fitted falls back to at most 4x its prediction, never the whole block (a real chain
    charges the limit up front). Either way 3% headroom, capped at the block gas limit."""
    fallback = None if fits else min(block_gas_limit, BATCH_FALLBACK_MULTIPLE * predicted)
    gas = checked_gas if fallback is None else fallback
    return min(block_gas_limit, gas * (BPS + BATCH_HEADROOM_BPS) // BPS), fallback


def raised_gas(gas: int, block_gas_limit: int) -> int:
    """The next limit a batch that liquidated fewer entries than it can is checked with: 15% more,
    never above the block gas limit."""
    return min(block_gas_limit, gas * BATCH_RAISE_PERCENT // 100)


# ---------------------------------------------------------------------------- bad debt


def bad_debt_turn(
    total_bad_debt: int, seen_at: int | None, block: int, sharding: Sharding
) -> tuple[bool, int | None]:
    """Whether this keeper acts on outstanding bad debt, and since which block it is outstanding
    (None once there is none). Keeper 0 acts at once; the others, as backups, once it has been
    outstanding for `backup_delay_blocks`, so that they do not race."""
    if total_bad_debt == 0:
        return False, None
    since = block if seen_at is None else seen_at
    if sharding.keeper_count == 1 or sharding.keeper_index == 0:
        return True, since
    return block - since >= sharding.backup_delay_blocks, since


def bad_debt_sides(bad_debt: Mapping[tuple[int, int], int]) -> list[tuple[int, int, int]]:
    """The market sides with debt, in the order they are settled: by market, then side."""
    return [(m, s, d) for (m, s), d in sorted(bad_debt.items())]


class Act(enum.Enum):
    """What to do about one market side's bad debt, or what the decision needs to know first."""

    COVER = "coverBadDebt"
    DELEVERAGE = "autoDeleverage"
    SOCIALISE = "socializeBadDebt"
    WAIT_STALE_PRICE = "wait: stale price"
    WAIT_GRACE = "wait: grace period"
    NEED_TARGETS = "need: ADL targets"
    NEED_GRACE_CLOCK = "need: when the side's debt was recorded"


@dataclass(frozen=True)
class SideState:
    """One market side with bad debt, as far as it is known. `targets` (the ADL targets in the
    contract's order) and `recorded_at` (the side's grace clock) are read only when the decision
    asks for them (None until then): each costs chain calls."""

    fund_available: int
    price_fresh: bool
    now: int
    grace_period: int
    targets: tuple[str, ...] | None = None
    recorded_at: int | None = None


@dataclass(frozen=True)
class BadDebtPolicy:
    """The settings the bad-debt decision depends on: whether this keeper holds the ADL role and
    whether it may socialise."""

    adl_role: bool
    socialize: bool


def socializable_at(recorded_at: int, grace_period: int) -> int:
    """A side's debt may be socialised this long after the last debt recorded on it."""
    return recorded_at + grace_period


def side_action(state: SideState, policy: BadDebtPolicy) -> Act:
    """The contract's order: the fund covers while it has anything available; else, at a fresh
    price, ADL takes the targets there are (a keeper without the ADL role has none); else, once
    the side's grace period has run, the pool absorbs the rest (if this keeper socialises)."""
    if state.fund_available > 0:
        return Act.COVER
    if not state.price_fresh:
        return Act.WAIT_STALE_PRICE
    if policy.adl_role:
        if state.targets is None:
            return Act.NEED_TARGETS
        if state.targets:
            return Act.DELEVERAGE
    if state.recorded_at is None:
        return Act.NEED_GRACE_CLOCK
    if policy.socialize and state.now >= socializable_at(state.recorded_at, state.grace_period):
        return Act.SOCIALISE
    return Act.WAIT_GRACE


def adl_targets(
    scores: Mapping[str, int],
    positions: Mapping[str, rm.Position],
    price: int,
    debt: int,
    max_targets: int,
    pro_rata: bool,
) -> list[str]:
    """The targets of one ``autoDeleverage`` from the chain's ADL `scores` of the side's holders.

    Under the pro-rata policy every eligible position pays its share: all of them, in ascending
    address order. Otherwise the contract's order (non-increasing score, ties by address), as many
    as the debt needs by their unrealised profit at `price`, plus one, at most `max_targets`."""
    if pro_rata:
        return prorata.pro_rata_set(scores)
    chosen: list[str] = []
    covered = 0
    for account in rm.rank_adl(scores)[:max_targets]:
        chosen.append(account)
        p = positions[account]
        covered += max(0, rm.unrealized_pnl(p.size, p.open_notional, price))
        if covered > debt and len(chosen) > 1:
            break
    return chosen


def trim_adl_targets(targets: Sequence[str], error: str, target: str | None) -> list[str] | None:
    """The targets to simulate next after ``autoDeleverage``'s simulation reverted with `error`
    naming `target`: cut before a target out of order (funding moved a near tie), drop one that is
    ineligible or that the close would leave owing (its profit more than the pool's margin can pay);
    None when the error is of another kind (nothing to retry)."""
    if target is None or target not in targets:
        return None
    if error == "AdlOutOfOrder":
        return list(targets[: list(targets).index(target)])
    if error in ("AdlTargetIneligible", "AdlTargetLeftOwing"):
        return [t for t in targets if t != target]
    return None


# ---------------------------------------------------------------------------- fund housekeeping


@dataclass(frozen=True)
class UnstakeRequestView:
    """One unstake request of the insurance fund as ``unstakeRequest(id)`` returns it: `open` is
    False once it was claimed or lapsed (the contract zeroes it)."""

    request_id: int
    open: bool
    ready_at: int
    claim_window: int

    @property
    def claim_ends_at(self) -> int:
        return self.ready_at + self.claim_window


def lapsed_requests(
    requests: Iterable[UnstakeRequestView], now: int, busy: Iterable[int], limit: int
) -> list[int]:
    """The open requests whose claim window has ended by `now` (the contract's ``lapse`` accepts
    them from ``readyAt + claimWindow`` on), oldest first, leaving out those with a lapse in
    flight, at most `limit`."""
    taken = set(busy)
    due = sorted(
        r.request_id
        for r in requests
        if r.open and now >= r.claim_ends_at and r.request_id not in taken
    )
    return due[: max(0, limit)]


# ---------------------------------------------------------------------------- liveness


def block_interval(
    previous: float | None, last: tuple[int, int] | None, head: tuple[int, int]
) -> float | None:
    """The block interval learnt from heads (number, timestamp): an average that gives each new
    step a fifth of the weight; unchanged for a head that is not newer, or older in time."""
    if last is None or head[0] <= last[0] or head[1] < last[1]:
        return previous
    step = (head[1] - last[1]) / (head[0] - last[0])
    return step if previous is None else 0.8 * previous + 0.2 * step


def passes_late(
    since_pass: float, interval: float | None, behind: int, limit: int, node_away: bool
) -> bool:
    """No pass completed for `limit` block intervals (at least a second each) while blocks came
    (`behind` > 0) or the node was away; or the head is `limit` blocks past the last pass."""
    late = interval is not None and (
        since_pass > limit * max(interval, 1.0) and (behind > 0 or node_away)
    )
    return late or behind >= limit
