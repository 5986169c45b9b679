"""One keeper pass at a time on the session chain: crash, lost race, in-flight, stale price."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from support import crash_book

from bulwark.chain.contracts import Bulwark, BulwarkError, dev_account
from bulwark.devnet.node import AnvilError, AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper import decisions, invariants
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import Keeper, PassResult

KEEPER = dev_account(3)
RIVAL = dev_account(5)


@pytest.fixture
def chain(anvil: AnvilNode, bw: Bulwark) -> World:
    c = World(anvil, bw)
    c.seed_pool(500_000)
    c.stake(20_000)
    return c


def keeper(chain: World, **settings: object) -> Keeper:
    return Keeper(chain.bw, KEEPER, KeeperSettings(**settings))  # type: ignore[arg-type]


def test_crash_liquidates_every_liquidatable_account_in_the_next_block(chain: World) -> None:
    # given a book of longs from 5x to 18x and a keeper that has seen it
    traders = crash_book(chain, 10)
    addresses = [t.address for t in traders]
    k = keeper(chain)
    quiet = k.run_once()
    assert quiet.sent == [] and quiet.candidates == 0
    assert set(addresses) <= set(k.index.accounts)

    # when ETH falls 5%
    update_block = chain.set_price("ETH-USD", 2850)["blockNumber"]
    doomed = chain.liquidatable(addresses)
    assert 3 <= len(doomed) < len(addresses)
    result = k.run_once()

    # then every liquidatable account was liquidated, by this keeper, within two blocks
    assert set(result.liquidatable) == set(doomed)
    assert {a for a, _ in result.liquidated} == set(doomed)
    events = chain.events("Liquidated", update_block)
    assert {e["args"]["account"] for e in events} == set(doomed)
    assert all(e["args"]["keeper"] == KEEPER.address for e in events)
    assert max(e["blockNumber"] for e in events) <= update_block + 2
    assert chain.liquidatable(addresses) == []
    assert chain.events("LiquidationSkipped", update_block) == []
    assert k.metrics.liquidations_mined._value.get() == len(events)
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()


def test_lost_race_sends_nothing_and_keeps_the_nonce(chain: World) -> None:
    # given small positions (closed in full) that a rival liquidates first
    traders = crash_book(chain, 6, salt="race", margin=500, smallest=2.0, largest=3.0)
    k = keeper(chain)
    k.run_once()
    chain.set_price("ETH-USD", 2650)
    doomed = chain.liquidatable([t.address for t in traders])
    assert doomed
    chain.send(chain.bw.ch.functions.liquidateBatch(doomed, [0] * len(doomed)), RIVAL)
    nonce = chain.w3.eth.get_transaction_count(KEEPER.address)

    # when the keeper acts on its stale view of one of them
    result = PassResult(0)
    done = k.liquidator.send([(doomed[0], 0)], k._advance()[1], result)

    # then simulation stopped it: no transaction, no nonce taken
    assert done == set() and result.sent == [] and result.races_lost == 1
    assert chain.w3.eth.get_transaction_count(KEEPER.address) == nonce
    # and a full pass finds nothing to do either
    assert k.run_once().sent == []
    assert chain.w3.eth.get_transaction_count(KEEPER.address) == nonce


def test_a_pending_liquidation_is_never_sent_twice(chain: World) -> None:
    # given liquidatable accounts and a node that stopped mining
    traders = crash_book(chain, 6, salt="inflight", margin=500, smallest=2.0, largest=3.0)
    k = keeper(chain, receipt_timeout=0.5, replace_after_seconds=60.0)
    k.run_once()
    update_block = chain.set_price("ETH-USD", 2650)["blockNumber"]
    doomed = chain.liquidatable([t.address for t in traders])
    chain.rpc("evm_setAutomine", False)
    try:
        # when the keeper sends and the transaction stays pending across passes
        first = k.run_once()
        assert {a for a, _ in first.sent} == set(doomed) and first.liquidated == []
        assert len(k.sender.pending) == 1
        second = k.run_once()
        assert second.sent == [] and set(second.liquidatable) == set(doomed)
    finally:
        chain.rpc("evm_mine")
        chain.rpc("evm_setAutomine", True)
    # then once mined it is accounted for, and every account was liquidated exactly once
    third = k.run_once()
    assert k.sender.pending == {} and third.sent == []
    assert {a for a, _ in third.liquidated} == set(doomed)
    accounts = [e["args"]["account"] for e in chain.events("Liquidated", update_block)]
    assert sorted(accounts) == sorted(doomed)


def test_nothing_is_liquidated_on_a_stale_price(chain: World) -> None:
    # given liquidatable accounts and an ETH feed older than its heartbeat
    traders = crash_book(chain, 6, salt="stale", margin=500, smallest=2.0, largest=3.0)
    k = keeper(chain)
    k.run_once()
    chain.set_price("ETH-USD", 2650)
    chain.warp(3_700)

    # when the keeper runs, then it sends nothing
    stale = k.run_once()
    assert stale.sent == [] and stale.candidates == 0
    # and once the feed is fresh again it liquidates
    chain.set_price("ETH-USD", 2650)
    fresh = k.run_once()
    addresses = [t.address for t in traders]
    assert fresh.liquidated and {a for a, _ in fresh.liquidated} <= set(addresses)
    assert chain.liquidatable(addresses) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chain_id": 5}, "the node is on chain 31337 but the deployment is for chain 5"),
        ({"contracts": "dead"}, "no contract code for ClearingHouse at 0x0000"),
        ({"signer": "poor"}, "holds 0.000000 ETH, needs at least 0.010000 ETH"),
    ],
)
def test_startup_checks_refuse_a_wrong_chain_missing_code_or_an_unfunded_signer(
    bw: Bulwark, change: dict[str, object], message: str
) -> None:
    deployment = dataclasses.replace(bw.deployment, contracts=dict(bw.deployment.contracts))
    signer = KEEPER
    if "chain_id" in change:
        deployment.chain_id = 5
    if "contracts" in change:
        deployment.contracts["ClearingHouse"] = "0x000000000000000000000000000000000000dEaD"
    if "signer" in change:
        signer = Account.create()
    keeper = Keeper(Bulwark(bw.w3, deployment, bw.artifacts), signer, KeeperSettings())
    with pytest.raises(BulwarkError, match=message):
        keeper.run_once()


def test_the_largest_position_is_liquidated_first(chain: World) -> None:
    # given an account with a small ETH long and a large BTC long
    trader = chain.new_trader(0, 2_000, "largest")
    chain.trade(trader, "ETH-USD", 1)
    chain.trade(trader, "BTC-USD", 0.5)
    k = keeper(chain)
    k.run_once()

    # when BTC falls 5%
    start = chain.set_price("BTC-USD", 57_000)["blockNumber"]
    assert chain.liquidatable([trader.address]) == [trader.address]
    result = k.run_once()

    # then the keeper liquidated the BTC position, the largest by notional, as the contract requires
    assert result.liquidated and {m for _, m in result.liquidated} == {1}
    assert [e["args"]["marketId"] for e in chain.events("Liquidated", start)] == [1] * len(
        result.liquidated
    )
    assert chain.events("LiquidationSkipped", start) == [] and result.races_lost == 0


def test_a_losing_leg_goes_before_a_larger_profit_the_pool_cannot_pay(chain: World) -> None:
    # given a long whose unrealised loss stands in for all of the pool's margin, which the LP
    # redeems, and a hedged pair whose larger leg, a 60,000 profit, is more than the pool's margin
    # can pay (test/foundry/attacks/UnpayableLargestLeg.t.sol, on a 500,000 pool)
    pool = chain.bw.pool
    chain.warp(int(pool.functions.cooldown().call()))
    chain.refresh_prices()
    carol = chain.new_trader(0, 330_000, "unpayable")
    alice = chain.new_trader(1, 18_500, "unpayable")
    chain.trade(carol, "ETH-USD", 300)
    chain.trade(alice, "ETH-USD", -60)
    chain.trade(alice, "BTC-USD", 3)
    k = keeper(chain)
    k.run_once()
    chain.set_price("ETH-USD", 2_000)
    start = chain.set_price("BTC-USD", 35_400)["blockNumber"]
    lp = chain.lp.address
    chain.send(pool.functions.redeem(pool.functions.maxRedeem(lp).call(), lp, lp), chain.lp)
    ch = chain.bw.ch
    assert ch.functions.marginOf(pool.address).call() < 30_000 * 10**18
    assert chain.liquidatable([alice.address]) == [alice.address]

    # when the keeper runs until the account is healthy
    for _ in range(4):
        k.run_once()
        if not chain.liquidatable([alice.address]):
            break

    # then it took the BTC leg only, whose losses paid the pool, and no profit was forfeited
    events = [e for e in chain.events("Liquidated", start) if e["args"]["account"] == alice.address]
    assert events and {e["args"]["marketId"] for e in events} == {1}
    assert chain.events("PoolPayoutCapped", start) == []
    assert chain.events("LiquidationSkipped", start) == []
    assert chain.liquidatable([alice.address]) == []
    assert ch.functions.positionOf(alice.address, 0).call()[0] == -60 * 10**18
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()


def test_a_round_sends_its_batches_back_to_back_and_they_share_a_block(chain: World) -> None:
    # given eight accounts liquidatable at once, batches of at most three, a node not mining
    traders = crash_book(chain, 8, salt="backtoback", margin=500, smallest=2.0, largest=3.0)
    addresses = [t.address for t in traders]
    k = keeper(chain, max_batch=3, receipt_timeout=0.5, replace_after_seconds=60.0)
    k.run_once()
    update_block = chain.set_price("ETH-USD", 2650)["blockNumber"]
    doomed = chain.liquidatable(addresses)
    assert len(doomed) > 6
    nonce = chain.w3.eth.get_transaction_count(KEEPER.address)
    chain.rpc("evm_setAutomine", False)
    try:
        # when one pass runs
        first = k.run_once()
        # then every batch went out without waiting for the one before, with consecutive nonces
        pending = sorted(k.sender.pending.values(), key=lambda p: p.nonce)
        assert [p.nonce for p in pending] == list(range(nonce, nonce + len(pending)))
        assert len(pending) == -(-len(doomed) // 3) and {a for a, _ in first.sent} == set(doomed)
        gas_limit = chain.w3.eth.get_block("latest")["gasLimit"]
        assert all(len(p.keys) <= 3 and p.tx["gas"] <= gas_limit // 4 for p in pending)
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", True)
    # and one block took them all, each liquidating every entry within its gas limit
    second = k.run_once()
    assert k.sender.pending == {} and second.sent == []
    assert sorted(a for a, _ in second.liquidated) == sorted(doomed)
    blocks = {e["blockNumber"] for e in chain.events("Liquidated", update_block)}
    assert len(blocks) == 1 and chain.events("LiquidationSkipped", update_block) == []
    for p in pending:
        receipt = chain.w3.eth.get_transaction_receipt(p.hashes[-1])
        assert receipt["status"] == 1 and receipt["gasUsed"] < p.tx["gas"]


def test_a_batch_predicted_short_of_gas_gets_more_until_every_entry_fits(
    chain: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a prediction of 70% of the gas a batch needs (at that limit the batch runs out of gas)
    monkeypatch.setattr(decisions, "BATCH_PREDICT_BPS", -3_000)
    monkeypatch.setattr(decisions, "BATCH_HEADROOM_BPS", 0)
    traders = crash_book(chain, 6, salt="shortgas", margin=500, smallest=2.0, largest=3.0)
    k = keeper(chain)
    k.run_once()
    start = chain.set_price("ETH-USD", 2650)["blockNumber"]
    doomed = chain.liquidatable([t.address for t in traders])

    # when the keeper fits the batch, then the eth_call check raised its gas until all would pass
    result = PassResult(0)
    (fitted,) = k.liquidator.fit([(a, 0) for a in doomed], k._advance()[1].block, result)
    chunk, gas = fitted.entries, fitted.gas
    assert fitted.want == fitted.count == len(doomed) == len(chunk)
    assert gas < decisions.BATCH_FIXED_GAS * 100
    call = k.liquidator.batch_call(chunk)
    tx = {"from": KEEPER.address, "to": call.to, "data": call.data}

    def liquidated_with(limit: int) -> int:
        try:
            return int(chain.rpc("eth_call", {**tx, "gas": hex(limit)}, "latest"), 16)
        except AnvilError:  # LiquidationBatchOutOfGas, or out of gas outside the entries
            return 0

    assert liquidated_with(gas) == len(doomed) and liquidated_with(gas * 2 // 3) < len(doomed)
    (probe,) = k.sender.estimate_many([call])
    assert isinstance(probe, int) and gas > probe * 7 // 10 + decisions.BATCH_FIXED_GAS  # raised
    # and a pass sends it so: every entry liquidated, none skipped
    done = k.run_once()
    assert {a for a, _ in done.liquidated} == set(doomed)
    assert chain.events("LiquidationSkipped", start) == []
