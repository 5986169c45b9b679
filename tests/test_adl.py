"""Auto-deleveraging: only with bad debt and an empty fund, targets in score order (riskmath's ranking),
haircuts from realised profit only, stopping exactly at zero debt; closes and flips cannot dodge it."""

from __future__ import annotations

from helpers import (
    BTC,
    ETH,
    LONG,
    adl_book,
    bad_debt,
    events,
    fund_assets,
    margin,
    no_funding,
    position,
    reverts,
    trade_wad,
    tx,
    view,
    wad,
)
from support import assert_conserved

from bulwark.chain.contracts import WAD
from bulwark.core import riskmath as rm
from bulwark.devnet.world import World


def _scores(p: World, who: list[str], block: str = "latest") -> list[int]:
    """The scores as of `block`; "pending" is the block a transaction sent now is simulated and
    mined in (the clock is pinned, so the funding accrued by then is the same in both)."""
    scores = p.bw.ch.functions.adlScoresOf(ETH, who).call(block_identifier=block)
    return [int(s) for s in scores]


def test_adl_scores_match_riskmath(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    addrs = [t.address for t in book.shorts] + [
        book.victim.address,
        p.bw.ch.functions.pool().call(),
    ]
    on_chain = _scores(p, addrs)
    expected = [view(p, a).adl_score(ETH) for a in addrs[:3]]
    assert on_chain[:3] == expected
    assert all(s > 0 for s in expected)
    assert on_chain[3:] == [0, 0]  # flat victim, the pool is never a target


def test_auto_deleverage_clears_debt_exactly_in_score_order(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    assert p.bw.fund.functions.availableWad().call() == 0
    addrs = [t.address for t in book.shorts]
    order = rm.rank_adl(dict(zip(addrs, _scores(p, addrs), strict=True)))
    assert order == [addrs[0], addrs[2], addrs[1]]  # 2 ETH on 500 first, 3 ETH on 5,000 last
    before = {a: (margin(p, a), position(p, a)) for a in addrs}
    pool = p.bw.ch.functions.pool().call()
    pool_before = margin(p, pool)

    receipt = tx(p, p.bw.ch.functions.autoDeleverage(ETH, order), p.keeper)
    block = receipt["blockNumber"]
    now = p.bw.w3.eth.get_block(block)["timestamp"]
    steps = events(receipt, p.bw.ch, "AutoDeleveraged")
    assert [s["account"] for s in steps] == order[:2]  # the debt is gone before the third

    debt = book.debt
    previous = 2**256 - 1
    realized_total = 0
    for step in steps:
        a = step["account"]
        v = view(p, a, block=block - 1, now=now)
        pos = v.positions[ETH]
        price = v.prices[ETH]
        assert step["scoreWad"] == v.adl_score(ETH) <= previous
        previous = step["scoreWad"]
        pnl = rm.unrealized_pnl(pos.size, pos.open_notional, price)
        close = rm.adl_close_size(pos.size, pnl, debt)
        assert step["closedSizeWad"] == close
        realized = rm.fill(pos.size, pos.open_notional, -close, price).realized
        haircut = step["haircutWad"]
        assert haircut == min(realized, debt) and 0 < haircut <= realized
        debt -= haircut
        assert step["badDebtRemainingWad"] == debt
        owed = rm.pending_funding(pos, v.indices[ETH])
        old_margin, old_pos = before[a]
        assert old_pos == pos
        # the target keeps its principal and any profit beyond the haircut
        assert margin(p, a) == old_margin - owed + realized - haircut
        assert position(p, a).size == pos.size - close
        realized_total += realized
    assert debt == 0
    assert steps[0]["closedSizeWad"] == position(p, addrs[0]).size * 0 + wad(-2)  # fully closed
    assert position(p, order[1]).size != 0  # the last target only as far as needed
    assert bad_debt(p, ETH, LONG) == 0
    assert p.bw.ch.functions.totalBadDebtWad().call() == 0
    assert p.bw.ch.functions.badDebtSince().call() == 0
    assert margin(p, pool) < pool_before  # the pool paid the realised profit
    assert sum(s["haircutWad"] for s in steps) == book.debt < realized_total
    assert_conserved(p)


def test_auto_deleverage_out_of_order_reverts(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    # 1 ETH short (its whole profit is within the debt, so ADL moves on), then the top score
    first, second = book.shorts[2].address, book.shorts[0].address
    s_low, s_high = _scores(p, [first, second], "pending")
    assert s_low < s_high
    with reverts("AdlOutOfOrder", target=second, previousScoreWad=s_low) as info:
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [first, second]), p.keeper)
    assert info.value.error.args["scoreWad"] > s_low


def test_auto_deleverage_ineligible_targets_revert(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    victim, top = book.victim.address, book.shorts[0].address
    with reverts("AdlTargetIneligible", target=victim, sizeWad=0):
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [victim]), p.keeper)
    # a long holds the debt's own side
    longer = p.traders[4]
    p.fund_trader(longer, 1_000)
    trade_wad(p, longer, ETH, wad(1))
    with reverts("AdlTargetIneligible", target=longer.address, sizeWad=wad(1)):
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [top, longer.address]), p.keeper)
    # a short opened at the crashed price has no profit
    late = p.traders[5]
    p.fund_trader(late, 1_000)
    trade_wad(p, late, ETH, wad(-1))
    pos = position(p, late.address)
    with reverts("AdlTargetIneligible", target=late.address, sizeWad=wad(-1)) as info:
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [late.address]), p.keeper)
    assert info.value.error.args["pnlWad"] == rm.unrealized_pnl(
        pos.size, pos.open_notional, p.price_wad("ETH-USD")
    )
    assert info.value.error.args["pnlWad"] <= 0
    with reverts("AdlNoTargets"):
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, []), p.keeper)
    with reverts("MarketUnknown", marketId=9):
        tx(p, p.bw.ch.functions.autoDeleverage(9, [top]), p.keeper)


def test_auto_deleverage_haircut_never_pushes_a_cross_margin_target_below_maintenance(
    protocol: World,
) -> None:
    """A target whose ETH profit carries a losing BTC leg gives up only what keeps it at maintenance
    margin; the rest of the debt passes to the next target."""
    p = protocol
    no_funding(p)
    p.seed_pool(1_000_000)
    victim, carried, rich = p.traders[0], p.traders[1], p.traders[2]
    for trader, usdc in ((victim, 1_000), (carried, 1_000), (rich, 5_000)):
        p.fund_trader(trader, usdc)
    trade_wad(p, carried, ETH, wad(-2))
    trade_wad(p, carried, BTC, wad("0.1"))
    trade_wad(p, rich, ETH, wad(-3))
    trade_wad(p, victim, ETH, wad(6))
    p.set_price("BTC-USD", 51_000)  # the carried account's BTC leg loses 900
    p.set_price("ETH-USD", 2_700)
    tx(p, p.bw.ch.functions.liquidate(victim.address, ETH), p.keeper)
    debt = bad_debt(p, ETH, LONG)
    before = view(p, carried.address).health()
    assert debt > 0 and not before.liquidatable

    order = rm.rank_adl(dict(zip(
        [carried.address, rich.address], _scores(p, [carried.address, rich.address]), strict=True
    )))  # fmt: skip
    receipt = tx(p, p.bw.ch.functions.autoDeleverage(ETH, order), p.keeper)
    steps = {s["account"]: s for s in events(receipt, p.bw.ch, "AutoDeleveraged")}
    after = view(p, carried.address).health()
    realized = 600 * WAD  # 2 ETH short from 3,000 to 2,700
    assert position(p, carried.address).size == 0
    assert 0 < steps[carried.address]["haircutWad"] < realized
    assert after.equity == after.mmr  # capped exactly at maintenance margin
    assert sum(s["haircutWad"] for s in steps.values()) == debt
    assert bad_debt(p, ETH, LONG) == 0
    assert_conserved(p)


def test_auto_deleverage_while_fund_can_pay_the_debt_reverts(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    p.stake(10_000)
    # the liquidation spent this window's cap; in the next window the stake covers the whole debt
    assert p.bw.fund.functions.availableWad().call() == 0
    p.warp(int(p.bw.fund.functions.windowDuration().call()))
    available = int(p.bw.fund.functions.availableWad().call())
    assert available >= book.debt
    with reverts("AdlNotRequired", badDebtWad=book.debt, fundAvailableWad=available):
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [book.shorts[0].address]), p.keeper)


def test_auto_deleverage_without_bad_debt_reverts(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    t = p.traders[1]
    p.fund_trader(t, 1_000)
    trade_wad(p, t, ETH, wad(-1))
    p.set_price("ETH-USD", 2_900)
    available = int(p.bw.fund.functions.availableWad().call())
    with reverts("AdlNotRequired", badDebtWad=0, fundAvailableWad=available):
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [t.address]), p.keeper)


def test_auto_deleverage_needs_the_adl_keeper_role(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    ch = p.bw.ch.functions
    role = ch.ADL_KEEPER_ROLE().call()
    outsider = p.traders[1]
    # the deployment granted it to the local keeper account, not to a trader
    assert (
        ch.hasRole(role, p.keeper.address).call() and not ch.hasRole(role, outsider.address).call()
    )
    with reverts("AccessControlUnauthorizedAccount", account=outsider.address):
        tx(p, ch.autoDeleverage(ETH, [book.shorts[0].address]), outsider)
    assert bad_debt(p, ETH, LONG) == book.debt


def test_auto_deleverage_on_stale_price_reverts(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    p.warp(3_601)
    with reverts("OracleStalePrice", feed=p.bw.feeds["ETH-USD"].address, heartbeat=3_600):
        tx(p, p.bw.ch.functions.autoDeleverage(ETH, [book.shorts[0].address]), p.keeper)


def test_profitable_close_during_adl_pays_the_debt(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    t = book.shorts[1]  # short 3 ETH from 3,000, now worth +900
    receipt = trade_wad(p, t, ETH, wad(1))
    ev = events(receipt, p.bw.ch, "ProfitHaircutOnClose")[0]
    realized = events(receipt, p.bw.ch, "PositionChanged")[0]["realizedPnlWad"]
    assert ev["haircutWad"] == min(realized, book.debt)
    assert bad_debt(p, ETH, LONG) == book.debt - ev["haircutWad"] == ev["badDebtRemainingWad"]
    assert_conserved(p)


def test_flip_during_adl_pays_the_debt_like_a_close(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    t = book.shorts[2]  # short 1 ETH, +300; flips to long 1 ETH in one trade
    receipt = trade_wad(p, t, ETH, wad(2))
    realized = events(receipt, p.bw.ch, "PositionChanged")[0]["realizedPnlWad"]
    assert realized > 0
    ev = events(receipt, p.bw.ch, "ProfitHaircutOnClose")
    assert len(ev) == 1 and ev[0]["haircutWad"] == min(realized, book.debt)
    assert position(p, t.address).size == wad(1)
    assert_conserved(p)


def test_socialize_after_grace_period(protocol: World) -> None:
    p = protocol
    book = adl_book(p)
    since = int(p.bw.ch.functions.badDebtRecordedAt(ETH, LONG).call())  # this side's own clock
    grace = int(p.bw.ch.functions.riskParams().call()[3])
    with reverts("BadDebtGracePeriod", socializableAt=since + grace):
        tx(p, p.bw.ch.functions.socializeBadDebt(ETH, LONG), p.keeper)
    with reverts("BadDebtNone", marketId=ETH, side=1):
        tx(p, p.bw.ch.functions.socializeBadDebt(ETH, 1), p.keeper)
    p.warp(grace)
    pool = p.bw.ch.functions.pool().call()
    pool_before = margin(p, pool)
    # a new fund window has opened: the fund pays what it can first, the pool only the rest
    available = int(p.bw.fund.functions.availableWad().call())
    assert 0 < available < book.debt
    receipt = tx(p, p.bw.ch.functions.socializeBadDebt(ETH, LONG), p.keeper)
    assert events(receipt, p.bw.ch, "BadDebtCovered")[0]["amountWad"] == available
    ev = events(receipt, p.bw.ch, "BadDebtSocialized")[0]
    assert (ev["amountWad"], ev["totalBadDebtWad"]) == (book.debt - available, 0)
    assert margin(p, pool) == pool_before - (book.debt - available)
    assert p.bw.ch.functions.badDebtSince().call() == 0
    assert_conserved(p)


def test_worked_example_empty_fund_then_adl(protocol: World) -> None:
    """The numbers of docs/protocol.md, "Worked example B" (funding switched off to pin them)."""
    p = protocol
    no_funding(p)
    book = adl_book(p)
    s1, s2, s3 = (t.address for t in book.shorts)
    # the fund held only its 3.6 share of the fees; the window cap let it pay half of that
    assert fund_assets(p) == wad(1.8) and p.bw.fund.functions.availableWad().call() == 0
    assert book.debt == wad(
        807.2
    )  # 809 of shortfall (no keeper reward: the victim was under water)
    scores = _scores(p, [s1, s2, s3])
    assert scores == [view(p, a).adl_score(ETH) for a in (s1, s2, s3)]
    assert [s // 10**12 for s in scores] == [492_251, 137_392, 207_932]
    receipt = tx(p, p.bw.ch.functions.autoDeleverage(ETH, [s1, s3, s2]), p.keeper)
    steps = [(e["account"], e["closedSizeWad"], e["haircutWad"], e["badDebtRemainingWad"])
             for e in events(receipt, p.bw.ch, "AutoDeleveraged")]  # fmt: skip
    partial = rm.mul_div_up(WAD, wad(207.2) + 1, 300 * WAD)
    assert steps == [(s1, -wad(2), 600 * WAD, wad(207.2)), (s3, -partial, wad(207.2), 0)]
    assert partial == 690_666_666_666_666_667
    # principal untouched: s1 keeps 500 - 3 of fee; s3 keeps the 100 wei its close realised beyond
    # the debt (0.690666666666666667 x 300 = 207.2000000000000001)
    kept = rm.fill(-WAD, -3_000 * WAD, partial, 2_700 * WAD).realized - wad(207.2)
    assert kept == 100
    assert [margin(p, a) for a in (s1, s2, s3)] == [497 * WAD, wad(4_995.5), wad(998.5) + kept]
    assert position(p, s3).size == -(WAD - partial)
    assert_conserved(p)
