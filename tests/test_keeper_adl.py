"""Bad debt: ADL in the contract's order until zero, cover from a refilled fund, socialise at last."""

from __future__ import annotations

import pytest

from bulwark.chain.contracts import Bulwark, dev_account
from bulwark.core import riskmath as rm
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World, trader_key
from bulwark.keeper import invariants
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import Keeper

KEEPER = dev_account(3)
LONG, SHORT = 0, 1
GRACE = 24 * 3600


@pytest.fixture
def chain(anvil: AnvilNode, bw: Bulwark) -> World:
    c = World(anvil, bw)
    c.seed_pool(500_000)
    return c


def bankrupt_longs(chain: World, count: int) -> list[str]:
    """18x longs that a 10% fall leaves deep below zero."""
    longs = [chain.new_trader(i, 1_000, "adl-long") for i in range(count)]
    for t in longs:
        chain.trade(t, "ETH-USD", 6)
    return [t.address for t in longs]


def refresh_feeds(chain: World) -> None:
    for market, feed in chain.bw.feeds.items():
        chain.set_price(market, feed.functions.latestAnswer().call() / 10**8)


def test_fund_exhausted_adl_runs_in_score_order_until_bad_debt_is_zero(chain: World) -> None:
    # given shorts of one margin but different sizes (different leverage, so different scores),
    # longs that a crash bankrupts, and an insurance fund holding only a few fees
    shorts = [chain.new_trader(i, 2_000, "adl-short") for i in range(6)]
    for n, t in enumerate(shorts):
        chain.trade(t, "ETH-USD", -(1 + n * 0.8))
    bankrupt_longs(chain, 5)
    k = Keeper(chain.bw, KEEPER, KeeperSettings(adl_max_targets=2))  # several ADL transactions
    k.run_once()

    # when ETH falls 10%
    start = chain.set_price("ETH-USD", 2700)["blockNumber"]
    result = k.run_once()

    # then the longs were liquidated into bad debt the fund could not cover, and ADL cleared it
    assert chain.events("BadDebtRecorded", start)
    steps = chain.events("AutoDeleveraged", start)
    assert steps and [s["args"]["account"] for s in steps] == [s.account for s in result.adl_steps]
    assert chain.bw.ch.functions.totalBadDebtWad().call() == 0 and result.bad_debt_wad == 0
    assert steps[-1]["args"]["badDebtRemainingWad"] == 0
    assert len(steps) >= 4 and k.metrics.adl_score_mismatches._value.get() == 0
    # in exactly the contract's order: the ranking of adlScoresOf just before each ADL transaction
    by_tx: dict[bytes, list] = {}  # type: ignore[type-arg]
    for s in steps:
        by_tx.setdefault(s["transactionHash"], []).append(s)
    addresses = [t.address for t in shorts]
    for tx_steps in by_tx.values():
        before = tx_steps[0]["blockNumber"] - 1
        scores = chain.bw.ch.functions.adlScoresOf(0, addresses).call(block_identifier=before)
        ranked = rm.rank_adl(dict(zip(addresses, scores, strict=True)))
        assert [s["args"]["account"] for s in tx_steps] == ranked[: len(tx_steps)]
        emitted = [s["args"]["scoreWad"] for s in tx_steps]
        assert emitted == sorted(emitted, reverse=True) and len(set(emitted)) == len(emitted)
    assert len(by_tx) >= 2
    # the fund had nothing available whenever ADL ran, and conservation holds
    assert all(
        chain.bw.fund.functions.availableWad().call(block_identifier=s["blockNumber"] - 1) == 0
        for s in steps
    )
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()


def make_bad_debt_without_keeper(chain: World, with_shorts: bool) -> None:
    """Bad debt on the long side, liquidated by someone else so the keeper has not touched it yet."""
    if with_shorts:
        t = chain.new_trader(0, 5_000, "cover-short")
        chain.trade(t, "ETH-USD", -3)
    longs = bankrupt_longs(chain, 2)
    chain.set_price("ETH-USD", 2700)
    chain.send(chain.bw.ch.functions.liquidateBatch(longs, [0, 0]), dev_account(5))
    assert chain.bw.ch.functions.badDebtOf(0, LONG).call() > 0
    assert chain.bw.fund.functions.availableWad().call() == 0


def test_a_refilled_fund_covers_bad_debt_before_any_adl(chain: World) -> None:
    # given bad debt, a profitable short that ADL could take from, and a fund restocked in a new window
    make_bad_debt_without_keeper(chain, with_shorts=True)
    chain.stake(100_000)
    chain.next_block_after(24 * 3600 + 1)  # the fund's payout window rolls over
    refresh_feeds(chain)
    assert chain.bw.fund.functions.availableWad().call() > 0
    debt = chain.bw.ch.functions.totalBadDebtWad().call()
    start = chain.w3.eth.block_number

    # when the keeper runs
    result = Keeper(chain.bw, KEEPER, KeeperSettings()).run_once()

    # then the fund paid it all and nobody was deleveraged
    assert result.covered_wad == debt and result.bad_debt_wad == 0
    assert result.adl_steps == [] and chain.events("AutoDeleveraged", start) == []
    assert [e["args"]["amountWad"] for e in chain.events("BadDebtCovered", start)] == [debt]
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()


def test_bad_debt_with_no_target_is_socialised_only_after_the_grace_period(chain: World) -> None:
    # given bad debt on the long side and no profitable short to deleverage
    make_bad_debt_without_keeper(chain, with_shorts=False)
    debt = chain.bw.ch.functions.totalBadDebtWad().call()
    k = Keeper(chain.bw, KEEPER, KeeperSettings())

    # when the keeper runs inside the grace period, then it waits
    early = k.run_once()
    assert early.socialized_wad == 0 and early.adl_steps == [] and early.bad_debt_wad == debt

    # when the grace period has passed, then what the fund cannot pay is socialised to the pool
    chain.next_block_after(GRACE + 1)
    refresh_feeds(chain)
    late = k.run_once()
    assert late.bad_debt_wad == 0 and chain.bw.ch.functions.totalBadDebtWad().call() == 0
    assert late.socialized_wad > 0 and late.socialized_wad + late.covered_wad == debt
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()


def test_a_backup_keeper_leaves_bad_debt_to_keeper_zero_for_a_while(chain: World) -> None:
    # given bad debt with a profitable short to deleverage, seen by keeper 1 of 2
    make_bad_debt_without_keeper(chain, with_shorts=True)
    settings = KeeperSettings(keeper_count=2, keeper_index=1, backup_delay_blocks=2)
    role = chain.bw.ch.functions.ADL_KEEPER_ROLE().call()
    chain.send(chain.bw.ch.functions.grantRole(role, dev_account(4).address), chain.admin)
    backup = Keeper(chain.bw, dev_account(4), settings)

    # when it runs at once, then it leaves the work to keeper 0
    first = backup.run_once()
    assert first.adl_steps == [] and first.bad_debt_wad > 0

    # when the debt is still there two blocks later, then it steps in
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    late = backup.run_once()
    assert [s.account for s in late.adl_steps] == [trader_key(0, "cover-short").address]
    assert late.bad_debt_wad == first.bad_debt_wad - late.adl_steps[0].haircut


def crash_in_waves(chain: World) -> dict[str, list[str]]:
    """A book that one crash (ETH and BTC -10%) leaves needing several rounds of keeper work.

    - bankrupt: 18x ETH longs, deep below zero: bad debt the fund (only fees, capped) cannot pay.
    - waves: 1 BTC long each at equity ~0.52 x maintenance after the crash, so a partial
      liquidation (half) leaves it still below maintenance, the second partial too, and the third
      closes the rest.
    - hedged: ETH shorts carrying a BTC long (cross margin): the first ADL targets, whose haircuts
      stop at their maintenance margin.
    - shorts: plain ETH shorts, 150 USD of profit each; the debt needs about a dozen ADL steps."""
    book: dict[str, list[str]] = {"bankrupt": bankrupt_longs(chain, 2)}
    waves = [chain.new_trader(i, 6_732, "waves") for i in range(2)]
    for t in waves:
        chain.trade(t, "BTC-USD", 1)
    hedged = [chain.new_trader(i, 700, "hedged") for i in range(2)]
    for t in hedged:
        chain.trade(t, "ETH-USD", -0.5)
        chain.trade(t, "BTC-USD", 0.1)
    shorts = [chain.new_trader(i, 600, "waves-short") for i in range(12)]
    for t in shorts:
        chain.trade(t, "ETH-USD", -0.5)
    book["waves"] = [t.address for t in waves]
    book["hedged"] = [t.address for t in hedged]
    book["shorts"] = [t.address for t in shorts]
    return book


def test_one_pass_works_in_rounds_until_nothing_is_liquidatable_and_no_bad_debt_is_left(
    chain: World,
) -> None:
    # given the book, a keeper that has seen it, and a crash; one ADL target per transaction
    book = crash_in_waves(chain)
    everyone = [a for group in book.values() for a in group]
    settings = KeeperSettings(adl_max_targets=1)
    Keeper(chain.bw, KEEPER, settings).run_once()
    chain.set_price("ETH-USD", 2700)
    start = chain.set_price("BTC-USD", 54_000)["blockNumber"]
    assert set(chain.liquidatable(everyone)) == set(book["bankrupt"] + book["waves"])
    crashed = chain.rpc("evm_snapshot")

    # when a keeper allowed a single round makes its pass, then work is left for later passes
    single = Keeper(chain.bw, KEEPER, settings.replace(max_rounds_per_pass=1))
    short = single.run_once()
    assert short.rounds == 1 and single.metrics.round_limit_hits._value.get() == 1
    left = set(short.liquidatable_left)
    assert set(book["waves"]) <= left <= set(book["waves"] + book["hedged"])
    assert left == set(chain.liquidatable(everyone))
    assert short.bad_debt_wad > 0 and chain.bw.ch.functions.totalBadDebtWad().call() > 0
    chain.rpc("evm_revert", crashed)

    # when the keeper makes one pass with the default bound
    k = Keeper(chain.bw, KEEPER, settings)
    result = k.run_once()

    # then nothing is liquidatable and no bad debt is left, after several rounds
    assert chain.liquidatable(everyone) == [] and result.liquidatable_left == []
    assert chain.bw.ch.functions.totalBadDebtWad().call() == 0 and result.bad_debt_wad == 0
    assert 4 <= result.rounds <= settings.max_rounds_per_pass
    assert k.metrics.round_limit_hits._value.get() == 0
    # each account of the waves went through three liquidations, each in a later block
    liquidations = chain.events("Liquidated", start)
    for account in book["waves"]:
        blocks = [e["blockNumber"] for e in liquidations if e["args"]["account"] == account]
        assert len(blocks) == 3 and blocks == sorted(set(blocks))
    assert sorted(e["args"]["account"] for e in liquidations if e["args"]["bankrupt"]) == sorted(
        book["bankrupt"]
    )
    # every entry sent was liquidated: nothing skipped, nothing sent twice for the same state
    assert chain.events("LiquidationSkipped", start) == [] and result.skipped == []
    assert sorted(result.sent) == sorted(result.liquidated)
    assert len(result.liquidated) == len(liquidations)
    # ADL took the hedged accounts first, capped at their maintenance margin, then the shorts
    steps = chain.events("AutoDeleveraged", start)
    assert [s.account for s in result.adl_steps] == [s["args"]["account"] for s in steps]
    assert {s["args"]["account"] for s in steps[:2]} == set(book["hedged"])
    assert len(steps) > settings.adl_max_targets * 6  # more than one round's worth of ADL steps
    # a hedged account left at its maintenance margin may slip below it as BTC funding accrues
    # (a second passing between blocks): the next round liquidates it, never before its ADL step
    for account in book["hedged"]:
        adl_block = next(s["blockNumber"] for s in steps if s["args"]["account"] == account)
        later = [e for e in liquidations if e["args"]["account"] == account]
        assert all(e["blockNumber"] > adl_block and not e["args"]["bankrupt"] for e in later)
    others = set(book["bankrupt"] + book["waves"] + book["hedged"])
    assert {e["args"]["account"] for e in liquidations} <= others
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()
