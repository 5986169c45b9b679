"""A first end-to-end path: deposit, seed the pool, open, move the price, close, withdraw."""

from __future__ import annotations

from support import assert_conserved
from web3.logs import DISCARD

from bulwark.chain.contracts import WAD
from bulwark.devnet.world import USDC, World


def test_trade_open_close_roundtrip_conserves(protocol: World) -> None:
    p = protocol
    trader = p.traders[0]
    p.seed_pool(500_000)
    p.fund_trader(trader, 10_000)
    p.trade(trader, "ETH-USD", 2)
    assert_conserved(p)
    p.set_price("ETH-USD", 3300)
    close = p.trade(trader, "ETH-USD", -2)
    assert_conserved(p)
    (fill,) = p.bw.ch.events.PositionChanged().process_receipt(close, errors=DISCARD)
    assert fill["args"]["realizedPnlWad"] == 600 * WAD
    # Funding accrues for however many seconds lay between the two blocks: the close settles it.
    funding = fill["args"]["fundingPaidWad"]
    margin = p.bw.ch.functions.marginOf(trader.address).call()
    # +600 profit, minus fees 0.05% of 6000 and of 6600 notional, minus the funding settled
    assert margin == 10_000 * WAD + 600 * WAD - 3 * WAD - 33 * WAD // 10 - funding
    p.bw.send(p.bw.ch.functions.withdraw(10_000 * USDC, trader.address), trader)
    assert_conserved(p)
