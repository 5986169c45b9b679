"""Which accounts to act on: a vectorised screen, on-chain confirmation, ADL ranking, sharding.

The screen computes every tracked account's equity and maintenance margin in one numpy pass over
float64 copies of the index (floats are fine here: they only choose whom to ask about). Accounts with
``equity < (1 + buffer) x maintenance margin`` are confirmed with one ``healthsOf`` call per chunk,
and only what the chain confirms is acted on. ADL targets are ranked with the exact integer score of
:mod:`keeper.riskmath`, the contract's own arithmetic, and confirmed with ``adlScoresOf``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_utils.crypto import keccak

from keeper import riskmath as rm
from keeper.chain import Bulwark
from keeper.index import AccountIndex, BlockRef, CallFailed, Calls, RpcFailure, rpc_batch

LONG, SHORT = 0, 1  # IClearingHouse.Side


@dataclass
class MarketSnapshot:
    """Everything about the markets and the bad debt that one pass needs, read at one block."""

    block: BlockRef
    prices: dict[
        int, int
    ]  # market id -> price (WAD); markets with a stale or invalid price are absent
    indices: dict[int, int]  # market id -> current cumulative funding index
    configs: dict[int, rm.MarketConfig]
    risk: rm.RiskParams
    stale: dict[int, str] = field(default_factory=dict)  # market id -> decoded oracle error
    total_bad_debt: int = 0
    bad_debt: dict[tuple[int, int], int] = field(default_factory=dict)  # (market, side) -> amount
    bad_debt_since: int = 0
    fund_available: int = 0
    fund_assets: int = 0

    @property
    def market_ids(self) -> list[int]:
        return sorted(self.configs)


def read_markets(bw: Bulwark, market_count: int, block: BlockRef) -> MarketSnapshot:
    """One JSON-RPC batch: per market price, funding index, config and both sides' bad debt; then
    risk parameters, total bad debt, its age and the insurance fund's assets and availability."""
    ch, oracle, fund = Calls(bw.ch), Calls(bw.oracle), Calls(bw.fund)
    n = block.number
    reqs: list[tuple[str, list[Any]]] = []
    for m in range(market_count):
        reqs += [
            oracle.request("priceWad", [m], n),
            ch.request("currentFundingIndexWad", [m], n),
            ch.request("marketConfig", [m], n),
            ch.request("badDebtOf", [m, LONG], n),
            ch.request("badDebtOf", [m, SHORT], n),
        ]
    reqs += [
        ch.request("riskParams", [], n),
        ch.request("totalBadDebtWad", [], n),
        ch.request("badDebtSince", [], n),
        fund.request("availableWad", [], n),
        fund.request("assetsWad", [], n),
    ]
    r = rpc_batch(bw.w3, reqs)
    snap = MarketSnapshot(
        block, {}, {}, {}, rm.RiskParams.from_tuple(ch.decode("riskParams", r[-5]))
    )
    for m in range(market_count):
        price, index, config, debt_long, debt_short = r[5 * m : 5 * m + 5]
        snap.configs[m] = rm.MarketConfig.from_tuple(ch.decode("marketConfig", config))
        if isinstance(price, RpcFailure) or isinstance(index, RpcFailure):
            failure = price if isinstance(price, RpcFailure) else index
            assert isinstance(failure, RpcFailure)
            snap.stale[m] = str(bw.errors.decode(failure.data)) if failure.data else failure.message
        else:
            snap.prices[m] = int(oracle.decode("priceWad", price))
            snap.indices[m] = int(ch.decode("currentFundingIndexWad", index))
        for side, raw in ((LONG, debt_long), (SHORT, debt_short)):
            amount = int(ch.decode("badDebtOf", raw))
            if amount:
                snap.bad_debt[(m, side)] = amount
    snap.total_bad_debt = int(ch.decode("totalBadDebtWad", r[-4]))
    snap.bad_debt_since = int(ch.decode("badDebtSince", r[-3]))
    snap.fund_available = int(fund.decode("availableWad", r[-2]))
    snap.fund_assets = int(fund.decode("assetsWad", r[-1]))
    return snap


# ---------------------------------------------------------------------------- screening


@dataclass
class ScreenResult:
    accounts: list[str]  # every account with a position that could be screened
    equity: np.ndarray  # float, quote units
    mmr: np.ndarray
    candidates: list[str]
    skipped_stale: int = 0  # accounts holding a market whose price is stale


def screen(index: AccountIndex, snap: MarketSnapshot, buffer: float = 0.02) -> ScreenResult:
    """Vectorised health of every account with a position; candidates close to or below maintenance.

    Positions are laid out flat (one entry per account and market held), valued in one pass, and
    summed per account with ``bincount``."""
    column = {m: k for k, m in enumerate(snap.market_ids)}
    fresh = set(snap.prices)
    accounts: list[str] = []
    margins: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    sizes: list[int] = []
    opens: list[int] = []
    bases: list[int] = []
    stale = 0
    for address, state in index.accounts.items():
        held = state.positions
        if not held:
            continue
        if not fresh.issuperset(held):
            stale += 1
            continue
        row = len(accounts)
        accounts.append(address)
        margins.append(state.margin)
        for m, p in held.items():
            rows.append(row)
            cols.append(column[m])
            sizes.append(p.size)
            opens.append(p.open_notional)
            bases.append(p.funding_basis)
    if not accounts:
        empty = np.zeros(0)
        return ScreenResult([], empty, empty, [], stale)
    markets = snap.market_ids
    price = np.array([snap.prices.get(m, 0) for m in markets], dtype=float)[cols] / 1e18
    index_now = np.array([snap.indices.get(m, 0) for m in markets], dtype=float)[cols] / 1e18
    mm_ratio = np.array([snap.configs[m].mm_ratio for m in markets], dtype=float)[cols] / 1e18
    size = np.array(sizes, dtype=float) / 1e18
    upnl = size * price - np.array(opens, dtype=float) / 1e18
    pending = size * index_now - np.array(bases, dtype=float) / 1e18
    n = len(accounts)
    equity = np.array(margins, dtype=float) / 1e18 + np.bincount(rows, upnl - pending, minlength=n)
    mmr = np.bincount(rows, np.abs(size) * price * mm_ratio, minlength=n)
    flagged = np.nonzero(equity < mmr * (1.0 + buffer) + 1e-6)[0]
    return ScreenResult(accounts, equity, mmr, [accounts[i] for i in flagged], stale)


@dataclass(frozen=True)
class ConfirmedHealth:
    equity: int
    imr: int
    mmr: int
    liquidatable: bool


def confirm(
    bw: Bulwark, accounts: Sequence[str], block: int | str = "latest", chunk: int = 500
) -> dict[str, ConfirmedHealth]:
    """``healthsOf`` over the candidates (one call per `chunk` accounts, one batch request)."""
    if not accounts:
        return {}
    calls = Calls(bw.ch)
    parts = [list(accounts[i : i + chunk]) for i in range(0, len(accounts), chunk)]
    replies = rpc_batch(bw.w3, [calls.request("healthsOf", [p], block) for p in parts])
    out: dict[str, ConfirmedHealth] = {}
    for part, reply in zip(parts, replies, strict=True):
        if isinstance(reply, RpcFailure):
            raise CallFailed(reply)
        for address, h in zip(part, calls.decode("healthsOf", reply), strict=True):
            out[address] = ConfirmedHealth(int(h[0]), int(h[1]), int(h[2]), bool(h[3]))
    return out


def liquidation_market(
    state_positions: Mapping[int, rm.Position], snap: MarketSnapshot, equity: int
) -> int | None:
    """The market to liquidate first: any for a bankrupt account (all close), else the largest notional."""
    open_markets = sorted(m for m in state_positions if m in snap.prices)
    if not open_markets:
        return None
    if rm.is_bankrupt(equity, snap.risk):
        return open_markets[0]
    return max(
        open_markets, key=lambda m: (rm.notional(state_positions[m].size, snap.prices[m]), -m)
    )


# ---------------------------------------------------------------------------- sharding


def shard_of(address: str, count: int) -> int:
    """The keeper (0..count-1) responsible for an account: keccak(address) mod count."""
    return int.from_bytes(keccak(hexstr=address), "big") % count


# ---------------------------------------------------------------------------- ADL


def adl_side_holders(debt_side: int) -> int:
    """Sign of the positions that absorb a side's bad debt: longs (+1) absorb the shorts' debt."""
    return 1 if debt_side == SHORT else -1


def adl_scores(
    index: AccountIndex, snap: MarketSnapshot, market: int, debt_side: int
) -> dict[str, int]:
    """Exact contract scores of every account on the side opposite `debt_side` in `market`.

    Accounts that also hold a market whose price is stale are left out: the contract's health of
    such an account reverts, so neither ``adlScoresOf`` nor ``autoDeleverage`` could take them."""
    sign = adl_side_holders(debt_side)
    fresh = set(snap.prices)
    scores: dict[str, int] = {}
    for address, state in index.accounts.items():
        p = state.positions.get(market)
        if p is None or p.size * sign <= 0 or not fresh.issuperset(state.positions):
            continue
        scores[address] = rm.account_adl_score(
            market, state.margin, state.positions, snap.prices, snap.indices, snap.configs
        )
    return scores


def confirm_adl_scores(
    bw: Bulwark, market: int, accounts: Sequence[str], block: int | str
) -> dict[str, int]:
    """``adlScoresOf`` for the candidates, in one call."""
    if not accounts:
        return {}
    values = bw.call(bw.ch.functions.adlScoresOf(market, list(accounts)), block=block)
    return {a: int(s) for a, s in zip(accounts, values, strict=True)}
