"""Trading against the pool at the oracle price: fills, fees, realised PnL against riskmath, and every
refusal with its decoded error."""

from __future__ import annotations

from helpers import (
    BTC,
    ETH,
    config_tuple,
    configs,
    margin,
    no_funding,
    one_event,
    position,
    reverts,
    risk,
    set_market,
    trade_wad,
    tx,
    view,
    wad,
)
from support import assert_conserved

from bulwark.chain.contracts import WAD
from bulwark.core import riskmath as rm
from bulwark.devnet.world import World


def _pool_and_fund(p: World) -> tuple[str, str]:
    return p.bw.ch.functions.pool().call(), p.bw.ch.functions.fund().call()


def test_trade_open_fills_at_oracle_and_splits_the_fee(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    pool, fund = _pool_and_fund(p)
    before = [margin(p, a) for a in (t.address, pool, fund)]
    receipt = trade_wad(p, t, ETH, wad(2.5))
    price = p.price_wad("ETH-USD")
    cfg = configs(p)[ETH]
    fee = rm.mul_wad_up(rm.notional(wad(2.5), price), cfg.taker_fee)
    to_fund = rm.mul_wad_down(fee, risk(p).fund_fee_share)
    ev = one_event(receipt, p.bw.ch, "PositionChanged")
    assert (ev["account"], ev["marketId"], ev["sizeDeltaWad"], ev["newSizeWad"]) == (
        t.address, ETH, wad(2.5), wad(2.5),
    )  # fmt: skip
    assert (ev["priceWad"], ev["feeWad"], ev["realizedPnlWad"], ev["fundingPaidWad"]) == (
        price,
        fee,
        0,
        0,
    )
    assert fee == rm.mul_wad_up(7_500 * WAD, 5 * WAD // 10_000) == 3_750_000_000_000_000_000
    assert position(p, t.address) == rm.Position(
        wad(2.5), rm.entry_notional(wad(2.5), price), position(p, t.address).funding_basis
    )
    after = [margin(p, a) for a in (t.address, pool, fund)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [-fee, fee - to_fund, to_fund]
    assert_conserved(p)


def test_trade_partial_close_realises_exact_pnl(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(3))
    p.set_price("ETH-USD", 3_100.37)
    pos = position(p, t.address)
    m0 = margin(p, t.address)
    receipt = trade_wad(p, t, ETH, -wad(1))
    ev = one_event(receipt, p.bw.ch, "PositionChanged")
    price = ev["priceWad"]
    f = rm.fill(pos.size, pos.open_notional, -wad(1), price)
    assert (
        ev["realizedPnlWad"]
        == f.realized
        == rm.mul_wad_floor(wad(1), price)
        - rm.closed_open_notional(pos.open_notional, -wad(1), pos.size)
    )
    assert 100 * WAD < f.realized < 101 * WAD
    assert position(p, t.address).open_notional == f.open_notional_after
    assert margin(p, t.address) == m0 + f.realized - ev["feeWad"] - ev["fundingPaidWad"]
    assert_conserved(p)


def test_trade_flip_closes_then_opens(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(2))
    p.set_price("ETH-USD", 2_950)
    pos = position(p, t.address)
    receipt = trade_wad(p, t, ETH, -wad(5))
    ev = one_event(receipt, p.bw.ch, "PositionChanged")
    f = rm.fill(pos.size, pos.open_notional, -wad(5), ev["priceWad"])
    assert ev["realizedPnlWad"] == f.realized == -100 * WAD
    assert position(p, t.address).size == -wad(3)
    assert position(p, t.address).open_notional == f.open_notional_after == -8_850 * WAD
    assert_conserved(p)


def test_trade_cross_margin_over_two_markets(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(500_000)
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(10))
    trade_wad(p, t, BTC, -wad(1))
    assert p.bw.ch.functions.openMarketsOf(t.address).call() == [ETH, BTC]
    h = p.bw.ch.functions.healthOf(t.address).call()
    v = view(p, t.address).health()
    assert (h[0], h[1], h[2]) == (v.equity, v.imr, v.mmr)
    assert v.imr == rm.mul_wad_up(30_000 * WAD, WAD // 20) + rm.mul_wad_up(60_000 * WAD, WAD // 20)
    assert_conserved(p)


def test_trade_zero_size_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    with reverts("TradeZeroSize"):
        tx(p, p.bw.ch.functions.trade(ETH, 0, 0), t)


def test_trade_unknown_market_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    with reverts("MarketUnknown", marketId=7):
        tx(p, p.bw.ch.functions.trade(7, WAD, 2**256 - 1), t)


def test_trade_slippage_reverts_both_ways(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    price = p.price_wad("ETH-USD")
    with reverts("TradeSlippage", priceWad=price, acceptablePriceWad=price - 1):
        tx(p, p.bw.ch.functions.trade(ETH, WAD, price - 1), t)
    with reverts("TradeSlippage", priceWad=price, acceptablePriceWad=price + 1):
        tx(p, p.bw.ch.functions.trade(ETH, -WAD, price + 1), t)
    tx(p, p.bw.ch.functions.trade(ETH, WAD, price), t)  # the limit itself is accepted


def test_trade_margin_insufficient_reverts_with_exact_equity(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    no_funding(p)
    p.seed_pool(100_000)
    p.fund_trader(t, 100)
    fee = rm.mul_wad_up(3_000 * WAD, 5 * WAD // 10_000)
    with reverts(
        "TradeMarginInsufficient",
        account=t.address,
        equityWad=100 * WAD - fee,
        initialMarginWad=150 * WAD,
    ):
        trade_wad(p, t, ETH, wad(1))
    trade_wad(p, t, ETH, wad(0.6))  # 1,800 notional needs 90
    assert_conserved(p)


def test_trade_open_interest_cap_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    set_market(p, ETH, max_open_interest=wad(5))
    trade_wad(p, t, ETH, wad(5))
    with reverts("TradeOpenInterestCap", marketId=ETH, openInterestWad=wad(6), capWad=wad(5)):
        trade_wad(p, t, ETH, wad(1))
    trade_wad(p, t, ETH, -wad(8))  # the short side has its own cap: 3 short is fine
    assert_conserved(p)


def test_trade_pool_exposure_cap_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(10_000)
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(9))
    equity = int(p.bw.ch.functions.poolEquityWad().call())
    with reverts("TradePoolExposureCap", marketId=ETH, exposureWad=33_000 * WAD) as info:
        trade_wad(p, t, ETH, wad(2))
    assert info.value.error.args["capWad"] <= rm.mul_wad_down(equity + 4 * WAD, 3 * WAD)
    # a trade that shrinks the skew passes whatever the cap
    other = p.traders[1]
    p.fund_trader(other, 10_000)
    trade_wad(p, other, ETH, -wad(2))
    assert_conserved(p)


def test_reduce_only_blocks_opening_and_lets_closing_through(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(2))
    receipt = tx(p, p.bw.ch.functions.setReduceOnly(True), p.admin)
    assert one_event(receipt, p.bw.ch, "ReduceOnlySet")["reduceOnly"] is True
    with reverts("TradeReduceOnly", sizeWad=wad(2), newSizeWad=wad(3)):
        trade_wad(p, t, ETH, wad(1))
    with reverts("TradeReduceOnly", sizeWad=wad(2), newSizeWad=-wad(1)):  # a flip adds risk
        trade_wad(p, t, ETH, -wad(3))
    with reverts("TradeReduceOnly", sizeWad=0, newSizeWad=-wad(1)):
        trade_wad(p, t, BTC, -wad(1))
    trade_wad(p, t, ETH, -wad(1.5))
    trade_wad(p, t, ETH, -wad(0.5))
    assert position(p, t.address).size == 0
    tx(p, p.bw.ch.functions.setReduceOnly(False), p.admin)
    trade_wad(p, t, ETH, wad(1))
    assert_conserved(p)


def test_trade_that_would_bankrupt_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    no_funding(p)
    p.seed_pool(100_000)
    p.fund_trader(t, 1_000)
    trade_wad(p, t, ETH, wad(6))
    p.set_price("ETH-USD", 2_800)  # -1,200 on 991 of margin
    pos, m = position(p, t.address), margin(p, t.address)
    price = p.price_wad("ETH-USD")
    f = rm.fill(pos.size, pos.open_notional, -wad(1), price)
    fee = rm.mul_wad_up(rm.notional(wad(1), price), configs(p)[ETH].taker_fee)
    equity_after = m + f.realized - fee + rm.unrealized_pnl(wad(5), f.open_notional_after, price)
    assert equity_after < 0
    with reverts("TradeWouldBankrupt", account=t.address, equityWad=equity_after):
        trade_wad(p, t, ETH, -wad(1))


def test_set_market_config_changes_the_next_trade(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 10_000)
    receipt = set_market(p, ETH, taker_fee=WAD // 1_000)
    ev = one_event(receipt, p.bw.ch, "MarketConfigured")
    assert tuple(ev["config"].values()) == config_tuple(configs(p)[ETH])
    receipt = trade_wad(p, t, ETH, wad(1))
    assert one_event(receipt, p.bw.ch, "PositionChanged")["feeWad"] == 3 * WAD
