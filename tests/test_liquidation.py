"""Liquidation: padding to the fund, partial and full closes, bankrupt accounts and their shortfall,
bad debt attribution, batch skipping, keeper reward bounds, refusals. Every expected number comes from
riskmath evaluated on the state just before the liquidating block."""

from __future__ import annotations

import pytest
from helpers import (
    BTC,
    ETH,
    LONG,
    SHORT,
    bad_debt,
    events,
    fund_assets,
    margin,
    no_funding,
    one_event,
    position,
    reverts,
    risk,
    set_market,
    set_risk,
    trade_wad,
    tx,
    view,
    wad,
)
from support import assert_conserved
from web3.exceptions import Web3RPCError

from bulwark.chain.contracts import WAD, TxReverted
from bulwark.core import riskmath as rm
from bulwark.devnet.world import World


def _liquidate(p: World, who: str, market: int = ETH) -> tuple[dict, rm.Health, int]:  # type: ignore[type-arg]
    """Liquidates and returns the Liquidated event, the health riskmath saw just before, and the block."""
    receipt = tx(p, p.bw.ch.functions.liquidate(who, market), p.keeper)
    block = receipt["blockNumber"]
    now = p.bw.w3.eth.get_block(block)["timestamp"]
    before = view(p, who, block=block - 1, now=now).health()
    return one_event(receipt, p.bw.ch, "Liquidated"), before, block


def _open(p: World, index: int, usdc: int, size: float, market: int = ETH) -> str:
    t = p.traders[index]
    p.fund_trader(t, usdc)
    trade_wad(p, t, market, wad(size))
    return t.address


def test_liquidate_full_close_pays_padding_to_the_fund(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    who = _open(p, 0, 400, 2)  # 6,000 notional: below the partial minimum
    p.set_price("ETH-USD", 2_850)  # equity ~97 < MM 142.5
    fund = p.bw.ch.functions.fund().call()
    fund0, keeper0 = fund_assets(p), margin(p, p.keeper.address)
    ev, h, _ = _liquidate(p, who)
    assert h.liquidatable and h.equity >= risk(p).reward_floor
    r = risk(p)
    expected = rm.liquidation_split(rm.notional(wad(2), p.price_wad("ETH-USD")), rm.MarketConfig(
        *p.bw.ch.functions.marketConfig(ETH).call()), h.equity, r)  # fmt: skip
    assert (ev["penaltyWad"], ev["rewardWad"], ev["paddingWad"]) == (
        expected.penalty, expected.reward, expected.padding,
    )  # fmt: skip
    assert expected.penalty == 57 * WAD and expected.reward == rm.mul_wad_down(57 * WAD, WAD // 5)
    assert (ev["shortfallWad"], ev["bankrupt"], ev["keeper"]) == (0, False, p.keeper.address)
    assert fund_assets(p) == fund0 + expected.padding
    assert margin(p, p.keeper.address) == keeper0 + expected.reward
    assert position(p, who).size == 0
    assert margin(p, who) == h.equity - expected.charge
    assert fund == p.bw.fund.address
    assert_conserved(p)


def test_partial_liquidation_leaves_the_account_healthier(protocol: World) -> None:
    p = protocol
    p.seed_pool(200_000)
    who = _open(p, 0, 2_000, 10)  # 30,000 notional, MM 750
    p.set_price("ETH-USD", 2_870)  # equity ~685 in [MM/2, MM)
    ev, h, block = _liquidate(p, who)
    assert h.mmr > h.equity >= h.mmr // 2
    cfg = rm.MarketConfig.from_tuple(p.bw.ch.functions.marketConfig(ETH).call())
    price = p.price_wad("ETH-USD")
    close = rm.liquidation_size(wad(10), price, cfg, h.equity, h.mmr, risk(p))
    assert close == wad(5)
    assert position(p, who).size == wad(10) - close
    closed = one_event(p.bw.w3.eth.get_transaction_receipt(
        p.bw.w3.eth.get_block(block)["transactions"][0]), p.bw.ch, "PositionLiquidated")  # fmt: skip
    assert (closed["closedSizeWad"], closed["newSizeWad"]) == (close, wad(5))
    equity, _, mmr, liquidatable = p.bw.ch.functions.healthOf(who).call()
    assert mmr - equity < h.mmr - h.equity  # the deficit shrank
    assert not liquidatable
    assert ev["penaltyWad"] == rm.mul_wad_up(rm.notional(close, price), cfg.penalty_ratio)
    with reverts("LiquidationAccountHealthy", account=who):
        tx(p, p.bw.ch.functions.liquidate(who, ETH), p.keeper)
    assert_conserved(p)


def test_liquidation_below_half_maintenance_closes_everything(protocol: World) -> None:
    p = protocol
    p.seed_pool(200_000)
    who = _open(p, 0, 2_000, 10)
    p.set_price("ETH-USD", 2_820)  # equity ~185 < MM/2 ~352, still above the reward floor
    ev, h, _ = _liquidate(p, who)
    assert risk(p).reward_floor <= h.equity < h.mmr // 2
    assert position(p, who).size == 0
    assert ev["penaltyWad"] == h.equity  # the penalty is capped at the equity left
    assert margin(p, who) == 0 and not ev["bankrupt"]
    assert_conserved(p)


def test_gap_move_shortfall_is_paid_by_the_fund(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    p.stake(100_000)
    who = _open(p, 0, 1_000, 6)
    p.set_price("ETH-USD", 2_700)  # -1,800 on 991: equity ~ -809
    fund0, keeper0 = fund_assets(p), margin(p, p.keeper.address)
    receipt = tx(p, p.bw.ch.functions.liquidate(who, ETH), p.keeper)
    block = receipt["blockNumber"]
    h = view(p, who, block - 1, p.bw.w3.eth.get_block(block)["timestamp"]).health()
    shortfall = -h.equity  # only the negative equity: the fund pays no keeper reward
    settled = one_event(receipt, p.bw.ch, "ShortfallSettled")
    assert (settled["shortfallWad"], settled["coveredWad"], settled["badDebtWad"]) == (
        shortfall,
        shortfall,
        0,
    )
    ev = one_event(receipt, p.bw.ch, "Liquidated")
    assert (ev["bankrupt"], ev["rewardWad"], ev["paddingWad"], ev["shortfallWad"]) == (
        True,
        0,
        0,
        shortfall,
    )
    assert fund_assets(p) == fund0 - shortfall
    assert margin(p, p.keeper.address) == keeper0
    assert margin(p, who) == 0 and position(p, who).size == 0
    assert p.bw.ch.functions.totalBadDebtWad().call() == 0
    assert_conserved(p)


def test_fund_window_cap_turns_the_rest_into_bad_debt(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    p.stake(1_000)
    who = _open(p, 0, 1_000, 6)
    p.set_price("ETH-USD", 2_700)
    assets = fund_assets(p)
    ratio = int(p.bw.fund.functions.windowCapRatioWad().call())
    receipt = tx(p, p.bw.ch.functions.liquidate(who, ETH), p.keeper)
    settled = one_event(receipt, p.bw.ch, "ShortfallSettled")
    cap = rm.mul_wad_down(assets, ratio)
    assert settled["coveredWad"] == cap < settled["shortfallWad"]
    debt = settled["shortfallWad"] - cap
    assert settled["badDebtWad"] == debt
    recorded = one_event(receipt, p.bw.ch, "BadDebtRecorded")
    assert (recorded["marketId"], recorded["side"], recorded["amountWad"]) == (ETH, LONG, debt)
    assert bad_debt(p, ETH, LONG) == debt and bad_debt(p, ETH, SHORT) == 0
    assert p.bw.fund.functions.availableWad().call() == 0
    assert fund_assets(p) == assets - cap
    ts = p.bw.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert p.bw.ch.functions.badDebtSince().call() == ts
    assert_conserved(p)


def test_bankrupt_account_closes_every_market_and_splits_bad_debt_by_loss(
    protocol: World,
) -> None:
    p = protocol
    p.seed_pool(1_000_000)
    t = p.traders[0]
    p.fund_trader(t, 3_200)
    trade_wad(p, t, ETH, wad(10))
    trade_wad(p, t, BTC, -wad(0.5))
    p.set_price("ETH-USD", 2_800)  # -2,000
    p.set_price("BTC-USD", 63_000)  # -1,500
    receipt = tx(p, p.bw.ch.functions.liquidate(t.address, BTC), p.keeper)
    closes = events(receipt, p.bw.ch, "PositionLiquidated")
    assert [c["marketId"] for c in closes] == [ETH, BTC]
    losses = {c["marketId"]: c["fundingPaidWad"] - c["realizedPnlWad"] for c in closes}
    settled = one_event(receipt, p.bw.ch, "ShortfallSettled")
    debt = settled["badDebtWad"]
    assert debt > 0
    eth_share = debt * losses[ETH] // (losses[ETH] + losses[BTC])
    recorded = events(receipt, p.bw.ch, "BadDebtRecorded")
    assert [(r["marketId"], r["side"], r["amountWad"]) for r in recorded] == [
        (ETH, LONG, eth_share), (BTC, SHORT, debt - eth_share),
    ]  # fmt: skip
    assert p.bw.ch.functions.openMarketsOf(t.address).call() == []
    assert margin(p, t.address) == 0
    assert_conserved(p)


def test_liquidate_healthy_account_reverts_with_exact_numbers(protocol: World) -> None:
    p = protocol
    no_funding(p)
    p.seed_pool(100_000)
    who = _open(p, 0, 1_000, 2)
    h = view(p, who).health()
    with reverts(
        "LiquidationAccountHealthy", account=who, equityWad=h.equity, maintenanceMarginWad=h.mmr
    ):
        tx(p, p.bw.ch.functions.liquidate(who, ETH), p.keeper)


def test_liquidate_refusals(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    who = _open(p, 0, 400, 2)
    p.set_price("ETH-USD", 2_850)
    ch = p.bw.ch
    with reverts("LiquidationSelf", account=who):
        tx(p, ch.functions.liquidate(who, ETH), p.traders[0])
    for protected in (ch.functions.pool().call(), ch.functions.fund().call()):
        with reverts("AccountProtected", account=protected):
            tx(p, ch.functions.liquidate(protected, ETH), p.keeper)
    with reverts("MarketUnknown", marketId=5):
        tx(p, ch.functions.liquidate(who, 5), p.keeper)
    with reverts("LiquidationNoPosition", account=who, marketId=BTC):
        tx(p, ch.functions.liquidate(who, BTC), p.keeper)
    flat = p.traders[1]
    p.fund_trader(flat, 10)
    with reverts("LiquidationNoPosition", account=flat.address, marketId=ETH):
        tx(p, ch.functions.liquidate(flat.address, ETH), p.keeper)
    with reverts("LiquidationOnlySelfCall", caller=p.keeper.address):
        tx(p, ch.functions.liquidateFromBatch(who, ETH, p.keeper.address), p.keeper)


def test_liquidate_smaller_position_first_reverts(protocol: World) -> None:
    """Outside bankruptcy the largest position goes first: a keeper may not pick a small one whose
    close frees less maintenance margin than the reward it collects."""
    p = protocol
    p.seed_pool(200_000)
    who = _open(p, 0, 1_000, 6)  # 18,000 notional in ETH
    trade_wad(p, p.traders[0], BTC, wad("0.02"))  # 1,200 notional in BTC
    p.set_price("ETH-USD", 2_860)  # equity falls under MM, still above the reward floor
    h = view(p, who).health()
    assert h.liquidatable and h.equity >= risk(p).reward_floor
    with reverts("LiquidationNotFirstPosition", account=who, marketId=BTC, firstMarketId=ETH):
        tx(p, p.bw.ch.functions.liquidate(who, BTC), p.keeper)
    ev, _, _ = _liquidate(p, who, ETH)
    assert ev["bankrupt"] is False
    assert position(p, who, BTC).size == wad("0.02")
    assert_conserved(p)


def test_stale_price_blocks_liquidation(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    who = _open(p, 0, 400, 2)
    p.set_price("ETH-USD", 2_850)
    p.warp(3_601)
    feed = p.bw.feeds["ETH-USD"].address
    with reverts("OracleStalePrice", feed=feed, heartbeat=3_600):
        tx(p, p.bw.ch.functions.liquidate(who, ETH), p.keeper)
    receipt = tx(p, p.bw.ch.functions.liquidateBatch([who], [ETH]), p.keeper)
    skipped = one_event(receipt, p.bw.ch, "LiquidationSkipped")
    assert p.bw.errors.decode(skipped["reason"]).name == "OracleStalePrice"
    assert position(p, who).size == wad(2)


def test_batch_skips_a_healthy_account_and_liquidates_the_rest(protocol: World) -> None:
    p = protocol
    p.seed_pool(200_000)
    a = _open(p, 0, 400, 2)
    healthy = _open(p, 1, 5_000, 1)
    c = _open(p, 2, 420, 2)
    p.set_price("ETH-USD", 2_850)
    ch = p.bw.ch
    with reverts("LiquidationBatchLengthMismatch", accounts=2, markets=1):
        tx(p, ch.functions.liquidateBatch([a, c], [ETH]), p.keeper)
    fn = ch.functions.liquidateBatch([a, healthy, c], [ETH, ETH, ETH])
    assert fn.call({"from": p.keeper.address}) == 2
    receipt = tx(p, fn, p.keeper)
    skipped = one_event(receipt, ch, "LiquidationSkipped")
    assert (skipped["account"], skipped["marketId"]) == (healthy, ETH)
    reason = p.bw.errors.decode(skipped["reason"])
    assert reason.name == "LiquidationAccountHealthy"
    assert reason.args["account"].lower() == healthy.lower()
    assert [e["account"] for e in events(receipt, ch, "Liquidated")] == [a, c]
    assert (
        position(p, a).size == 0
        and position(p, c).size == 0
        and position(p, healthy).size == wad(1)
    )
    assert_conserved(p)


def test_batch_entry_out_of_gas_fails_the_batch_instead_of_skipping(protocol: World) -> None:
    """With too little gas every entry would fail inside its try/catch and be skipped; a gas estimate
    would then settle on a limit that liquidates nobody. An entry out of gas reverts the batch."""
    p = protocol
    p.seed_pool(200_000)
    a = _open(p, 0, 400, 2)
    c = _open(p, 2, 420, 2)
    p.set_price("ETH-USD", 2_850)
    fn = p.bw.ch.functions.liquidateBatch([a, c], [ETH, ETH])
    sender = {"from": p.keeper.address}
    estimate = fn.estimate_gas(sender)
    assert fn.call({**sender, "gas": estimate}) == 2  # the estimate liquidates every entry
    for gas in range(estimate, 50_000, -5_000):  # below the estimate: all or nothing, never a skip
        try:
            assert p.bw.call(fn, call_params={**sender, "gas": gas}) == 2
        except TxReverted as exc:  # an entry ran out
            assert exc.error.name == "LiquidationBatchOutOfGas"
        except Web3RPCError as exc:  # the batch itself ran out
            assert "OutOfGas" in str(exc)
    receipt = tx(p, fn, p.keeper)
    assert [e["account"] for e in events(receipt, p.bw.ch, "Liquidated")] == [a, c]
    assert_conserved(p)


def test_reduce_only_still_liquidates(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    who = _open(p, 0, 400, 2)
    tx(p, p.bw.ch.functions.setReduceOnly(True), p.admin)
    p.set_price("ETH-USD", 2_850)
    ev, _, _ = _liquidate(p, who)
    assert ev["account"] == who and position(p, who).size == 0
    assert_conserved(p)


@pytest.mark.parametrize(("floor", "ceiling"), [(20, 1_000), (1, 10)])
def test_keeper_reward_stays_within_floor_and_ceiling(
    protocol: World, floor: int, ceiling: int
) -> None:
    p = protocol
    for market in (0, 1):  # a floor above 5 needs larger minimum positions (floor / mmRatio)
        set_market(p, market, min_position_notional=max(floor * 40, 250) * WAD)
    set_risk(p, reward_floor=floor * WAD, reward_ceiling=ceiling * WAD)
    p.seed_pool(100_000)
    who = _open(p, 0, 400, 2)
    p.set_price("ETH-USD", 2_850)  # penalty 57: 20% is 11.4
    keeper0 = margin(p, p.keeper.address)
    ev, h, _ = _liquidate(p, who)
    reward = min(max(rm.mul_wad_down(57 * WAD, WAD // 5), floor * WAD), ceiling * WAD)
    assert ev["rewardWad"] == reward and floor * WAD <= reward <= ceiling * WAD
    assert ev["paddingWad"] == 57 * WAD - reward
    assert margin(p, p.keeper.address) == keeper0 + reward
    assert margin(p, who) == h.equity - 57 * WAD
    assert_conserved(p)
