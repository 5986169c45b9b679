"""The insurance fund: staking, request-cooldown-claim paying min(value at request, value now), covering
bad debt in a new window, the cap and its sweep, donations, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import clear_cli_env
from eth_account.signers.local import LocalAccount
from helpers import (
    ETH,
    LONG,
    SHORT,
    adl_book,
    bad_debt,
    events,
    fund_assets,
    no_funding,
    one_event,
    reverts,
    set_fund_params,
    trade_wad,
    tx,
    wad,
)
from support import assert_conserved

from bulwark import cli
from bulwark.chain.contracts import WAD
from bulwark.core import riskmath as rm
from bulwark.devnet.world import MAX_UINT, USDC, World


def _request(p: World, who: LocalAccount, shares: int | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    fund = p.bw.fund
    if shares is None:
        shares = int(fund.functions.balanceOf(who.address).call())
    receipt = tx(p, fund.functions.requestUnstake(shares), who)
    ev = one_event(receipt, fund, "UnstakeRequested")
    return int(ev["requestId"]), ev


def _value(p: World, who: LocalAccount) -> int:
    shares = p.bw.fund.functions.balanceOf(who.address).call()
    return int(p.bw.fund.functions.convertToAssets(shares).call())


def _cooldown(p: World) -> int:
    return int(p.bw.fund.functions.cooldown().call())


def _gap_liquidation(p: World, index: int = 0) -> dict:  # type: ignore[type-arg]
    """A 1,000 USDC long of 6 ETH bankrupted by a fall to 2,700; returns the ShortfallSettled event."""
    t = p.traders[index]
    p.fund_trader(t, 1_000)
    trade_wad(p, t, ETH, wad(6))
    p.set_price("ETH-USD", 2_700)
    receipt = tx(p, p.bw.ch.functions.liquidate(t.address, ETH), p.keeper)
    p.set_price("ETH-USD", 3_000)
    return one_event(receipt, p.bw.ch, "ShortfallSettled")


def _padding_liquidation(p: World, index: int = 1) -> int:
    """A 400 USDC long of 2 ETH liquidated at 2,850 (not bankrupt); returns the padding."""
    t = p.traders[index]
    p.fund_trader(t, 400)
    trade_wad(p, t, ETH, wad(2))
    p.set_price("ETH-USD", 2_850)
    receipt = tx(p, p.bw.ch.functions.liquidate(t.address, ETH), p.keeper)
    p.set_price("ETH-USD", 3_000)
    return int(one_event(receipt, p.bw.ch, "Liquidated")["paddingWad"])


def test_stake_request_and_claim_after_cooldown(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.stake(10_000)
    shares = int(fund.functions.balanceOf(p.staker.address).call())
    assert fund.functions.totalAssets().call() == 10_000 * USDC
    assert fund.functions.maxRedeem(p.staker.address).call() == 0
    with reverts("FundUseRequestUnstake"):
        tx(p, fund.functions.redeem(shares, p.staker.address, p.staker.address), p.staker)
    with reverts("FundUseRequestUnstake"):
        tx(p, fund.functions.withdraw(1, p.staker.address, p.staker.address), p.staker)
    with reverts("FundZeroShares"):
        tx(p, fund.functions.requestUnstake(0), p.staker)
    rid, ev = _request(p, p.staker)
    assert ev["assets"] == 10_000 * USDC and ev["shares"] == shares
    with reverts("FundCooldownActive", requestId=rid, readyAt=ev["readyAt"]):
        tx(p, fund.functions.claim(rid), p.staker)
    with reverts("FundNotRequestOwner", requestId=rid, caller=p.lp.address):
        tx(p, fund.functions.claim(rid), p.lp)
    p.warp(_cooldown(p))
    before = p.bw.token.functions.balanceOf(p.staker.address).call()
    claimed = one_event(tx(p, fund.functions.claim(rid), p.staker), fund, "UnstakeClaimed")
    assert (claimed["assets"], claimed["forfeited"]) == (10_000 * USDC, 0)
    assert p.bw.token.functions.balanceOf(p.staker.address).call() == before + 10_000 * USDC
    with reverts("FundUnknownRequest", requestId=rid):
        tx(p, fund.functions.claim(rid), p.staker)
    assert_conserved(p)


def test_staker_who_requested_before_a_shortfall_still_bears_it(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.seed_pool(100_000)
    p.stake(10_000)
    rid, ev = _request(p, p.staker)
    settled = _gap_liquidation(p)
    assert settled["coveredWad"] == settled["shortfallWad"] > 0
    p.warp(_cooldown(p))
    value_now = int(fund.functions.convertToAssets(ev["shares"]).call())
    claimed = one_event(tx(p, fund.functions.claim(rid), p.staker), fund, "UnstakeClaimed")
    assert claimed["assets"] == value_now < ev["assets"]
    assert (
        ev["assets"] - claimed["assets"] >= settled["shortfallWad"] // 10**12 - 3 * USDC
    )  # less fee income
    assert_conserved(p)


def test_late_staker_cannot_take_padding_out_before_the_cooldown(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    early, late = p.staker, p.lp
    p.seed_pool(100_000)
    p.stake(10_000, early)
    p.stake(10_000, late)  # just before padding arrives
    padding = _padding_liquidation(p)
    assert padding > 0
    rid, ev = _request(p, late)
    assert ev["assets"] > 10_000 * USDC  # the request saw the padding
    with reverts("FundCooldownActive", requestId=rid, readyAt=ev["readyAt"]):
        tx(p, fund.functions.claim(rid), late)
    _gap_liquidation(p, index=2)  # a shortfall during the cooldown
    p.warp(_cooldown(p))
    value_now = int(fund.functions.convertToAssets(ev["shares"]).call())
    claimed = one_event(tx(p, fund.functions.claim(rid), late), fund, "UnstakeClaimed")
    assert claimed["assets"] == min(ev["assets"], value_now) == value_now < 10_000 * USDC
    assert_conserved(p)


def test_claim_forfeits_gains_made_during_the_cooldown(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.seed_pool(100_000)
    p.stake(10_000, p.staker)
    p.stake(10_000, p.lp)
    rid, ev = _request(p, p.lp)
    _padding_liquidation(p)
    p.warp(_cooldown(p))
    value_now = int(fund.functions.convertToAssets(ev["shares"]).call())
    assert value_now > ev["assets"]
    stayer_before = int(
        fund.functions.previewRedeem(fund.functions.balanceOf(p.staker.address).call()).call()
    )
    claimed = one_event(tx(p, fund.functions.claim(rid), p.lp), fund, "UnstakeClaimed")
    assert (claimed["assets"], claimed["forfeited"]) == (ev["assets"], value_now - ev["assets"])
    stayer_after = int(
        fund.functions.previewRedeem(fund.functions.balanceOf(p.staker.address).call()).call()
    )
    assert (
        stayer_after >= stayer_before + claimed["forfeited"] - 1
    )  # the forfeit stays with the stayer
    assert_conserved(p)


def test_claim_reverts_while_bad_debt_outstanding(protocol: World) -> None:
    p = protocol
    p.seed_pool(100_000)
    p.stake(1_000)
    rid, _ = _request(p, p.staker, 10**9)
    settled = _gap_liquidation(p)  # half of 1,000 available: the rest is bad debt
    assert settled["badDebtWad"] > 0
    p.warp(_cooldown(p))
    total = int(p.bw.ch.functions.totalBadDebtWad().call())
    with reverts("VaultBadDebtOutstanding", totalBadDebtWad=total):
        tx(p, p.bw.fund.functions.claim(rid), p.staker)


def test_cover_bad_debt_after_the_window_rolls(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.seed_pool(100_000)
    p.stake(1_000)
    settled = _gap_liquidation(p)
    debt = settled["badDebtWad"]
    assert bad_debt(p, ETH, LONG) == debt > 0
    with reverts("BadDebtFundEmpty", marketId=ETH, side=LONG):
        tx(p, p.bw.ch.functions.coverBadDebt(ETH, LONG), p.keeper)
    with reverts("BadDebtNone", marketId=ETH, side=SHORT):
        tx(p, p.bw.ch.functions.coverBadDebt(ETH, SHORT), p.keeper)
    p.warp(int(fund.functions.windowDuration().call()))
    assets = fund_assets(p)
    cap = rm.mul_wad_down(assets, int(fund.functions.windowCapRatioWad().call()))
    assert fund.functions.availableWad().call() == cap
    receipt = tx(p, p.bw.ch.functions.coverBadDebt(ETH, LONG), p.keeper)
    covered = min(debt, cap)
    ev = one_event(receipt, p.bw.ch, "BadDebtCovered")
    assert (ev["marketId"], ev["side"], ev["amountWad"]) == (ETH, LONG, covered)
    assert ev["totalBadDebtWad"] == debt - covered == bad_debt(p, ETH, LONG)
    paid = one_event(receipt, fund, "ShortfallCovered")
    assert (paid["shortfallWad"], paid["paidWad"], paid["windowCapWad"]) == (debt, covered, cap)
    assert fund_assets(p) == assets - covered
    assert_conserved(p)


def test_cover_shortfall_only_from_the_clearing_house(protocol: World) -> None:
    p = protocol
    with reverts("FundUnauthorized", caller=p.keeper.address):
        tx(p, p.bw.fund.functions.coverShortfall(1), p.keeper)


def test_cap_stops_staking_and_surplus_is_swept(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.stake(1_000)
    cap = int(fund.functions.capAssets().call())
    with reverts("FundBelowCap", assets=1_000 * USDC, capAssets=cap):
        tx(p, fund.functions.sweepSurplus(), p.keeper)
    set_fund_params(p, cap=400 * USDC)
    assert fund.functions.maxDeposit(p.staker.address).call() == 0
    with reverts("ERC4626ExceededMaxDeposit", receiver=p.staker.address, assets=USDC, max=0):
        tx(p, fund.functions.deposit(USDC, p.staker.address), p.staker)
    treasury = fund.functions.treasury().call()
    before = p.bw.token.functions.balanceOf(treasury).call()
    receipt = tx(p, fund.functions.sweepSurplus(), p.keeper)
    assert one_event(receipt, fund, "SurplusSwept")["assets"] == 600 * USDC
    assert p.bw.token.functions.balanceOf(treasury).call() == before + 600 * USDC
    assert fund.functions.totalAssets().call() == 400 * USDC
    assert_conserved(p)


def test_donation_raises_assets_not_shares(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.stake(1_000)
    supply = fund.functions.totalSupply().call()
    tx(p, p.bw.token.functions.approve(fund.address, MAX_UINT), p.lp)
    receipt = tx(p, fund.functions.donate(500 * USDC), p.lp)
    assert one_event(receipt, fund, "Donated")["assets"] == 500 * USDC
    assert fund.functions.totalSupply().call() == supply
    assert fund_assets(p) == 1_500 * WAD
    assert_conserved(p)


def test_donation_inflation_attack_fails(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    attacker, victim = p.traders[0], p.traders[1]
    for who in (attacker, victim):
        tx(p, p.bw.token.functions.approve(fund.address, MAX_UINT), who)
    tx(p, fund.functions.deposit(1, attacker.address), attacker)
    donation = 100_000 * USDC
    tx(p, fund.functions.donate(donation), attacker)
    tx(p, fund.functions.deposit(10_000 * USDC, victim.address), victim)
    victim_value = fund.functions.previewRedeem(
        fund.functions.balanceOf(victim.address).call()
    ).call()
    attacker_value = fund.functions.previewRedeem(
        fund.functions.balanceOf(attacker.address).call()
    ).call()
    victim_loss = 10_000 * USDC - victim_value
    assert 0 <= victim_loss < USDC // 10
    assert donation + 1 - attacker_value > 10_000 * victim_loss
    assert (
        len(events(tx(p, fund.functions.requestUnstake(1), attacker), fund, "UnstakeRequested"))
        == 1
    )
    assert_conserved(p)


def test_worked_example_fund_cap_bad_debt_cover_and_socialise(protocol: World) -> None:
    """The numbers of docs/protocol.md, "Worked example A" (funding switched off to pin them)."""
    p = protocol
    fund = p.bw.fund
    no_funding(p)
    p.stake(1_000)
    adl_book(p)  # same book as example B, but 1,000 staked: shortfall 809
    ch = p.bw.ch
    assert bad_debt(p, ETH, LONG) == wad(307.2)  # 809 - 501.8 (half of 1,003.6)
    assert fund_assets(p) == wad(501.8)
    p.warp(int(fund.functions.windowDuration().call()))
    receipt = tx(p, ch.functions.coverBadDebt(ETH, LONG), p.keeper)
    assert one_event(receipt, ch, "BadDebtCovered")["amountWad"] == wad(250.9)  # half of 501.8
    assert bad_debt(p, ETH, LONG) == wad(56.3)
    pool = ch.functions.pool().call()
    pool_margin = int(ch.functions.marginOf(pool).call())
    receipt = tx(p, ch.functions.socializeBadDebt(ETH, LONG), p.keeper)  # the 24 h grace has passed
    assert one_event(receipt, ch, "BadDebtSocialized")["amountWad"] == wad(56.3)
    assert ch.functions.marginOf(pool).call() == pool_margin - wad(56.3)
    assert ch.functions.totalBadDebtWad().call() == 0
    assert_conserved(p)


def test_claim_window_passes_then_anyone_lapses_the_request(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.stake(10_000)
    shares = int(fund.functions.balanceOf(p.staker.address).call())
    rid, ev = _request(p, p.staker)
    window = int(fund.functions.claimWindow().call())
    assert ev["claimUntil"] == ev["readyAt"] + window
    assert fund.functions.reservedAssets().call() == 10_000 * USDC
    p.warp(_cooldown(p) + window)
    with reverts("FundClaimWindowPassed", requestId=rid, endedAt=ev["claimUntil"]):
        tx(p, fund.functions.claim(rid), p.staker)
    lapsed = one_event(tx(p, fund.functions.lapse(rid), p.keeper), fund, "UnstakeLapsed")
    assert (lapsed["owner"], lapsed["shares"], lapsed["caller"]) == (
        p.staker.address,
        shares,
        p.keeper.address,
    )
    assert fund.functions.balanceOf(p.staker.address).call() == shares
    assert fund.functions.reservedAssets().call() == 0
    assert fund.functions.freeAssetsWad().call() == fund_assets(p)
    assert_conserved(p)


def test_matured_request_does_not_back_the_fund_promise(protocol: World) -> None:
    p = protocol
    fund = p.bw.fund
    p.seed_pool(100_000)
    p.stake(10_000, p.staker)
    p.stake(10_000, p.lp)
    rid, _ = _request(p, p.staker)
    ratio = int(fund.functions.windowCapRatioWad().call())
    # in its cooldown the request still backs the window: all 20,000 do
    assert fund.functions.availableWad().call() == rm.mul_wad_down(20_000 * WAD, ratio)
    p.warp(_cooldown(p))
    # matured, its owner can leave at will: only the 10,000 that stay back the promise
    assert fund.functions.freeAssetsWad().call() == 10_000 * WAD
    assert fund.functions.availableWad().call() == rm.mul_wad_down(10_000 * WAD, ratio)
    tx(p, fund.functions.claim(rid), p.staker)
    assert fund.functions.availableWad().call() == rm.mul_wad_down(10_000 * WAD, ratio)
    assert_conserved(p)


def test_cli_fund_claim_explains_a_lapsed_request(
    protocol: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    p = protocol
    clear_cli_env(monkeypatch)
    deployment = p.bw.deployment.save(tmp_path / "deployment.json")
    rpc = str(p.bw.w3.provider.endpoint_uri)  # type: ignore[attr-defined]

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main([*argv, "--rpc", rpc, "--deployment", str(deployment)])
        out, err = capsys.readouterr()
        return code, out, err

    p.stake(5_000)
    rid, ev = _request(p, p.staker)
    code, out, _ = run("fund", "status", p.staker.address, "--json")
    assert code == 0
    status = json.loads(out)
    assert status["claim_window_seconds"] == int(p.bw.fund.functions.claimWindow().call())
    assert status["holder"]["requests"][0]["state"] == "cooldown"
    assert status["holder"]["requests"][0]["claim_until"] == ev["claimUntil"]
    code, out, _ = run("fund", "status", p.staker.address)
    assert code == 0 and "then a claim window of 7d 0h" in out
    assert f"request #{rid}: " in out and "claimable from" in out
    p.warp(ev["claimUntil"] - ev["readyAt"] + _cooldown(p))
    code, out, err = run("fund", "claim", str(rid), "--dev-account", "2")
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"request #{rid} lapsed: its claim window closed" in err
    assert f"`bulwark fund lapse {rid}`" in err
    code, out, err = run("fund", "lapse", str(rid), "--dev-account", "3", "--json")
    assert code == 0, err
    assert json.loads(out)["owner"] == p.staker.address
    code, out, err = run("fund", "claim", str(rid), "--dev-account", "2")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert f"request #{rid} lapsed" in err and "staked again" in err


def test_payout_after_a_request_matured_is_borne_by_the_stakers_who_stay(protocol: World) -> None:
    """The matured request is spared the payout; the liability it is owed is charged to the other shares,
    so the request's claim and the stayer's shares together fit in the fund."""
    p = protocol
    fund = p.bw.fund
    p.seed_pool(100_000)
    p.stake(10_000, p.staker)
    p.stake(10_000, p.lp)
    rid, ev = _request(p, p.staker)
    p.warp(_cooldown(p))
    p.refresh_prices()
    supply = int(fund.functions.totalSupply().call())
    settled = _gap_liquidation(p)
    paid = int(settled["coveredWad"])
    assert paid > 0
    bearing = supply + 10**6 - ev["shares"]
    per_share = -(-paid * WAD // bearing)
    assert fund.functions.sparedWad().call() == -(-ev["shares"] * per_share // WAD)
    margin = int(fund.functions.totalAssets().call())
    spared = int(fund.functions.sparedWad().call())
    share_assets = int(fund.functions.shareAssets().call())
    assert share_assets == (fund.functions.assetsWad().call() - spared) // 10**12
    owed = int(fund.functions.claimable(rid).call())
    assert owed == ev["assets"] == 10_000 * USDC  # spared: its value at request
    stayer = _value(p, p.lp)
    # the stayer bore the whole payout (less its part of the fee income)
    assert stayer <= 10_000 * USDC - paid // 10**12 + 3 * USDC
    assert owed + stayer <= margin
    claimed = one_event(tx(p, fund.functions.claim(rid), p.staker), fund, "UnstakeClaimed")
    assert claimed["assets"] == owed
    assert fund.functions.sparedWad().call() <= 1
    after = _value(p, p.lp)
    assert abs(after - int(fund.functions.totalAssets().call())) <= 1
    assert_conserved(p)
