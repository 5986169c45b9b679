"""The vault boundary: deposits, withdrawals and their refusals, each checked for conservation."""

from __future__ import annotations

from helpers import (
    ETH,
    LONG,
    bad_debt,
    health,
    margin,
    no_funding,
    one_event,
    reverts,
    trade_wad,
    tx,
    view,
    wad,
)
from support import assert_conserved

from bulwark.chain.contracts import WAD
from bulwark.devnet.world import USDC, World

ZERO = "0x0000000000000000000000000000000000000000"


def test_deposit_credits_margin_in_wad(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    tx(p, p.bw.token.functions.approve(p.bw.ch.address, 10**30), t)
    receipt = tx(p, p.bw.ch.functions.deposit(t.address, 1_234_567_891), t)
    ev = one_event(receipt, p.bw.ch, "Deposited")
    assert (ev["account"], ev["payer"], ev["amountTokens"]) == (t.address, t.address, 1_234_567_891)
    assert margin(p, t.address) == 1_234_567_891 * 10**12
    assert_conserved(p)


def test_deposit_for_another_account(protocol: World) -> None:
    p, payer, other = protocol, protocol.traders[0], protocol.traders[1]
    tx(p, p.bw.token.functions.approve(p.bw.ch.address, 10**30), payer)
    tx(p, p.bw.ch.functions.deposit(other.address, 5 * USDC), payer)
    assert margin(p, other.address) == 5 * WAD
    assert margin(p, payer.address) == 0
    assert_conserved(p)


def test_deposit_zero_amount_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    with reverts("VaultZeroAmount"):
        tx(p, p.bw.ch.functions.deposit(t.address, 0), t)


def test_deposit_zero_account_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    tx(p, p.bw.token.functions.approve(p.bw.ch.address, 10**30), t)
    with reverts("ZeroAddress"):
        tx(p, p.bw.ch.functions.deposit(ZERO, 1), t)


def test_withdraw_pays_tokens_and_debits_margin(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.fund_trader(t, 1_000)
    before = p.bw.token.functions.balanceOf(p.admin.address).call()
    receipt = tx(p, p.bw.ch.functions.withdraw(400 * USDC, p.admin.address), t)
    ev = one_event(receipt, p.bw.ch, "Withdrawn")
    assert (ev["account"], ev["to"], ev["amountTokens"]) == (t.address, p.admin.address, 400 * USDC)
    assert p.bw.token.functions.balanceOf(p.admin.address).call() == before + 400 * USDC
    assert margin(p, t.address) == 600 * WAD
    assert_conserved(p)


def test_withdraw_zero_amount_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.fund_trader(t, 10)
    with reverts("VaultZeroAmount"):
        tx(p, p.bw.ch.functions.withdraw(0, t.address), t)


def test_withdraw_to_zero_address_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.fund_trader(t, 10)
    with reverts("ZeroAddress"):
        tx(p, p.bw.ch.functions.withdraw(1, ZERO), t)


def test_withdraw_more_than_margin_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.fund_trader(t, 10)
    with reverts(
        "VaultInsufficientMargin", account=t.address, marginWad=10 * WAD, amountWad=11 * WAD
    ):
        tx(p, p.bw.ch.functions.withdraw(11 * USDC, t.address), t)


def test_withdraw_unrealised_profit_reverts(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.seed_pool(100_000)
    p.fund_trader(t, 1_000)
    trade_wad(p, t, ETH, wad(1))
    p.set_price("ETH-USD", 3_500)  # +500 unrealised, margin is 1000 - fee 1.5
    m = margin(p, t.address)
    assert health(p, t.address)[0] > m + 400 * WAD
    with reverts("VaultInsufficientMargin", account=t.address, marginWad=m, amountWad=999 * WAD):
        tx(p, p.bw.ch.functions.withdraw(999 * USDC, t.address), t)


def test_withdraw_below_initial_margin_reverts_with_exact_equity(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    no_funding(p)
    p.seed_pool(100_000)
    p.fund_trader(t, 1_000)
    trade_wad(p, t, ETH, wad(5))  # 15,000 notional: IM 750
    v = view(p, t.address).health()
    assert v.imr == 750 * WAD
    amount = 300
    with reverts(
        "VaultBelowInitialMargin",
        account=t.address,
        equityAfterWad=v.equity - amount * WAD,
        initialMarginWad=v.imr,
    ):
        tx(p, p.bw.ch.functions.withdraw(amount * USDC, t.address), t)
    # the free part above the initial margin can leave
    free = (v.equity - v.imr) // 10**12
    tx(p, p.bw.ch.functions.withdraw(free, t.address), t)
    assert_conserved(p)


def test_withdraw_while_bad_debt_outstanding_reverts(protocol: World) -> None:
    p, victim, other = protocol, protocol.traders[0], protocol.traders[1]
    p.seed_pool(100_000)
    p.fund_trader(other, 1_000)
    p.fund_trader(victim, 1_000)
    trade_wad(p, victim, ETH, wad(6))  # 18,000 notional on 1,000
    p.set_price("ETH-USD", 2_700)  # -1,800: bankrupt; the fund is empty
    tx(p, p.bw.ch.functions.liquidate(victim.address, ETH), p.keeper)
    total = int(p.bw.ch.functions.totalBadDebtWad().call())
    assert total > 0 and bad_debt(p, ETH, LONG) == total
    with reverts("VaultBadDebtOutstanding", totalBadDebtWad=total):
        tx(p, p.bw.ch.functions.withdraw(1 * USDC, other.address), other)
    assert_conserved(p)


def test_withdraw_free_margin_while_reduce_only(protocol: World) -> None:
    p, t = protocol, protocol.traders[0]
    p.fund_trader(t, 100)
    tx(p, p.bw.ch.functions.setReduceOnly(True), p.admin)
    tx(p, p.bw.ch.functions.withdraw(100 * USDC, t.address), t)
    assert margin(p, t.address) == 0
    assert_conserved(p)
