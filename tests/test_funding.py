"""Skew-based funding: the index accrues exactly as riskmath says, settlements move margin between
traders and the pool and nowhere else, longs pay when traders are net long, the rate is clamped."""

from __future__ import annotations

from helpers import (
    ETH,
    configs,
    margin,
    one_event,
    position,
    set_market,
    trade_wad,
    wad,
)
from support import assert_conserved

from bulwark.core import riskmath as rm
from bulwark.devnet.world import World

WARP = 3_000  # below the feeds' 3,600 s heartbeat


def _state(p: World, block: int | str = "latest") -> rm.MarketState:
    return rm.MarketState.from_tuple(
        p.bw.ch.functions.marketState(ETH).call(block_identifier=block)
    )


def _index_at(p: World, block: int) -> int:
    """The index the transaction in `block` accrued: the state before it, at its timestamp."""
    now = p.bw.w3.eth.get_block(block)["timestamp"]
    cfg = configs(p, block - 1)[ETH]
    return rm.funding_index_now(_state(p, block - 1), cfg, p.price_wad("ETH-USD"), now)


def test_index_accrues_exactly_and_settles_into_margin(protocol: World) -> None:
    p = protocol
    t = p.traders[0]
    p.seed_pool(1_000_000)
    p.fund_trader(t, 50_000)
    trade_wad(p, t, ETH, wad(100))
    p.warp(WARP)
    latest = p.bw.w3.eth.get_block("latest")
    view_index = p.bw.ch.functions.currentFundingIndexWad(ETH).call(
        block_identifier=latest["number"]
    )
    cfg, price = configs(p)[ETH], p.price_wad("ETH-USD")
    assert view_index == rm.funding_index_now(_state(p), cfg, price, latest["timestamp"])
    rate = rm.rate_per_day(wad(100), cfg.skew_scale, cfg.max_funding_rate_per_day)
    assert rate == 3 * 10**13  # 0.3% a day x 100 / 10,000

    pos = position(p, t.address)
    pool = p.bw.ch.functions.pool().call()
    m0, pool0 = margin(p, t.address), margin(p, pool)
    receipt = trade_wad(p, t, ETH, -wad(40))
    index = _index_at(p, receipt["blockNumber"])
    assert _state(p).cum_funding == index
    ev = one_event(receipt, p.bw.ch, "PositionChanged")
    owed = rm.pending_funding(pos, index)
    assert ev["fundingPaidWad"] == owed > 0  # the long pays
    assert position(p, t.address).funding_basis == rm.funding_basis(wad(60), index)
    fee, realized = ev["feeWad"], ev["realizedPnlWad"]
    to_fund = rm.mul_wad_down(fee, int(p.bw.ch.functions.riskParams().call()[0]))
    assert margin(p, t.address) == m0 - owed + realized - fee
    assert (
        margin(p, pool) == pool0 + owed - realized + fee - to_fund
    )  # the pool received the funding
    assert_conserved(p)


def test_longs_pay_shorts_and_the_pool_takes_the_net(protocol: World) -> None:
    p = protocol
    long_, short = p.traders[0], p.traders[1]
    p.seed_pool(1_000_000)
    p.fund_trader(long_, 50_000)
    p.fund_trader(short, 50_000)
    trade_wad(p, long_, ETH, wad(100))
    trade_wad(p, short, ETH, -wad(40))  # traders net long 60: the pool is short 60
    p.warp(WARP)
    paid = {}
    for who in (long_, short):
        pos = position(p, who.address)
        receipt = trade_wad(p, who, ETH, wad(1) if pos.size > 0 else -wad(1))
        ev = one_event(receipt, p.bw.ch, "PositionChanged")
        assert ev["fundingPaidWad"] == rm.pending_funding(pos, _index_at(p, receipt["blockNumber"]))
        paid[who.address] = ev["fundingPaidWad"]
    assert paid[long_.address] > 0 > paid[short.address]
    # per unit the short receives what the long pays; the pool, short the other 60, receives the rest
    assert abs(paid[long_.address] * 40 + paid[short.address] * 100) <= paid[long_.address]
    st = _state(p)
    pool_pending = -(rm.funding_basis(st.sum_size, st.cum_funding) - st.sum_funding_basis)
    traders_pending = sum(
        rm.pending_funding(position(p, w.address), st.cum_funding) for w in (long_, short)
    )
    assert pool_pending + traders_pending in (-1, 0, 1)  # zero-sum up to one unit of rounding
    assert_conserved(p)


def test_rate_is_clamped_at_the_maximum(protocol: World) -> None:
    p = protocol
    t = p.traders[0]
    set_market(p, ETH, skew_scale=10**15)  # 0.001 ETH of skew already saturates
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    opened = trade_wad(p, t, ETH, -wad(1))
    p.warp(WARP)
    pos = position(p, t.address)
    receipt = trade_wad(p, t, ETH, -wad(1))
    cfg = configs(p)[ETH]
    before = _state(p, opened["blockNumber"]).cum_funding
    elapsed = (
        p.bw.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
        - _state(p, receipt["blockNumber"] - 1).last_funding_at
    )
    rate = rm.rate_per_day(-wad(1), cfg.skew_scale, cfg.max_funding_rate_per_day)
    assert rate == -cfg.max_funding_rate_per_day
    assert _state(p).cum_funding == before + rm.index_delta(rate, elapsed, p.price_wad("ETH-USD"))
    ev = one_event(receipt, p.bw.ch, "PositionChanged")
    # traders net short: the shorts pay (the pool, long, receives)
    assert ev["fundingPaidWad"] == rm.pending_funding(pos, _state(p).cum_funding) > 0


def test_config_change_accrues_funding_at_the_old_rate_first(protocol: World) -> None:
    p = protocol
    t = p.traders[0]
    p.seed_pool(1_000_000)
    p.fund_trader(t, 50_000)
    trade_wad(p, t, ETH, wad(100))
    p.warp(WARP)
    receipt = set_market(p, ETH, max_funding_rate_per_day=0)
    accrued = _index_at(p, receipt["blockNumber"])
    assert _state(p).cum_funding == accrued != 0
    p.warp(500)
    assert p.bw.ch.functions.currentFundingIndexWad(ETH).call() == accrued  # no more funding
