"""Test helpers on top of the `protocol` fixture: decoded reverts, events, chain reads in riskmath types,
and the few multi-step set-ups (an open book, a bankrupt account) that many tests share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract
from web3.exceptions import LogTopicError, MismatchedABI
from web3.types import TxReceipt

from bulwark.chain.contracts import WAD, TxReverted
from bulwark.chain.rpc import Calls, rpc_batch
from bulwark.core import riskmath as rm
from bulwark.devnet.world import MAX_UINT, USDC
from bulwark.devnet.world import World as Protocol

ETH, BTC = 0, 1
LONG, SHORT = 0, 1


GAS = 3_000_000


def tx(p: Protocol, fn: Any, signer: LocalAccount) -> TxReceipt:
    """Sends with a fixed gas limit (a call that accrues funding costs more in a block with a new
    timestamp than in the block its estimate ran on; reverts are still caught by the estimate), then
    checks the vault conservation law on the state it left."""
    receipt = p.bw.send(fn, signer, gas=GAS)
    assert_vault_conserved(p)
    return receipt


def assert_vault_conserved(p: Protocol) -> None:
    """token balance (WAD) + bad debt == sum of margins, over every account these tests use (the ten
    dev accounts, the pool and the fund). The full check, mirror included, is `assert_conserved`."""
    bw = p.bw
    token, ch = Calls(bw.token), Calls(bw.ch)
    block = bw.w3.eth.block_number  # one block for every read
    requests = [
        token.request("balanceOf", [bw.ch.address], block),
        ch.request("totalBadDebtWad", [], block),
        *(ch.request("marginOf", [a], block) for a in _accounts(p)),
    ]
    balance_reply, debt_reply, *margin_replies = rpc_batch(bw.w3, requests)
    balance = token.decode("balanceOf", balance_reply)
    debt = ch.decode("totalBadDebtWad", debt_reply)
    margins = [ch.decode("marginOf", r) for r in margin_replies]
    gap = int(balance) * bw.token_scale + int(debt) - sum(int(m) for m in margins)
    assert gap == 0, f"vault conservation broken by {gap} wei"


def _accounts(p: Protocol) -> list[str]:
    key = p.bw.ch.address
    if key not in _ACCOUNTS:
        dev = [p.admin, p.lp, p.staker, p.keeper, *p.traders]
        _ACCOUNTS[key] = [a.address for a in dev] + [p.bw.pool.address, p.bw.fund.address]
    return _ACCOUNTS[key]


_ACCOUNTS: dict[str, list[str]] = {}


@contextmanager
def reverts(name: str, /, **args: Any) -> Iterator[pytest.ExceptionInfo[TxReverted]]:
    """Expects a TxReverted whose decoded custom error is `name` with (at least) these arguments."""
    with pytest.raises(TxReverted) as info:
        yield info
    err = info.value.error
    assert err.name == name, f"expected {name}, got {err}"
    for key, want in args.items():
        assert key in err.args, f"{name} has no argument {key}: {err}"
        got = err.args[key]
        if isinstance(got, bytes) and isinstance(want, str):
            got = got.rstrip(b"\0").decode()
        if isinstance(got, str) and isinstance(want, str) and want.startswith("0x"):
            got, want = got.lower(), want.lower()
        assert got == want, f"{name}.{key}: {got!r} != {want!r}"


def events(receipt: TxReceipt, contract: Contract, name: str) -> list[dict[str, Any]]:
    """The decoded `name` events `contract` emitted in the receipt, in order."""
    event = getattr(contract.events, name)()
    out = []
    for log in receipt["logs"]:
        if log["address"] != contract.address:
            continue
        try:
            decoded = event.process_log(log)
        except (MismatchedABI, LogTopicError):  # another event of the same contract
            decoded = None
        if decoded is not None:
            out.append(dict(decoded["args"]))
    return out


def one_event(receipt: TxReceipt, contract: Contract, name: str) -> dict[str, Any]:
    found = events(receipt, contract, name)
    assert len(found) == 1, f"expected one {name}, got {len(found)}"
    return found[0]


def margin(p: Protocol, who: str) -> int:
    return int(p.bw.ch.functions.marginOf(who).call())


def position(p: Protocol, who: str, market: int = ETH) -> rm.Position:
    return rm.Position.from_tuple(p.bw.ch.functions.positionOf(who, market).call())


def health(p: Protocol, who: str) -> tuple[int, int, int, bool]:
    h = p.bw.ch.functions.healthOf(who).call()
    return int(h[0]), int(h[1]), int(h[2]), bool(h[3])


def fund_assets(p: Protocol) -> int:
    return int(p.bw.fund.functions.assetsWad().call())


def bad_debt(p: Protocol, market: int, side: int) -> int:
    return int(p.bw.ch.functions.badDebtOf(market, side).call())


def configs(p: Protocol, block: int | str = "latest") -> list[rm.MarketConfig]:
    ch = p.bw.ch
    n = ch.functions.marketCount().call(block_identifier=block)
    return [
        rm.MarketConfig.from_tuple(ch.functions.marketConfig(m).call(block_identifier=block))
        for m in range(n)
    ]


def risk(p: Protocol) -> rm.RiskParams:
    return rm.RiskParams.from_tuple(p.bw.ch.functions.riskParams().call())


@dataclass
class View:
    """Everything riskmath needs about an account, read at one block and evaluated at `now`."""

    margin: int
    positions: dict[int, rm.Position]
    prices: dict[int, int]
    indices: dict[int, int]
    configs: list[rm.MarketConfig]

    def health(self) -> rm.Health:
        return rm.health(self.margin, self.positions, self.prices, self.indices, self.configs)

    def adl_score(self, market: int) -> int:
        return rm.account_adl_score(
            market, self.margin, self.positions, self.prices, self.indices, self.configs
        )


def view(p: Protocol, who: str, block: int | str = "latest", now: int | None = None) -> View:
    """Reads `who` at `block` and computes funding indices at timestamp `now` (default: that block's)."""
    ch = p.bw.ch
    cfgs = configs(p, block)
    stamp = p.bw.w3.eth.get_block(block)["timestamp"] if now is None else now
    positions: dict[int, rm.Position] = {}
    prices: dict[int, int] = {}
    indices: dict[int, int] = {}
    for m in range(len(cfgs)):
        price = int(p.bw.oracle.functions.priceWad(m).call(block_identifier=block))
        state = rm.MarketState.from_tuple(ch.functions.marketState(m).call(block_identifier=block))
        prices[m] = price
        indices[m] = rm.funding_index_now(state, cfgs[m], price, stamp)
        positions[m] = rm.Position.from_tuple(
            ch.functions.positionOf(who, m).call(block_identifier=block)
        )
    return View(
        int(ch.functions.marginOf(who).call(block_identifier=block)),
        positions,
        prices,
        indices,
        cfgs,
    )


def trade_wad(
    p: Protocol, trader: LocalAccount, market: int, size_wad: int, limit: int | None = None
) -> TxReceipt:
    """A trade with an exact WAD size; the limit defaults to no slippage bound."""
    if limit is None:
        limit = MAX_UINT if size_wad > 0 else 0
    return tx(p, p.bw.ch.functions.trade(market, size_wad, limit), trader)


def set_risk(p: Protocol, **changes: int) -> TxReceipt:
    cur = risk(p)
    fields = {**cur.__dict__, **changes}
    t = (
        fields["fund_fee_share"],
        fields["pool_exposure_multiple"],
        fields["keeper_share"],
        fields["socialize_grace_period"],
        fields["reward_floor"],
        fields["reward_ceiling"],
    )
    return tx(p, p.bw.ch.functions.setRiskParams(t), p.admin)


def config_tuple(cfg: rm.MarketConfig) -> tuple[int, ...]:
    return tuple(cfg.__dict__.values())


def set_market(p: Protocol, market: int, **changes: int) -> TxReceipt:
    cfg = configs(p)[market]
    new = rm.MarketConfig(**{**cfg.__dict__, **changes})
    return tx(p, p.bw.ch.functions.setMarketConfig(market, config_tuple(new)), p.admin)


def set_fund_params(p: Protocol, **changes: Any) -> TxReceipt:
    f = p.bw.fund.functions
    cur = {
        "cooldown": f.cooldown().call(),
        "window": f.windowDuration().call(),
        "ratio": f.windowCapRatioWad().call(),
        "cap": f.capAssets().call(),
        "treasury": f.treasury().call(),
    }
    cur.update(changes)
    fn = f.setParams(cur["cooldown"], cur["window"], cur["ratio"], cur["cap"], cur["treasury"])
    return tx(p, fn, p.admin)


def book(p: Protocol, pool_usdc: int = 1_000_000, traders: Sequence[tuple[int, int]] = ()) -> None:
    """Seeds the pool and funds traders: each entry is (trader index, USDC)."""
    p.seed_pool(pool_usdc)
    for index, usdc in traders:
        p.fund_trader(p.traders[index], usdc)


def bankrupt_long(p: Protocol, trader: LocalAccount, usdc: int, size: float, price: float) -> None:
    """Funds `trader`, opens a long of `size` ETH at the current price, then moves ETH to `price`."""
    p.fund_trader(trader, usdc)
    trade_wad(p, trader, ETH, wad(size))
    p.set_price("ETH-USD", price)


def wad(x: float | str) -> int:
    """Human units to WAD through the decimal text, so wad(4995.5) is exact."""
    return int(Decimal(str(x)) * WAD)


def tokens(x: int) -> int:
    return x * USDC


def no_funding(p: Protocol) -> None:
    """Sets every market's funding rate to zero, so equity does not drift between blocks."""
    for m in range(len(configs(p))):
        set_market(p, m, max_funding_rate_per_day=0)


@dataclass
class AdlBook:
    """A bankrupt long left bad debt on ETH's long side with an empty fund; three shorts profit."""

    victim: LocalAccount
    shorts: list[LocalAccount]
    debt: int


def adl_book(p: Protocol, crash_to: float = 2_700) -> AdlBook:
    """Victim: 1,000 USDC, long 6 ETH. Shorts: (500, 2 ETH), (5,000, 3 ETH), (1,000, 1 ETH).
    ETH falls from 3,000 to `crash_to`; the keeper liquidates the victim; nothing is staked, so the
    whole shortfall becomes bad debt."""
    victim, s1, s2, s3 = p.traders[0], p.traders[1], p.traders[2], p.traders[3]
    p.seed_pool(1_000_000)
    for trader, usdc, size in ((s1, 500, -2), (s2, 5_000, -3), (s3, 1_000, -1), (victim, 1_000, 6)):
        p.fund_trader(trader, usdc)
        trade_wad(p, trader, ETH, wad(size))
    p.set_price("ETH-USD", crash_to)
    tx(p, p.bw.ch.functions.liquidate(victim.address, ETH), p.keeper)
    debt = bad_debt(p, ETH, LONG)
    assert debt > 0
    return AdlBook(victim, [s1, s2, s3], debt)
