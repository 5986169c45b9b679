"""The one sender, on a real Anvil, in its three modes. Replace until mined (the keeper's), on a
node that stopped mining: fee-bump replacement of a stuck transaction, the fee cap, a nonce taken
by someone else. Send and wait (the command line's, the deployer's): a revert raises the decoded
custom error, whether the simulation or the mined transaction reverted. Pipelined (stress and
bench set-ups): nonces in order per signer, every receipt collected, a revert reported unless
allowed, a transaction the node lost sent again. And the one gas rule."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from bulwark.chain.contracts import Bulwark, BulwarkError, TxReverted, dev_account
from bulwark.chain.sender import (
    GAS_HEADROOM,
    Eip1559Strategy,
    Pipeline,
    Simulation,
    TxSender,
    gas_limit,
)
from bulwark.devnet.node import AnvilNode

KEEPER = dev_account(3)
GWEI = 10**9


@pytest.fixture
def no_mining(anvil: AnvilNode, bw: Bulwark) -> Iterator[AnvilNode]:
    anvil.rpc("evm_setAutomine", False)
    try:
        yield anvil
    finally:
        anvil.rpc("evm_mine")
        anvil.rpc("evm_setAutomine", True)


def pooled(anvil: AnvilNode, address: str) -> dict[int, dict[str, str]]:
    """The node's pending transactions of `address`, by nonce."""
    content = anvil.rpc("txpool_content")["pending"]
    mine = next((v for k, v in content.items() if k.lower() == address.lower()), {})
    return {int(n): tx for n, tx in mine.items()}


def test_stuck_transaction_is_replaced_with_the_same_nonce_and_higher_fees(
    bw: Bulwark, no_mining: AnvilNode
) -> None:
    # given a transaction that is not being mined
    strategy = Eip1559Strategy(
        priority_fee=GWEI, base_fee_multiple=2, max_fee_cap=3 * GWEI, bump_bps=1_250
    )
    sender = TxSender(bw, KEEPER, strategy, replace_after_blocks=1_000, replace_after_seconds=0.2)
    count = bw.w3.eth.get_transaction_count(KEEPER.address)
    pending = sender.send(
        bw.token.functions.approve(bw.ch.address, 7), action="approve", keys=["x"]
    )
    assert sender.in_flight() == {"x"}

    # when it lingers past the replacement delay, again and again, until the fees reach the cap (how
    # many steps that takes depends on the base fee the chain's history left)
    fees = [pending.fees]
    for _ in range(24):
        time.sleep(0.22)
        assert sender.check(pending) is None
        if pending.fees != fees[-1]:
            fees.append(pending.fees)
        if strategy.bump(fees[-1], 0) is None:
            break

    # then each replacement reused the nonce and paid at least 12.5% more, until the cap
    assert pending.nonce == count and len(pending.hashes) == len(fees) >= 3
    for before, after in itertools.pairwise(fees):
        assert (
            after.max_fee * 8 >= before.max_fee * 9
            and after.priority_fee * 8 >= before.priority_fee * 9
        )
    assert (
        fees[-1].max_fee <= 3 * GWEI and strategy.bump(fees[-1], 0) is None
    )  # capped, not under-bumped
    pool = pooled(no_mining, KEEPER.address)
    assert list(pool) == [count]  # one transaction for the nonce: the last replacement
    assert (
        pool[count]["hash"] == pending.hashes[-1]
        and int(pool[count]["maxFeePerGas"], 16) == fees[-1].max_fee
    )

    # when a block is mined, then the last replacement is what got in, once
    no_mining.rpc("evm_mine")
    outcome = sender.check(pending)
    assert outcome is not None and outcome.ok and outcome.receipt is not None
    assert "0x" + bytes(outcome.receipt["transactionHash"]).hex() == pending.hashes[-1]
    assert all(no_mining.rpc("eth_getTransactionReceipt", h) is None for h in pending.hashes[:-1])
    assert bw.w3.eth.get_transaction_count(KEEPER.address) == count + 1
    assert sender.in_flight() == set() and sender.pending == {}


def test_a_nonce_used_elsewhere_drops_the_transaction_and_reseeds(
    bw: Bulwark, no_mining: AnvilNode
) -> None:
    # given a pending transaction of ours
    sender = TxSender(bw, KEEPER, Eip1559Strategy(), replace_after_seconds=60, drop_grace=0.3)
    pending = sender.send(
        bw.token.functions.approve(bw.ch.address, 1), action="approve", keys=["a"]
    )

    # when another process with the same key replaces it and that is mined
    fn = bw.token.functions.approve(bw.ch.address, 2)
    tx = fn.build_transaction(
        {
            "from": KEEPER.address,
            "nonce": pending.nonce,
            "gas": 100_000,
            "maxFeePerGas": pending.fees.max_fee * 2,
            "maxPriorityFeePerGas": pending.fees.priority_fee * 2,
        }
    )
    bw.w3.eth.send_raw_transaction(KEEPER.sign_transaction(tx).raw_transaction)
    no_mining.rpc("evm_mine")

    # then, once that is sure (not a node between pool and receipt), ours is dropped, its work
    # released, and the next send takes the next free nonce
    assert sender.check(pending) is None and sender.in_flight() == {"a"}
    time.sleep(0.35)
    outcome = sender.check(pending)
    assert outcome is not None and outcome.dropped and sender.in_flight() == set()
    again = sender.send(bw.token.functions.approve(bw.ch.address, 3), action="approve")
    assert again.nonce == pending.nonce + 1
    no_mining.rpc("evm_mine")
    done = sender.check(again)
    assert done is not None and done.ok
    assert bw.token.functions.allowance(KEEPER.address, bw.ch.address).call() == 3


def test_a_reverting_call_is_not_sent_and_takes_no_nonce(bw: Bulwark) -> None:
    sender = TxSender(bw, KEEPER, Eip1559Strategy())
    count = bw.w3.eth.get_transaction_count(KEEPER.address, "pending")
    with pytest.raises(Simulation, match=r"LiquidationNoPosition\(account=0x"):
        sender.send(bw.ch.functions.liquidate(dev_account(9).address, 0), action="liquidate")
    assert (
        sender.pending == {} and bw.w3.eth.get_transaction_count(KEEPER.address, "pending") == count
    )
    assert sender.nonces.reserve() == count  # the local manager did not move either


def test_a_counter_ahead_of_the_chain_with_nothing_in_flight_is_reseeded(
    bw: Bulwark, no_mining: AnvilNode
) -> None:
    # given a local counter two ahead of the node (transactions of ours that a reorg undid)
    sender = TxSender(bw, KEEPER, Eip1559Strategy(), replace_after_seconds=60)
    count = bw.w3.eth.get_transaction_count(KEEPER.address, "pending")
    sender.nonces.reserve()
    sender.nonces.reserve()

    # when it sends with nothing in flight, then the nonce is the node's pending count, no hole
    first = sender.send(bw.token.functions.approve(bw.ch.address, 1), action="approve")
    assert first.nonce == count
    # and while that one is in flight the next nonce is counted locally, back to back
    second = sender.send(bw.token.functions.approve(bw.ch.address, 2), action="approve")
    assert second.nonce == count + 1
    assert set(pooled(no_mining, KEEPER.address)) == {count, count + 1}
    no_mining.rpc("evm_mine")
    assert all(o is not None and o.ok for o in (sender.check(first), sender.check(second)))


def test_a_rewind_forgets_the_local_count(bw: Bulwark) -> None:
    sender = TxSender(bw, KEEPER, Eip1559Strategy())
    count = bw.w3.eth.get_transaction_count(KEEPER.address, "pending")
    assert sender.nonces.reserve() == count and sender.nonces.reserve() == count + 1
    sender.rewound()
    assert sender.nonces.reserve() == count


# ---------------------------------------------------------------------------- send and wait


def test_send_and_wait_raises_the_decoded_custom_error_and_takes_no_nonce(bw: Bulwark) -> None:
    count = bw.w3.eth.get_transaction_count(KEEPER.address, "pending")
    with pytest.raises(TxReverted, match=r"^liquidate reverted: LiquidationNoPosition\(") as info:
        bw.send(bw.ch.functions.liquidate(dev_account(9).address, 0), KEEPER)
    assert info.value.error.name == "LiquidationNoPosition"
    assert info.value.error.args["account"] == dev_account(9).address.lower()
    assert bw.w3.eth.get_transaction_count(KEEPER.address, "pending") == count


def test_send_and_wait_decodes_a_revert_mined_past_the_simulation(bw: Bulwark) -> None:
    # given a gas limit from the caller, so nothing is simulated and the revert is mined
    count = bw.w3.eth.get_transaction_count(KEEPER.address)
    fn = bw.ch.functions.liquidate(dev_account(9).address, 0)
    with pytest.raises(TxReverted) as info:
        bw.sender(KEEPER).transact(fn, action="liquidate", gas=300_000)
    # then the failed transaction took its nonce and its error was replayed and decoded
    assert info.value.error.name == "LiquidationNoPosition"
    assert bw.w3.eth.get_transaction_count(KEEPER.address) == count + 1


def test_send_and_wait_returns_the_receipt_and_counts_nonces_locally(bw: Bulwark) -> None:
    count = bw.w3.eth.get_transaction_count(KEEPER.address)
    first = bw.send(bw.token.functions.approve(bw.ch.address, 5), KEEPER, action="approve")
    second = bw.send(bw.token.functions.approve(bw.ch.address, 6), KEEPER, action="approve")
    assert first["status"] == 1 and second["status"] == 1
    nonces = [bw.w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in (first, second)]
    assert nonces == [count, count + 1]
    assert bw.token.functions.allowance(KEEPER.address, bw.ch.address).call() == 6


def test_the_gas_limit_is_one_rule_capped_at_the_block() -> None:
    assert gas_limit(100_000) == 150_000 + GAS_HEADROOM
    assert gas_limit(100_000, margin_bps=1_000) == 110_000 + GAS_HEADROOM
    assert gas_limit(20_000_000, cap=25_000_000) == 25_000_000


# ---------------------------------------------------------------------------- pipelined

SIGNERS = (dev_account(5), dev_account(6))


def test_pipelined_sends_keep_each_signers_nonces_in_order_and_collect_every_receipt(
    bw: Bulwark,
) -> None:
    counts = {a.address: bw.w3.eth.get_transaction_count(a.address) for a in SIGNERS}
    pipe = Pipeline(bw, default_gas=100_000)
    for n in range(1, 7):
        pipe.add(SIGNERS[n % 2], bw.token.functions.approve(bw.ch.address, n), f"approve {n}")
    receipts = pipe.wait()
    assert len(receipts) == 6 and all(r["status"] == 1 for r in receipts)
    assert pipe.accepted == pipe.mined == 6
    sent = [bw.w3.eth.get_transaction(r["transactionHash"]) for r in receipts]
    for a in SIGNERS:
        mine = [tx["nonce"] for tx in sent if tx["from"] == a.address]
        assert mine == [counts[a.address] + i for i in range(3)]
    assert bw.token.functions.allowance(SIGNERS[0].address, bw.ch.address).call() == 6
    assert bw.token.functions.allowance(SIGNERS[1].address, bw.ch.address).call() == 5
    # after a wait the nonces come from the node again: another sender may have used the account
    bw.send(bw.token.functions.approve(bw.ch.address, 7), SIGNERS[0])
    pipe.send(SIGNERS[0], bw.token.functions.approve(bw.ch.address, 8))
    assert [r["status"] for r in pipe.wait()] == [1]


def test_a_reverting_pipelined_transaction_is_reported_unless_allowed(bw: Bulwark) -> None:
    doomed = bw.ch.functions.liquidate(dev_account(9).address, 0)
    pipe = Pipeline(bw, default_gas=300_000)
    pipe.add(SIGNERS[0], bw.token.functions.approve(bw.ch.address, 1), "approve")
    pipe.add(SIGNERS[0], doomed, "liquidate nobody")
    pipe.add(SIGNERS[0], bw.token.functions.approve(bw.ch.address, 2), "approve again")
    with pytest.raises(TxReverted, match=r"^liquidate nobody reverted: LiquidationNoPosition"):
        pipe.wait()
    # the transactions around it were mined all the same, in nonce order
    assert bw.token.functions.allowance(SIGNERS[0].address, bw.ch.address).call() == 2

    pipe.add(SIGNERS[0], doomed, "liquidate nobody")
    pipe.add(SIGNERS[1], bw.token.functions.approve(bw.ch.address, 3), "approve")
    receipts = pipe.wait(allow_revert=True)
    assert [r["status"] for r in receipts] == [0, 1]


def test_pipelined_transactions_mined_together_share_a_block(bw: Bulwark, anvil: AnvilNode) -> None:
    pipe = Pipeline(bw, default_gas=100_000, mine_together=True)
    for n, a in enumerate(SIGNERS * 2):
        pipe.add(a, bw.token.functions.approve(bw.ch.address, n), f"approve {n}")
    receipts = pipe.wait()
    assert len({r["blockNumber"] for r in receipts}) == 1 and len(receipts) == 4
    assert anvil.rpc("anvil_getAutomine") is True  # automine is back on


def test_a_pipelined_transaction_the_node_lost_is_sent_again(
    bw: Bulwark, no_mining: AnvilNode
) -> None:
    # given a sent transaction that the node then drops from its pool
    pipe = Pipeline(bw, default_gas=100_000)
    tx_hash = pipe.send(SIGNERS[0], bw.token.functions.approve(bw.ch.address, 9), "approve")
    no_mining.rpc("anvil_dropTransaction", tx_hash)
    assert no_mining.rpc("eth_getTransactionByHash", tx_hash) is None
    # when blocks are mined again while the pipeline waits
    no_mining.rpc("evm_setIntervalMining", 1)
    try:
        (receipt,) = pipe.wait(timeout=30)
    finally:
        no_mining.rpc("evm_setIntervalMining", 0)
    # then it was sent again, once, and mined
    assert pipe.rebroadcasts == 1 and receipt["status"] == 1
    assert bw.token.functions.allowance(SIGNERS[0].address, bw.ch.address).call() == 9


def test_a_pipelined_transaction_the_node_refuses_is_named_and_leaves_no_nonce_gap(
    bw: Bulwark,
) -> None:
    pipe = Pipeline(bw, default_gas=100_000)
    pipe.add(SIGNERS[1], bw.token.functions.approve(bw.ch.address, 1), "approve")
    pipe.add(SIGNERS[1], bw.token.functions.approve(bw.ch.address, 2), "too little gas", gas=1_000)
    with pytest.raises(BulwarkError, match=r"^too little gas: the node refused it: "):
        pipe.wait()
    # the next transaction takes the node's next nonce, not one after the refused transaction's
    pipe.add(SIGNERS[1], bw.token.functions.approve(bw.ch.address, 3), "approve")
    assert [r["status"] for r in pipe.wait(timeout=30)] == [1]
    assert bw.token.functions.allowance(SIGNERS[1].address, bw.ch.address).call() == 3
