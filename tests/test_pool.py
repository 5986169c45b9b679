"""The liquidity pool vault: deposits lock shares for the cooldown, exits respect the exposure cap and
outstanding bad debt, pool equity is the exact mirror of the traders, and a donation cannot steal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import clear_cli_env
from helpers import (
    ETH,
    adl_book,
    events,
    margin,
    reverts,
    trade_wad,
    tx,
    wad,
)
from support import assert_conserved

from bulwark import cli
from bulwark.chain.contracts import WAD
from bulwark.core import riskmath as rm
from bulwark.devnet.world import MAX_UINT, USDC, World


def _cooldown(p: World) -> int:
    return int(p.bw.pool.functions.cooldown().call())


def test_deposit_mints_shares_locks_and_credits_pool_margin(protocol: World) -> None:
    p = protocol
    receipt_block = p.bw.w3.eth.block_number
    p.seed_pool(10_000)
    pool = p.bw.pool
    shares = pool.functions.balanceOf(p.lp.address).call()
    assert shares == 10_000 * USDC * 10**6  # virtual offset of 6 decimals on an empty vault
    assert pool.functions.totalAssets().call() == 10_000 * USDC
    assert margin(p, pool.address) == 10_000 * WAD
    ts = p.bw.w3.eth.get_block("latest")["timestamp"]
    assert pool.functions.lockedUntil(p.lp.address).call() == ts + _cooldown(p)
    assert p.bw.w3.eth.block_number > receipt_block
    assert_conserved(p)


def test_deposit_for_another_receiver_reverts(protocol: World) -> None:
    p = protocol
    tx(p, p.bw.token.functions.approve(p.bw.pool.address, MAX_UINT), p.lp)
    with reverts("PoolReceiverNotCaller", caller=p.lp.address, receiver=p.staker.address):
        tx(p, p.bw.pool.functions.deposit(USDC, p.staker.address), p.lp)


def test_exit_during_cooldown_reverts_then_succeeds(protocol: World) -> None:
    p = protocol
    p.seed_pool(10_000)
    pool = p.bw.pool
    until = pool.functions.lockedUntil(p.lp.address).call()
    shares = pool.functions.balanceOf(p.lp.address).call()
    with reverts("PoolSharesLocked", account=p.lp.address, until=until):
        tx(p, pool.functions.redeem(shares, p.lp.address, p.lp.address), p.lp)
    with reverts("PoolSharesLocked", account=p.lp.address, until=until):
        tx(p, pool.functions.withdraw(USDC, p.lp.address, p.lp.address), p.lp)
    with reverts("PoolSharesLocked", account=p.lp.address, until=until):
        tx(p, pool.functions.transfer(p.staker.address, 1), p.lp)
    assert pool.functions.maxRedeem(p.lp.address).call() == 0
    p.warp(_cooldown(p))
    assert pool.functions.maxRedeem(p.lp.address).call() == shares
    before = p.bw.token.functions.balanceOf(p.lp.address).call()
    receipt = tx(p, pool.functions.redeem(shares, p.lp.address, p.lp.address), p.lp)
    ev = events(receipt, pool, "Withdraw")[0]
    assert ev["assets"] == 10_000 * USDC and ev["shares"] == shares
    assert p.bw.token.functions.balanceOf(p.lp.address).call() == before + 10_000 * USDC
    assert margin(p, pool.address) == 0
    assert_conserved(p)


def test_pool_equity_is_the_mirror_of_traders(protocol: World) -> None:
    p = protocol
    p.seed_pool(200_000)
    a, b = p.traders[0], p.traders[1]
    p.fund_trader(a, 5_000)
    p.fund_trader(b, 5_000)
    trade_wad(p, a, ETH, wad(7))
    trade_wad(p, b, ETH, wad(-3))
    p.set_price("ETH-USD", 3_123.45)
    pool = p.bw.pool.address
    ch = p.bw.ch
    block = p.bw.w3.eth.block_number
    now = p.bw.w3.eth.get_block(block)["timestamp"]
    cfgs = [rm.MarketConfig.from_tuple(ch.functions.marketConfig(m).call()) for m in (0, 1)]
    states = [rm.MarketState.from_tuple(ch.functions.marketState(m).call()) for m in (0, 1)]
    prices = {m: int(p.bw.oracle.functions.priceWad(m).call()) for m in (0, 1)}
    indices = {m: rm.funding_index_now(states[m], cfgs[m], prices[m], now) for m in (0, 1)}
    expected = rm.pool_equity(margin(p, pool), states, prices, indices)
    assert ch.functions.poolEquityWad().call(block_identifier=block) == expected
    # the traders are up 4 x 123.45 net: the pool is down by as much (less rounding and fees)
    assert p.bw.pool.functions.totalAssets().call() == expected // 10**12
    assert expected < margin(p, pool) - 493 * WAD


def test_lp_withdrawal_respects_pool_exposure(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    t = p.traders[0]
    p.fund_trader(t, 30_000)
    trade_wad(p, t, ETH, wad(90))  # 270,000 of exposure against a cap of 3 x 100,000
    p.warp(_cooldown(p))
    p.refresh_prices()
    equity = int(p.bw.ch.functions.poolEquityWad().call())
    exposure = rm.notional(wad(90), p.price_wad("ETH-USD"))
    with reverts("VaultPoolExposure", marketId=ETH, exposureWad=exposure) as info:
        tx(p, p.bw.pool.functions.withdraw(20_000 * USDC, p.lp.address, p.lp.address), p.lp)
    cap = info.value.error.args["capWad"]
    assert exposure > cap >= rm.mul_wad_down(equity - 20_000 * WAD, 3 * WAD) - 3 * WAD
    tx(p, p.bw.pool.functions.withdraw(5_000 * USDC, p.lp.address, p.lp.address), p.lp)
    assert_conserved(p)


def test_lp_exit_while_bad_debt_outstanding_reverts(protocol: World) -> None:
    p = protocol
    adl_book(p)
    total = int(p.bw.ch.functions.totalBadDebtWad().call())
    p.warp(_cooldown(p))
    with reverts("VaultBadDebtOutstanding", totalBadDebtWad=total):
        tx(p, p.bw.pool.functions.redeem(USDC, p.lp.address, p.lp.address), p.lp)
    assert p.bw.pool.functions.maxWithdraw(p.lp.address).call() == 0


def test_donation_inflation_attack_fails(protocol: World) -> None:
    p = protocol
    attacker, victim = p.traders[0], p.traders[1]
    pool = p.bw.pool
    for who in (attacker, victim):
        tx(p, p.bw.token.functions.approve(pool.address, MAX_UINT), who)
        tx(p, p.bw.token.functions.approve(p.bw.ch.address, MAX_UINT), who)
    tx(p, pool.functions.deposit(1, attacker.address), attacker)  # one unit of the token
    donation = 100_000 * USDC
    tx(
        p, p.bw.ch.functions.deposit(pool.address, donation), attacker
    )  # straight to the pool account
    tx(p, pool.functions.deposit(10_000 * USDC, victim.address), victim)
    assert pool.functions.balanceOf(victim.address).call() > 0
    p.warp(_cooldown(p))
    victim_value = pool.functions.previewRedeem(
        pool.functions.balanceOf(victim.address).call()
    ).call()
    attacker_value = pool.functions.previewRedeem(
        pool.functions.balanceOf(attacker.address).call()
    ).call()
    victim_loss = 10_000 * USDC - victim_value
    attacker_loss = donation + 1 - attacker_value
    assert 0 <= victim_loss < USDC // 10  # a few cents on 10,000
    assert attacker_loss > 10_000 * victim_loss  # the attack costs far more than it takes
    assert_conserved(p)


def test_deposit_into_an_insolvent_pool_reverts(protocol: World) -> None:
    p = protocol
    p.seed_pool(10_000)
    t = p.traders[0]
    p.fund_trader(t, 5_000)
    trade_wad(p, t, ETH, wad(9.9))  # near the exposure cap of 3 x 10,000
    p.set_price("ETH-USD", 4_500)  # the trader is up 14,850: more than the pool has
    equity = int(p.bw.ch.functions.poolEquityWad().call())
    assert equity < 0 and p.bw.pool.functions.totalAssets().call() == 0
    assert p.bw.pool.functions.maxDeposit(p.staker.address).call() == 0
    tx(p, p.bw.token.functions.approve(p.bw.pool.address, MAX_UINT), p.staker)
    # The revert reports the equity at the block the call is simulated in: funding may have accrued
    # for a second or two since `equity` was read, so only its sign is pinned here.
    with reverts("PoolInsolvent") as refused:
        tx(p, p.bw.pool.functions.deposit(1_000 * USDC, p.staker.address), p.staker)
    assert refused.value.error.args["equityWad"] < 0
    with reverts("PoolInsolvent") as refused:
        tx(p, p.bw.pool.functions.mint(10**12, p.staker.address), p.staker)
    assert refused.value.error.args["equityWad"] < 0
    p.set_price("ETH-USD", 3_000)  # solvent again: deposits reopen
    tx(p, p.bw.pool.functions.deposit(1_000 * USDC, p.staker.address), p.staker)
    assert_conserved(p)


def test_exit_is_priced_at_the_lower_of_equity_and_margin(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    pool = p.bw.pool
    t = p.traders[0]
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(20))  # fee 30: 24 to the pool
    p.warp(_cooldown(p))
    p.refresh_prices()
    p.set_price("ETH-USD", 2_700)  # the trader is down 6,000: the pool's equity is above its margin
    equity = int(p.bw.ch.functions.poolEquityWad().call())
    pool_margin = margin(p, pool.address)
    assert equity > pool_margin == 100_024 * WAD
    assert pool.functions.exitAssets().call() == pool_margin // 10**12
    shares = int(pool.functions.balanceOf(p.lp.address).call())
    at_equity = int(pool.functions.convertToAssets(shares).call())
    at_exit = int(pool.functions.previewRedeem(shares).call())
    assert at_exit < at_equity
    assert abs(at_exit - 100_024 * USDC) <= 1  # the margin, not the uncollected 6,000
    half = shares // 2  # the rest backs the open exposure
    paid = int(pool.functions.previewRedeem(half).call())
    assert abs(paid - at_exit // 2) <= 1
    before = p.bw.token.functions.balanceOf(p.lp.address).call()
    receipt = tx(p, pool.functions.redeem(half, p.lp.address, p.lp.address), p.lp)
    assert events(receipt, pool, "Withdraw")[0]["assets"] == paid
    assert p.bw.token.functions.balanceOf(p.lp.address).call() == before + paid
    assert_conserved(p)


def test_max_withdraw_is_exact_at_the_exposure_cap(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    pool = p.bw.pool
    t = p.traders[0]
    p.fund_trader(t, 30_000)
    trade_wad(p, t, ETH, wad(90))  # 270,000 of exposure against a cap of 3 x equity
    p.warp(_cooldown(p))
    p.refresh_prices()
    # as of the pending block, the one the withdrawal is simulated and mined in (the clock is
    # pinned: the funding accrued by then is the same in both)
    most = int(pool.functions.maxWithdraw(p.lp.address).call(block_identifier="pending"))
    assert (
        0
        < most
        < int(pool.functions.previewRedeem(pool.functions.balanceOf(p.lp.address).call()).call())
    )
    with reverts("VaultPoolExposure", marketId=ETH):
        tx(p, pool.functions.withdraw(most + 1, p.lp.address, p.lp.address), p.lp)
    tx(p, pool.functions.withdraw(most, p.lp.address, p.lp.address), p.lp)
    # at the cap now: only the funding accrued since (a few micro-units) could leave
    assert pool.functions.maxWithdraw(p.lp.address).call() < USDC // 1_000
    assert_conserved(p)


def test_max_views_return_zero_on_a_stale_feed(protocol: World) -> None:
    p = protocol
    p.seed_pool(10_000)
    t = p.traders[0]
    p.fund_trader(t, 1_000)
    trade_wad(p, t, ETH, wad(1))
    p.warp(_cooldown(p))  # the feeds are now older than their heartbeat
    pool = p.bw.pool
    with reverts("OracleStalePrice"):
        p.bw.call(pool.functions.totalAssets())
    assert pool.functions.maxDeposit(p.staker.address).call() == 0
    assert pool.functions.maxMint(p.staker.address).call() == 0
    assert pool.functions.maxWithdraw(p.lp.address).call() == 0
    assert pool.functions.maxRedeem(p.lp.address).call() == 0
    p.refresh_prices()
    assert pool.functions.maxRedeem(p.lp.address).call() > 0


def test_cli_pool_withdraw_reports_the_exit_value(
    protocol: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    p = protocol
    clear_cli_env(monkeypatch)
    deployment = p.bw.deployment.save(tmp_path / "deployment.json")
    rpc = str(p.bw.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    p.seed_pool(100_000)
    t = p.traders[0]
    p.fund_trader(t, 10_000)
    trade_wad(p, t, ETH, wad(20))
    p.warp(_cooldown(p))
    p.refresh_prices()
    p.set_price("ETH-USD", 2_700)  # the trader is down 6,000: equity above margin
    argv = ["pool", "withdraw", "1000", "--dev-account", "1", "--rpc", rpc]
    code = cli.main([*argv, "--deployment", str(deployment), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["withdrew"] == "1000"
    assert float(data["exit_value"]) < float(data["value"])
    code = cli.main(["pool", "withdraw", "1000000", *argv[3:], "--deployment", str(deployment)])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1
    assert "can withdraw at most" in err
