"""Exact integer reference of the clearing house's math, rounding bit for bit as the Solidity does.

Every function here mirrors one in contracts/libraries (FixedPointMath, PositionMath, FundingMath,
LiquidationMath, Ledger.health, LiquidationLogic sizing), so the keeper can rank ADL targets, size
liquidations and predict health exactly as the contracts will. All amounts are WAD integers: quote
amounts and prices in 18 decimals, sizes in signed 18-decimal base units, ratios in WAD (1e18 is
100%). Values that the Solidity would reject with an overflow raise :class:`OverflowError` here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WAD = 10**18
DAY = 86_400
INT256_MAX = 2**255 - 1
INT256_MIN = -(2**255)
UINT256_MAX = 2**256 - 1

# ---------------------------------------------------------------------------- FixedPointMath


def _uint(x: int) -> int:
    if not 0 <= x <= UINT256_MAX:
        raise OverflowError(f"{x} does not fit uint256")
    return x


def _int(x: int) -> int:
    if not INT256_MIN <= x <= INT256_MAX:
        raise OverflowError(f"{x} does not fit int256")
    return x


def mul_div_down(x: int, y: int, d: int) -> int:
    """OpenZeppelin Math.mulDiv(x, y, d): unsigned, rounded down."""
    if d == 0:
        raise ZeroDivisionError("mulDiv by zero")
    return _uint(_uint(x) * _uint(y) // d)


def mul_div_up(x: int, y: int, d: int) -> int:
    """Math.mulDiv(x, y, d, Rounding.Ceil): unsigned, rounded up."""
    if d == 0:
        raise ZeroDivisionError("mulDiv by zero")
    return _uint(-(-(_uint(x) * _uint(y)) // d))


def mul_wad_down(x: int, y: int) -> int:
    return mul_div_down(x, y, WAD)


def mul_wad_up(x: int, y: int) -> int:
    return mul_div_up(x, y, WAD)


def div_wad_down(x: int, y: int) -> int:
    return mul_div_down(x, WAD, y)


def div_wad_up(x: int, y: int) -> int:
    return mul_div_up(x, WAD, y)


def mul_div_floor(x: int, y: int, d: int) -> int:
    """FixedPointMath.mulDivFloor: signed x, unsigned y and d, toward negative infinity."""
    _uint(y)
    if d <= 0:
        raise ZeroDivisionError("mulDiv by zero")
    return _int((_int(x) * y) // d)


def mul_div_ceil(x: int, y: int, d: int) -> int:
    """FixedPointMath.mulDivCeil: signed x, unsigned y and d, toward positive infinity."""
    _uint(y)
    if d <= 0:
        raise ZeroDivisionError("mulDiv by zero")
    return _int(-((-_int(x) * y) // d))


def mul_wad_floor(x: int, y: int) -> int:
    return mul_div_floor(x, y, WAD)


def mul_wad_ceil(x: int, y: int) -> int:
    return mul_div_ceil(x, y, WAD)


def mul_wad_floor_signed(x: int, y: int) -> int:
    """FixedPointMath.mulWadFloorSigned: signed x and y, toward negative infinity."""
    return mul_div_floor(x, y, WAD) if y >= 0 else mul_div_floor(-x, -y, WAD)


def positive_part(x: int) -> int:
    return max(0, x)


# ---------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Position:
    """A trader's position in one market (IClearingHouse.Position)."""

    size: int = 0
    open_notional: int = 0
    funding_basis: int = 0

    @classmethod
    def from_tuple(cls, t: Sequence[int]) -> Position:
        return cls(int(t[0]), int(t[1]), int(t[2]))


@dataclass(frozen=True)
class MarketConfig:
    """Per-market risk parameters (IClearingHouse.MarketConfig), all WAD."""

    im_ratio: int
    mm_ratio: int
    taker_fee: int
    penalty_ratio: int
    partial_fraction: int
    max_funding_rate_per_day: int
    skew_scale: int
    max_open_interest: int
    min_partial_notional: int
    min_position_notional: int = 0

    @classmethod
    def from_tuple(cls, t: Sequence[int]) -> MarketConfig:
        return cls(*(int(v) for v in t[:10]))


@dataclass(frozen=True)
class MarketState:
    """Running sums of a market (IClearingHouse.MarketState)."""

    cum_funding: int = 0
    sum_size: int = 0
    sum_open_notional: int = 0
    sum_funding_basis: int = 0
    long_open_interest: int = 0
    short_open_interest: int = 0
    last_funding_at: int = 0

    @classmethod
    def from_tuple(cls, t: Sequence[int]) -> MarketState:
        return cls(*(int(v) for v in t[:7]))


@dataclass(frozen=True)
class RiskParams:
    """Protocol-wide risk parameters (IClearingHouse.RiskParams)."""

    fund_fee_share: int
    pool_exposure_multiple: int
    keeper_share: int
    socialize_grace_period: int
    reward_floor: int
    reward_ceiling: int

    @classmethod
    def from_tuple(cls, t: Sequence[int]) -> RiskParams:
        return cls(*(int(v) for v in t[:6]))


@dataclass(frozen=True)
class Fill:
    realized: int
    open_notional_after: int


@dataclass(frozen=True)
class Split:
    """LiquidationMath.Split."""

    penalty: int
    reward: int
    padding: int
    charge: int


@dataclass(frozen=True)
class Health:
    equity: int
    imr: int
    mmr: int

    @property
    def liquidatable(self) -> bool:
        return self.equity < self.mmr


# ---------------------------------------------------------------------------- PositionMath


def unrealized_pnl(size: int, open_notional: int, price: int) -> int:
    """size x price (floor) - open notional."""
    return mul_wad_floor(size, price) - open_notional


def notional(size: int, price: int) -> int:
    """|size| x price, rounded up."""
    return mul_wad_up(abs(size), price)


def entry_notional(size_delta: int, price: int) -> int:
    """Open notional a fill adds, toward +infinity."""
    return mul_wad_ceil(size_delta, price)


def funding_basis(size: int, index: int) -> int:
    """size x cumulative funding index, toward -infinity."""
    return mul_wad_floor_signed(size, index)


def closed_open_notional(open_notional: int, close_size: int, size: int) -> int:
    """Share of the open notional removed by closing `close_size` of `size`, toward +infinity."""
    return mul_div_ceil(open_notional, abs(close_size), abs(size))


def fill(size: int, open_notional: int, delta: int, price: int) -> Fill:
    """PositionMath.fill: realised PnL of the closing part and the open notional after the fill."""
    closed = 0
    if size != 0 and (size > 0) != (delta > 0):
        closed = -size if abs(delta) >= abs(size) else delta
    after = open_notional
    realized = 0
    if closed != 0:
        if closed == -size:
            removed = open_notional
        else:
            removed = closed_open_notional(open_notional, closed, size)
        realized = mul_wad_floor(-closed, price) - removed
        after -= removed
    opened = delta - closed
    if opened != 0:
        after += entry_notional(opened, price)
    return Fill(realized, after)


def adl_score(pnl: int, open_notional: int, notional_: int, equity: int) -> int:
    """PositionMath.adlScore: (uPnL / |open notional|) x (notional / equity), rounded down."""
    if pnl <= 0 or equity <= 0 or open_notional == 0:
        return 0
    pnl_fraction = div_wad_down(pnl, abs(open_notional))
    leverage = div_wad_down(notional_, equity)
    return mul_wad_down(pnl_fraction, leverage)


# ---------------------------------------------------------------------------- FundingMath


def rate_per_day(skew: int, skew_scale: int, max_rate_per_day: int) -> int:
    """Funding rate per day: maxRate x skew / skewScale (floor), clamped to [-maxRate, maxRate]."""
    rate = mul_div_floor(skew, max_rate_per_day, skew_scale)
    return max(-max_rate_per_day, min(max_rate_per_day, rate))


def index_delta(rate: int, elapsed: int, price: int) -> int:
    """Index growth: rate x (elapsed x price) / (1 day x WAD), toward -infinity."""
    return mul_div_floor(rate, _uint(elapsed * price), DAY * WAD)


def funding_index_now(state: MarketState, config: MarketConfig, price: int, now: int) -> int:
    """Ledger.fundingIndexNow: the cumulative index including what accrued since the last update."""
    rate = rate_per_day(state.sum_size, config.skew_scale, config.max_funding_rate_per_day)
    elapsed = max(now - state.last_funding_at, 0)  # a time before the last accrual accrues nothing
    return state.cum_funding + index_delta(rate, elapsed, price)


def pending_funding(position: Position, index: int) -> int:
    """Funding the position owes since its last settlement (negative: it is owed)."""
    return funding_basis(position.size, index) - position.funding_basis


# ---------------------------------------------------------------------------- LiquidationMath


def split(
    uncapped_penalty: int, equity: int, keeper_share: int, reward_floor: int, reward_ceiling: int
) -> Split:
    """LiquidationMath.split: penalty capped at equity, reward clamped and then capped at the equity
    left (the fund never pays a keeper), padding the rest."""
    penalty = min(uncapped_penalty, positive_part(equity))
    reward = min(max(mul_wad_down(penalty, keeper_share), reward_floor), reward_ceiling)
    reward = min(reward, positive_part(equity))
    padding = penalty - reward if penalty > reward else 0
    return Split(penalty, reward, padding, reward + padding)


# ---------------------------------------------------------------------------- account level


def position_value(position: Position, price: int, index: int) -> tuple[int, int]:
    """Ledger.positionValue: (uPnL - pending funding, notional) at `price` and funding `index`."""
    pending = pending_funding(position, index)
    value = unrealized_pnl(position.size, position.open_notional, price) - pending
    return value, notional(position.size, price)


def close_payable(position: Position, price: int, index: int, pool_margin: int) -> bool:
    """LiquidationLogic._payable: whether the pool's margin pays the whole position's close, its
    value (a loss, or a profit of at most `pool_margin`)."""
    return position_value(position, price, index)[0] <= pool_margin


def liquidation_rank(
    position: Position, price: int, index: int, pool_margin: int
) -> tuple[bool, int]:
    """LiquidationLogic._requireFirst's order, largest first: the positions whose close the pool's
    margin pays before those it cannot, then the larger notional."""
    return close_payable(position, price, index, pool_margin), notional(position.size, price)


def health(
    margin: int,
    positions: Mapping[int, Position],
    prices: Mapping[int, int],
    indices: Mapping[int, int],
    configs: Mapping[int, MarketConfig] | Sequence[MarketConfig],
) -> Health:
    """Ledger.health: equity, initial and maintenance margin of an account.

    `positions` maps market id to position (flat ones are skipped); `indices` holds each market's
    current cumulative funding index (see :func:`funding_index_now`).
    """
    equity = margin
    imr = mmr = 0
    for m in sorted(positions):
        p = positions[m]
        if p.size == 0:
            continue
        value, n = position_value(p, prices[m], indices[m])
        equity += value
        imr += mul_wad_up(n, configs[m].im_ratio)
        mmr += mul_wad_up(n, configs[m].mm_ratio)
    return Health(equity, imr, mmr)


def account_adl_score(
    market_id: int,
    margin: int,
    positions: Mapping[int, Position],
    prices: Mapping[int, int],
    indices: Mapping[int, int],
    configs: Mapping[int, MarketConfig] | Sequence[MarketConfig],
) -> int:
    """The score `adlScoresOf` and `autoDeleverage` compute for an account in `market_id`.

    The position's uPnL excludes funding, the equity includes it (after settlement, which does not
    change equity). Zero when the account is flat there, loses, or has no positive equity.
    """
    p = positions.get(market_id)
    if p is None or p.size == 0:
        return 0
    price = prices[market_id]
    equity = health(margin, positions, prices, indices, configs).equity
    pnl = unrealized_pnl(p.size, p.open_notional, price)
    return adl_score(pnl, p.open_notional, notional(p.size, price), equity)


def pool_equity(
    pool_margin: int,
    states: Sequence[MarketState],
    prices: Mapping[int, int],
    indices: Mapping[int, int],
) -> int:
    """Ledger.poolEquity: pool margin minus the traders' total uPnL plus the funding they owe."""
    equity = pool_margin
    for m, st in enumerate(states):
        if st.sum_size == 0 and st.sum_open_notional == 0 and st.sum_funding_basis == 0:
            continue
        traders_pnl = unrealized_pnl(st.sum_size, st.sum_open_notional, prices[m])
        traders_owe = funding_basis(st.sum_size, indices[m]) - st.sum_funding_basis
        equity += traders_owe - traders_pnl
    return equity


# ---------------------------------------------------------------------------- liquidation sizing


def is_bankrupt(equity: int, risk: RiskParams) -> bool:
    """A liquidatable account below the keeper's reward floor is closed everywhere."""
    return equity < risk.reward_floor


def liquidation_split(
    closed_notional: int, config: MarketConfig, equity: int, risk: RiskParams
) -> Split:
    """LiquidationLogic._split: the penalty on a closed notional and how it is shared."""
    return split(
        mul_wad_up(closed_notional, config.penalty_ratio),
        equity,
        risk.keeper_share,
        risk.reward_floor,
        risk.reward_ceiling,
    )


def liquidation_size(
    size: int,
    price: int,
    config: MarketConfig,
    equity: int,
    mmr: int,
    risk: RiskParams,
    payable: bool = True,
) -> int:
    """LiquidationLogic._liquidationSize: the signed size a (non-bankrupt) liquidation closes.
    `payable` is :func:`close_payable` of the position: one the pool's margin cannot pay closes in
    full."""
    if 2 * equity < mmr or notional(size, price) < config.min_partial_notional:
        return size
    part = mul_wad_down(abs(size), config.partial_fraction)
    if part == 0:
        return size
    if size < 0:
        part = -part
    part_notional = notional(part, price)
    charge = liquidation_split(part_notional, config, equity, risk).charge
    return part if mul_wad_down(part_notional, config.mm_ratio) > charge and payable else size


def adl_close_size(size: int, pnl: int, debt: int) -> int:
    """LiquidationLogic._closeSizeFor: how much of a target ADL closes for `debt` left.

    Closing c of size S realises more than c x pnl / S - 2, so ceil(S x (debt + 1) / pnl) always
    realises at least the debt."""
    if pnl <= debt:
        return size
    part = mul_div_up(abs(size), debt + 1, pnl)
    if part >= abs(size):
        return size
    return part if size > 0 else -part


def min_position_notional_bound(reward_floor: int, mm_ratio: int) -> int:
    """ParamBounds.checkMinPosition: the least minimum position notional a market may have,
    ceil(rewardFloor x WAD / mmRatio), so that its maintenance margin pays the keeper's floor."""
    return mul_div_up(reward_floor, WAD, mm_ratio)


def position_size_allowed(new_size: int, price: int, config: MarketConfig) -> bool:
    """TradeLogic: a trade must leave a position flat or at least the market's minimum notional."""
    return new_size == 0 or notional(new_size, price) >= config.min_position_notional


def pool_exposure(state: MarketState, price: int) -> int:
    """TradeLogic.exposureOf: the larger side's open interest at `price`, rounded up."""
    side = max(state.long_open_interest, state.short_open_interest)
    return mul_wad_up(side, price) if side else 0


def adl_debt(debt: int, fund_available: int) -> int:
    """The part of a market side's debt ADL and the close haircut take: what the fund cannot pay now."""
    return debt - fund_available if debt > fund_available else 0


def rank_adl(scores: Mapping[str, int]) -> list[str]:
    """Eligible accounts (score > 0) in the order autoDeleverage accepts: non-increasing score,
    ties broken by address so the order is deterministic."""
    eligible = [(s, a) for a, s in scores.items() if s > 0]
    eligible.sort(key=lambda t: (-t[0], t[1].lower()))
    return [a for _, a in eligible]
