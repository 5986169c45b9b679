"""The sender on a node that stopped mining: fee-bump replacement of a stuck transaction, the fee
cap, and a nonce taken by someone else."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from bulwark.chain.contracts import Bulwark, dev_account
from bulwark.chain.sender import Eip1559Strategy, Simulation, TxSender
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
