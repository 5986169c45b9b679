"""Differential: the keeper's Python math (riskmath over the index) equals the contract's views on
random states: healthsOf, adlScoresOf and the funding index, to the wei; the float screen is close."""

from __future__ import annotations

import contextlib
import random

import pytest

from bulwark.chain.contracts import WAD, Bulwark, TxReverted
from bulwark.core import riskmath as rm
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper.index import AccountIndex, get_block
from bulwark.keeper.screening import read_markets, screen

MARKETS = {"ETH-USD": 3000.0, "BTC-USD": 60000.0}


def random_book(chain: World, rng: random.Random, traders: int) -> list[str]:
    """Traders with random margins opening, adding, reducing and flipping in both markets while
    prices move and time passes (so entries differ and funding accrues)."""
    accounts = [
        chain.new_trader(n, rng.randrange(800, 20_000), f"diff-{rng.random()}")
        for n in range(traders)
    ]
    for _ in range(4):
        for market, base in MARKETS.items():
            chain.set_price(market, base * rng.uniform(0.9, 1.1))
        for t in accounts:
            market = rng.choice(list(MARKETS))
            notional = rng.uniform(-6, 6) * 1_000  # quote, against margins from 800
            # refused for margin or caps: the state stays random anyway
            with contextlib.suppress(TxReverted):
                chain.trade(t, market, notional / (chain.price_wad(market) / WAD))
        chain.warp(rng.randrange(60, 3_000))
    for market, base in MARKETS.items():
        chain.set_price(market, base * rng.uniform(0.85, 1.15))
    chain.warp(rng.randrange(1, 600))
    return [t.address for t in accounts]


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_riskmath_over_the_index_equals_the_contract_views(
    anvil: AnvilNode, bw: Bulwark, seed: int
) -> None:
    # given a random book
    chain = World(anvil, bw)
    chain.seed_pool(1_000_000)
    rng = random.Random(seed)
    accounts = random_book(chain, rng, 10)

    # when the keeper's index and market snapshot are read at the head
    index = AccountIndex(bw)
    head = get_block(bw.w3)
    index.sync(head)
    snap = read_markets(bw, index.market_count, head)
    assert set(accounts) <= set(index.accounts)
    assert sum(1 for a in accounts if index.accounts[a].positions) >= 6

    # then the funding index, every health and every ADL score match the views at that block
    for m in snap.market_ids:
        state = rm.MarketState.from_tuple(
            bw.ch.functions.marketState(m).call(block_identifier=head.number)
        )
        assert (
            rm.funding_index_now(state, snap.configs[m], snap.prices[m], head.timestamp)
            == snap.indices[m]
        )
    views = bw.ch.functions.healthsOf(accounts).call(block_identifier=head.number)
    for address, view in zip(accounts, views, strict=True):
        st = index.accounts[address]
        h = rm.health(st.margin, st.positions, snap.prices, snap.indices, snap.configs)
        assert (h.equity, h.imr, h.mmr) == (view[0], view[1], view[2]), address
        assert (bool(st.positions) and h.liquidatable) == view[3]
    for m in snap.market_ids:
        on_chain = bw.ch.functions.adlScoresOf(m, accounts).call(block_identifier=head.number)
        off_chain = [
            rm.account_adl_score(
                m,
                index.accounts[a].margin,
                index.accounts[a].positions,
                snap.prices,
                snap.indices,
                snap.configs,
            )
            for a in accounts
        ]
        assert off_chain == on_chain
        assert any(s > 0 for s in on_chain) or m == 1

    # and the float screen agrees with the exact equity to 1e-9 and flags every liquidatable account
    scr = screen(index, snap, buffer=0.0)
    for address, equity in zip(scr.accounts, scr.equity, strict=True):
        exact = (
            rm.health(
                index.accounts[address].margin,
                index.accounts[address].positions,
                snap.prices,
                snap.indices,
                snap.configs,
            ).equity
            / WAD
        )
        assert equity == pytest.approx(exact, rel=1e-9, abs=1e-6)
    flagged = set(scr.candidates)
    assert {a for a, v in zip(accounts, views, strict=True) if v[3]} <= flagged
