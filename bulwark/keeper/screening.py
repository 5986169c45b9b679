"""Which accounts to act on: a vectorised screen, on-chain confirmation, ADL ranking, sharding.

The screen computes every tracked account's equity and maintenance margin in one numpy pass over
float64 arrays the index keeps resident (floats are fine here: they only choose whom to ask about). Accounts with
``equity < (1 + buffer) x maintenance margin`` are confirmed with one ``healthsOf`` call per chunk,
and only what the chain confirms is acted on. ADL targets are ranked with the exact integer score of
:mod:`bulwark.core.riskmath`, the contract's own arithmetic, and confirmed with ``adlScoresOf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from eth_utils.crypto import keccak

from bulwark.chain.contracts import Bulwark
from bulwark.core import riskmath as rm
from bulwark.keeper.index import (
    AccountIndex,
    BlockRef,
    CallFailed,
    Calls,
    RpcFailure,
    ScreenArrays,
    rpc_batch,
)

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
    pool_margin: int = 0  # what the pool's margin can pay out now (the liquidation order reads it)

    @property
    def market_ids(self) -> list[int]:
        return sorted(self.configs)


def read_markets(bw: Bulwark, market_count: int, block: BlockRef) -> MarketSnapshot:
    """One JSON-RPC batch: per market price, funding index, config and both sides' bad debt; then
    risk parameters, total bad debt, its age, the insurance fund's assets and availability, and the
    pool's margin."""
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
        ch.request("marginOf", [bw.pool.address], n),
    ]
    r = rpc_batch(bw.w3, reqs)
    snap = MarketSnapshot(
        block, {}, {}, {}, rm.RiskParams.from_tuple(ch.decode("riskParams", r[-6]))
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
    snap.total_bad_debt = int(ch.decode("totalBadDebtWad", r[-5]))
    snap.bad_debt_since = int(ch.decode("badDebtSince", r[-4]))
    snap.fund_available = int(fund.decode("availableWad", r[-3]))
    snap.fund_assets = int(fund.decode("assetsWad", r[-2]))
    snap.pool_margin = int(ch.decode("marginOf", r[-1]))
    return snap


# ---------------------------------------------------------------------------- screening


@dataclass
class ScreenResult:
    """The screen of one tick over every row of the resident arrays: float equity and maintenance
    margin (quote units), which rows were screened (they hold a position and every market they hold
    has a fresh price), and the candidates to confirm on-chain."""

    arrays: ScreenArrays  # the rows screened (their addresses)
    screened: np.ndarray  # bool per row
    equity_all: np.ndarray  # per row (meaningful where screened)
    mmr_all: np.ndarray
    flagged: np.ndarray  # rows screened and close to or below maintenance
    skipped_stale: int = 0  # accounts holding a market whose price is stale

    @property
    def rows(self) -> np.ndarray:
        return np.flatnonzero(self.screened)

    @property
    def accounts(self) -> list[str]:
        """Every account screened, in row order (aligned with :attr:`equity` and :attr:`mmr`)."""
        return self.arrays.accounts_at(self.rows)

    @property
    def equity(self) -> np.ndarray:
        values: np.ndarray = self.equity_all[self.screened]
        return values

    @property
    def mmr(self) -> np.ndarray:
        values: np.ndarray = self.mmr_all[self.screened]
        return values

    @cached_property
    def candidates(self) -> list[str]:
        return self.arrays.accounts_at(self.flagged)


def screen(index: Any, snap: MarketSnapshot, buffer: float = 0.02) -> ScreenResult:
    """Vectorised health of every account with a position; candidates close to or below maintenance.

    Reads the index's resident float arrays (:class:`bulwark.keeper.index.ScreenArrays`, written when an
    account is re-read, not per tick). An object with only ``accounts`` (exact states) gets its
    arrays built here, which costs a Python loop over every position."""
    arrays = getattr(index, "arrays", None)
    if not isinstance(arrays, ScreenArrays):
        arrays = ScreenArrays.from_states(index.accounts)
    return screen_arrays(arrays, snap, buffer)


def screen_arrays(arrays: ScreenArrays, snap: MarketSnapshot, buffer: float) -> ScreenResult:
    """``equity = base + size @ (price - index)`` and ``mmr = |size| @ (price x mmRatio)`` for
    every row at once, then ``equity < (1 + buffer) x mmr``; no Python loop over accounts."""
    n, markets = arrays.count, range(arrays.markets)
    fresh = np.array([m in snap.prices for m in markets], dtype=bool)
    price = np.array([snap.prices.get(m, 0) for m in markets], dtype=float) / 1e18
    index_now = np.array([snap.indices.get(m, 0) for m in markets], dtype=float) / 1e18
    mm_ratio = np.array(
        [snap.configs[m].mm_ratio if m in snap.configs else 0 for m in markets], dtype=float
    )
    size = arrays.size[:n]
    screened = arrays.holds[:n]
    skipped = 0
    if not fresh.all():
        stale_held = (size[:, ~fresh] != 0).any(axis=1)
        skipped = int(np.count_nonzero(stale_held))
        screened = screened & ~stale_held
    equity = arrays.base[:n] + size @ (price - index_now)
    mmr = arrays.abs_size[:n] @ (price * mm_ratio / 1e18)
    flagged = np.flatnonzero(screened & (equity < mmr * (1.0 + buffer) + 1e-6))
    return ScreenResult(arrays, screened, equity, mmr, flagged, skipped)


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
