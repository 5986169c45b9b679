"""bulwark.core.riskmath: exact identities against rational arithmetic, rounding always against the holder,
and agreement with the contracts' own views on a live book."""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor

import pytest
from helpers import BTC, ETH, trade_wad, view, wad
from hypothesis import given, settings
from hypothesis import strategies as st

from bulwark.core import riskmath as rm
from bulwark.devnet.world import World

WAD = rm.WAD
signed = st.integers(min_value=-(10**30), max_value=10**30)
unsigned = st.integers(min_value=0, max_value=10**30)
positive = st.integers(min_value=1, max_value=10**30)
prices = st.integers(min_value=10**12, max_value=10**24)
sizes = st.integers(min_value=1, max_value=10**24).flatmap(lambda s: st.sampled_from([s, -s]))


@settings(max_examples=300, deadline=None)
@given(signed, unsigned, positive)
def test_signed_mul_div_rounds_toward_its_name(x: int, y: int, d: int) -> None:
    exact = Fraction(x * y, d)
    assert rm.mul_div_floor(x, y, d) == floor(exact)
    assert rm.mul_div_ceil(x, y, d) == ceil(exact)
    assert rm.mul_wad_floor_signed(x, -y) == floor(Fraction(-x * y, WAD))


@settings(max_examples=300, deadline=None)
@given(unsigned, unsigned, positive)
def test_unsigned_mul_div_down_and_up(x: int, y: int, d: int) -> None:
    exact = Fraction(x * y, d)
    assert rm.mul_div_down(x, y, d) == floor(exact)
    assert rm.mul_div_up(x, y, d) == ceil(exact)
    assert rm.mul_div_up(x, y, d) - rm.mul_div_down(x, y, d) == (0 if exact.denominator == 1 else 1)


def test_overflow_and_zero_division_are_refused() -> None:
    with pytest.raises(OverflowError):
        rm.mul_div_down(2**255, 4, 1)
    with pytest.raises(OverflowError):
        rm.mul_div_floor(2**254, 4, 1)
    with pytest.raises(ZeroDivisionError):
        rm.mul_div_up(1, 1, 0)
    with pytest.raises(OverflowError):
        rm.mul_div_down(-1, 1, 1)


@settings(max_examples=300, deadline=None)
@given(sizes, prices, prices, st.integers(min_value=1, max_value=WAD))
def test_fill_rounds_against_the_holder(size: int, entry: int, exit_: int, fraction: int) -> None:
    opened = rm.fill(0, 0, size, entry)
    assert opened.realized == 0
    assert opened.open_notional_after >= Fraction(size * entry, WAD)  # entry rounds up
    assert rm.unrealized_pnl(size, opened.open_notional_after, entry) <= 0
    close = -(size * fraction // WAD) or -size
    closed = rm.fill(size, opened.open_notional_after, close, exit_)
    exact = Fraction(-close * exit_, WAD) - Fraction(
        opened.open_notional_after * abs(close), abs(size)
    )
    assert exact - 2 <= closed.realized <= exact
    remaining = size + close
    if remaining == 0:
        assert closed.open_notional_after == 0
    # realised plus what remains never beats closing everything at once
    whole = rm.fill(size, opened.open_notional_after, -size, exit_).realized
    rest = rm.unrealized_pnl(remaining, closed.open_notional_after, exit_)
    assert closed.realized + rest <= whole


@settings(max_examples=200, deadline=None)
@given(sizes, prices, prices)
def test_flip_realises_the_whole_position_and_opens_the_rest(
    size: int, entry: int, price: int
) -> None:
    on = rm.entry_notional(size, entry)
    f = rm.fill(size, on, -2 * size, price)
    assert f.realized == rm.mul_wad_floor(size, price) - on == rm.unrealized_pnl(size, on, price)
    assert f.open_notional_after == rm.entry_notional(-size, price)


@settings(max_examples=300, deadline=None)
@given(unsigned, signed, st.integers(0, WAD), unsigned, unsigned)
def test_split_bounds(penalty: int, equity: int, share: int, a: int, b: int) -> None:
    floor_, ceiling = min(a, b), max(a, b)
    s = rm.split(penalty, equity, share, floor_, ceiling)
    assert s.penalty == min(penalty, max(equity, 0))
    # the floor applies up to the equity left: the fund never pays a keeper
    assert min(floor_, max(equity, 0)) <= s.reward <= min(ceiling, max(equity, 0))
    assert s.charge == max(s.penalty, s.reward) == s.reward + s.padding
    assert s.charge <= max(equity, 0)
    assert s.padding >= 0


@settings(max_examples=200, deadline=None)
@given(
    signed, st.integers(10**15, 10**36), st.integers(0, WAD // 10), st.integers(0, 10**7), prices
)
def test_funding_rate_is_clamped_and_index_follows_its_sign(
    skew: int, scale: int, max_rate: int, elapsed: int, price: int
) -> None:
    rate = rm.rate_per_day(skew, scale, max_rate)
    assert -max_rate <= rate <= max_rate
    assert rate == max(-max_rate, min(max_rate, floor(Fraction(skew * max_rate, scale))))
    delta = rm.index_delta(rate, elapsed, price)
    assert delta == floor(Fraction(rate * elapsed * price, rm.DAY * WAD))
    assert (delta >= 0) == (rate >= 0) or delta == 0 or (rate < 0 and delta < 0)


def test_adl_score_is_pnl_fraction_times_leverage() -> None:
    # long 2 at 3,000 now 3,300 on 1,000 of equity: 10% x 6.6 = 0.66
    on = 6_000 * WAD
    pnl = rm.unrealized_pnl(2 * WAD, on, 3_300 * WAD)
    assert rm.adl_score(pnl, on, rm.notional(2 * WAD, 3_300 * WAD), 1_000 * WAD) == 66 * WAD // 100
    assert rm.adl_score(-1, on, 1, 1) == 0
    assert rm.adl_score(1, on, 1, 0) == 0
    assert rm.adl_score(1, 0, 1, 1) == 0
    assert rm.rank_adl({"0xb": 5, "0xa": 5, "0xc": 9, "0xd": 0}) == ["0xc", "0xa", "0xb"]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(10**15, 10**24),
    st.integers(10**18, 10**23),
    st.integers(1, 10**6),
    st.integers(1, WAD),
    st.booleans(),
)
def test_adl_close_size_covers_the_debt(
    size: int, entry: int, gain_ppm: int, debt_frac: int, short: bool
) -> None:
    """Closing `adl_close_size` of a profitable position realises at least the debt (so ADL stops
    there) for any gain of at least one part per million."""
    price = entry - entry * gain_ppm // 10**6 if short else entry + entry * gain_ppm // 10**6
    signed_size = -size if short else size
    on = rm.entry_notional(signed_size, entry)
    pnl = rm.unrealized_pnl(signed_size, on, price)
    if pnl <= 0:
        return
    debt = max(1, pnl * debt_frac // WAD)
    close = rm.adl_close_size(signed_size, pnl, debt)
    assert abs(close) <= size and (close > 0) == (signed_size > 0)
    realized = rm.fill(signed_size, on, -close, price).realized
    assert realized >= debt or close == signed_size


def test_health_and_scores_match_the_contract_views(protocol: World) -> None:
    p = protocol
    p.seed_pool(1_000_000)
    book = [
        (0, 2_000, ETH, 3.3),
        (1, 5_000, ETH, -1.7),
        (2, 3_000, BTC, 0.21),
        (3, 4_000, ETH, -4.1),
    ]
    for index, usdc, market, size in book:
        p.fund_trader(p.traders[index], usdc)
        trade_wad(p, p.traders[index], market, wad(size))
    trade_wad(p, p.traders[2], ETH, wad(1.1))
    p.warp(1_800)
    p.set_price("ETH-USD", 2_951.17)
    p.set_price("BTC-USD", 61_234.5)
    who = [p.traders[i].address for i in range(4)]
    block = p.bw.w3.eth.block_number
    healths = p.bw.ch.functions.healthsOf(who).call(block_identifier=block)
    scores = p.bw.ch.functions.adlScoresOf(ETH, who).call(block_identifier=block)
    for address, h, score in zip(who, healths, scores, strict=True):
        v = view(p, address, block=block)
        expected = v.health()
        assert (h[0], h[1], h[2], h[3]) == (
            expected.equity,
            expected.imr,
            expected.mmr,
            expected.liquidatable,
        )
        assert score == v.adl_score(ETH)
    assert sum(1 for s in scores if s > 0) == 2  # the two ETH shorts gained
