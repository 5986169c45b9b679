"""Attacks on the deployed protocol (bulwark/devnet/deploy.py parameters) on a real Anvil node. Each test
states the attack and shows that it fails or that its damage is bounded. The same attacks, and
more, run in Solidity under test/foundry/attacks (tests/test_forge.py)."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount
from support import assert_conserved
from web3.logs import DISCARD

from bulwark.chain.contracts import WAD, TxReverted
from bulwark.devnet.world import USDC, World

ETH = "ETH-USD"
WINDOW_CAP_RATIO = WAD // 2  # DeployParams.fund_window_cap_ratio


def _margin(p: World, who: str) -> int:
    return int(p.bw.ch.functions.marginOf(who).call())


def _liquidate(p: World, account: LocalAccount) -> None:
    p.bw.send(p.bw.ch.functions.liquidate(account.address, p.bw.market_id(ETH)), p.keeper)


def _revert_name(exc: pytest.ExceptionInfo[TxReverted]) -> str:
    return exc.value.error.name


def test_mango_style_oracle_spike_drains_at_most_one_window(protocol: World) -> None:
    """Attack (Mango Markets, Oct 2022): hold both sides of ETH from two accounts, print a +50%
    price, let the short go bankrupt and cash the long's mirror profit out of the insurance fund.
    Bounded: the fund pays at most its window cap (half its assets), the rest is bad debt that the
    long's own close pays back first, and nothing is withdrawn while debt is outstanding."""
    p = protocol
    long_acct, short_acct = p.traders[0], p.traders[1]
    p.seed_pool(900_000)
    p.stake(100_000)
    for acct in (long_acct, short_acct):
        p.fund_trader(acct, 100_000)
    p.trade(long_acct, ETH, 500)
    p.trade(short_acct, ETH, -500)
    fund = p.bw.fund.address
    fund_before = _margin(p, fund)
    window_cap = fund_before * WINDOW_CAP_RATIO // WAD

    p.set_price(ETH, 4500)
    _liquidate(p, short_acct)
    assert fund_before - _margin(p, fund) <= window_cap
    assert p.bw.ch.functions.totalBadDebtWad().call() > 500_000 * WAD

    with pytest.raises(TxReverted) as exc:
        p.bw.send(p.bw.ch.functions.withdraw(1 * USDC, long_acct.address), long_acct)
    assert _revert_name(exc) == "VaultBadDebtOutstanding"

    p.trade(long_acct, ETH, -500)  # the close pays the debt out of its profit first
    assert p.bw.ch.functions.totalBadDebtWad().call() == 0
    out = _margin(p, long_acct.address) // p.bw.token_scale
    p.bw.send(p.bw.ch.functions.withdraw(out, long_acct.address), long_acct)
    gain = out - 200_000 * USDC
    assert gain <= window_cap // p.bw.token_scale
    assert_conserved(p)


def test_batch_liquidation_griefing_entries_are_skipped(protocol: World) -> None:
    """Attack: put a healthy account, an unknown market, the pool and a duplicate into a batch so
    that the one liquidatable account in it escapes. Each bad entry is skipped; the keeper is paid
    once."""
    p = protocol
    victim, healthy = p.traders[2], p.traders[3]
    p.seed_pool(500_000)
    p.fund_trader(victim, 20_000)
    p.fund_trader(healthy, 20_000)
    p.trade(victim, ETH, 100)
    p.trade(healthy, ETH, 10)
    p.set_price(ETH, 2700)  # victim under water
    ch = p.bw.ch
    eth = p.bw.market_id(ETH)
    accounts = [healthy.address, victim.address, p.bw.pool.address, victim.address, victim.address]
    markets = [eth, 99, eth, eth, eth]
    receipt = p.bw.send(ch.functions.liquidateBatch(accounts, markets), p.keeper)
    skipped = ch.events.LiquidationSkipped().process_receipt(receipt, errors=DISCARD)
    liquidated = ch.events.Liquidated().process_receipt(receipt, errors=DISCARD)
    assert len(skipped) == 4
    assert [e["args"]["account"] for e in liquidated] == [victim.address]
    assert ch.functions.positionOf(victim.address, eth).call()[0] == 0
    assert _margin(p, p.keeper.address) == liquidated[0]["args"]["rewardWad"]
    assert_conserved(p)


def test_liquidation_on_stale_price_is_refused(protocol: World) -> None:
    """Attack: liquidate on a price older than the heartbeat (a feed that stopped updating after a
    crash), when the account may have recovered. Refused; the keeper's confirmation view refuses
    too."""
    p = protocol
    victim = p.traders[4]
    p.seed_pool(500_000)
    p.fund_trader(victim, 20_000)
    p.trade(victim, ETH, 100)
    p.set_price(ETH, 2700)
    p.warp(3601)
    with pytest.raises(TxReverted) as exc:
        _liquidate(p, victim)
    assert _revert_name(exc) == "OracleStalePrice"
    with pytest.raises(TxReverted) as exc:
        p.bw.call(p.bw.ch.functions.healthsOf([victim.address]))
    assert _revert_name(exc) == "OracleStalePrice"


def test_healthy_account_cannot_be_liquidated(protocol: World) -> None:
    """Attack: a keeper liquidates a healthy account to collect the reward and the penalty."""
    p = protocol
    trader = p.traders[5]
    p.seed_pool(500_000)
    p.fund_trader(trader, 20_000)
    p.trade(trader, ETH, 20)
    with pytest.raises(TxReverted) as exc:
        _liquidate(p, trader)
    assert _revert_name(exc) == "LiquidationAccountHealthy"
    assert _margin(p, p.keeper.address) == 0
