"""The account index: state read from the chain, checkpoint resume, reorg rewind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bulwark.chain.contracts import WAD, Bulwark, BulwarkError, dev_account
from bulwark.core import riskmath as rm
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper.index import (
    AccountIndex,
    AccountState,
    Calls,
    ScreenArrays,
    get_block,
    rpc_batch,
)


def test_index_tracks_every_account_with_exact_state(
    anvil: AnvilNode, bw: Bulwark, tmp_path: Path
) -> None:
    # given traders who deposit, trade in both markets and close
    chain = World(anvil, bw)
    chain.seed_pool(500_000)
    a, b, c = (chain.new_trader(n, 5_000, "index") for n in range(3))
    chain.trade(a, "ETH-USD", 1.5)
    chain.trade(b, "BTC-USD", -0.05)
    chain.trade(b, "ETH-USD", 0.5)
    chain.trade(c, "ETH-USD", 1)
    chain.trade(c, "ETH-USD", -1)

    # when the index syncs
    index = AccountIndex(bw, tmp_path / "cp.json")
    head = get_block(bw.w3)
    report = index.sync(head)

    # then it knows each account, margin and positions as the contract stores them, not the pool or fund
    assert {a.address, b.address, c.address} <= set(index.accounts)
    assert not index.protected & set(index.accounts)
    assert dev_account(0).address not in index.accounts  # role grants are not margin events
    assert report.new_accounts == len(index.accounts) and report.to_block == head.number
    for t in (a, b, c):
        state = index.accounts[t.address]
        assert state.margin == bw.ch.functions.marginOf(t.address).call()
        for m in range(2):
            size, open_notional, basis = bw.ch.functions.positionOf(t.address, m).call()
            if size == 0:
                assert m not in state.positions
            else:
                held = state.positions[m]
                assert (held.size, held.open_notional, held.funding_basis) == (
                    size,
                    open_notional,
                    basis,
                )
    assert set(index.accounts[b.address].positions) == {0, 1} and index.accounts[c.address].flat
    assert index.accounts[a.address].positions[0].size == 3 * WAD // 2
    # and the screen's resident float rows say the same as the exact state
    rows = index.arrays.rows
    assert index.arrays.size[rows[a.address]].tolist()[:2] == [1.5, 0.0]
    assert index.arrays.holds[rows[b.address]] and not index.arrays.holds[rows[c.address]]
    st = index.accounts[b.address]
    fixed = st.margin + sum(p.funding_basis - p.open_notional for p in st.positions.values())
    assert index.arrays.base[rows[b.address]] == fixed / WAD
    data = json.loads((tmp_path / "cp.json").read_text())
    assert data["block"] == head.number and data["hash"] == head.hash
    assert set(data["accounts"]) == set(index.accounts)


def test_restart_resumes_from_the_checkpoint_and_misses_nothing(
    anvil: AnvilNode, bw: Bulwark, tmp_path: Path
) -> None:
    # given an index checkpointed at some block
    chain = World(anvil, bw)
    early = chain.new_trader(0, 1_000, "resume")
    first = AccountIndex(bw, tmp_path / "cp.json")
    first.sync(get_block(bw.w3))
    first.save()
    saved_at = first.block
    assert saved_at is not None

    # when accounts appear while no keeper runs, and a new index starts from the file
    late = [chain.new_trader(n, 2_000, "resume-late") for n in range(3)]
    update = chain.set_price("BTC-USD", 61_000)["blockNumber"]
    second = AccountIndex(bw, tmp_path / "cp.json")
    assert second.load() and second.resumed_from == saved_at
    report = second.sync(get_block(bw.w3))

    # then it scanned only from the block after the checkpoint, and knows old and new accounts
    assert report.from_block == saved_at + 1 and report.rewound_to is None
    assert [(u.market, u.answer, u.block) for u in report.price_updates] == [
        ("BTC-USD", 61_000 * 10**8, update)
    ]
    assert {early.address, *(t.address for t in late)} <= set(second.accounts)
    assert second.accounts[late[0].address].margin == 2_000 * WAD
    assert second.accounts[early.address].margin == 1_000 * WAD  # re-read at resume


def test_reorg_below_the_checkpoint_rewinds_and_rescans(
    anvil: AnvilNode, bw: Bulwark, tmp_path: Path
) -> None:
    # given an index synced at a fork point, then at a head that a reorg will replace
    chain = World(anvil, bw)
    chain.new_trader(0, 1_000, "fork-base")
    index = AccountIndex(bw, tmp_path / "cp.json")
    index.sync(get_block(bw.w3))
    fork_block = index.block
    snapshot = anvil.rpc("evm_snapshot")
    doomed = chain.new_trader(0, 3_000, "fork-a")
    chain.rpc("evm_mine")
    index.sync(get_block(bw.w3))
    old_head = index.block
    assert doomed.address in index.accounts and index.accounts[doomed.address].margin == 3_000 * WAD

    # when the chain reorganises: the blocks after the fork are replaced by others, and grow past
    anvil.rpc("evm_revert", snapshot)
    survivor = chain.new_trader(0, 4_000, "fork-b")
    for _ in range(4):
        chain.rpc("evm_mine")
    head = get_block(bw.w3)
    assert head.number > old_head  # type: ignore[operator]
    report = index.sync(head)

    # then the index rewound to the fork point, rescanned, and holds the new chain's truth
    assert report.rewound_to == fork_block and report.from_block == fork_block + 1  # type: ignore[operator]
    assert index.accounts[survivor.address].margin == 4_000 * WAD
    assert index.accounts[doomed.address].margin == 0 and index.accounts[doomed.address].flat
    assert index.block == head.number and index.block_hash == head.hash


def test_a_checkpoint_of_another_deployment_is_ignored(bw: Bulwark, tmp_path: Path) -> None:
    file = tmp_path / "cp.json"
    file.write_text(
        json.dumps(
            {
                "version": 1,
                "chain_id": 1,
                "clearing_house": bw.ch.address,
                "block": 5,
                "hash": "0x00",
                "recent": [],
                "accounts": [],
            }
        )
    )
    index = AccountIndex(bw, file)
    assert index.load() is False and index.block is None
    file.write_text("{ not json")
    assert index.load() is False


def test_calls_encode_as_web3_does_and_decode_what_the_node_answers(bw: Bulwark) -> None:
    # given calls with scalars, arrays of addresses and a tuple answer
    calls = Calls(bw.ch)
    a, b = dev_account(1).address, dev_account(2).address
    cases = [
        ("marginOf", [a]),
        ("positionOf", [a, 1]),
        ("healthsOf", [[a, b]]),
        ("liquidateBatch", [[a, b], [0, 1]]),
        ("badDebtOf", [0, 1]),
    ]
    # then the calldata is byte for byte web3's, and the answers decode as web3's calls do
    for fn, args in cases:
        assert calls.data(fn, args) == bw.ch.encode_abi(fn, args), fn
    head = get_block(bw.w3).number
    replies = rpc_batch(bw.w3, [calls.request(fn, args, head) for fn, args in cases[:3]])
    assert calls.decode("marginOf", replies[0]) == bw.ch.functions.marginOf(a).call()
    assert tuple(calls.decode("positionOf", replies[1])) == tuple(
        bw.ch.functions.positionOf(a, 1).call()
    )
    assert [tuple(h) for h in calls.decode("healthsOf", replies[2])] == [
        tuple(h) for h in bw.ch.functions.healthsOf([a, b]).call()
    ]
    # and a name the contract does not have is a clear error
    with pytest.raises(BulwarkError, match="noSuchView is not a function"):
        calls.data("noSuchView", [])


def test_resident_screen_arrays_follow_every_update_and_grow() -> None:
    # given two accounts in market 0, written once
    arrays = ScreenArrays(capacity=1)
    a, b, c = (dev_account(n).address for n in (1, 2, 3))
    pos = rm.Position(2 * WAD, 6_000 * WAD, 10 * WAD)
    arrays.update({a: AccountState(1_000 * WAD, {0: pos}), b: AccountState(5 * WAD, {})})
    assert arrays.count == 2 and arrays.markets == 1
    assert arrays.base[0] == 1_000 - 6_000 + 10 and arrays.size[0, 0] == 2.0
    assert arrays.holds[:2].tolist() == [True, False]

    # when a re-read moves `a` to market 2 only and a new account appears (rows and columns grow)
    short = rm.Position(-WAD // 2, -1_500 * WAD, 0)
    arrays.update({a: AccountState(900 * WAD, {2: short}), c: AccountState(WAD, {0: pos})})

    # then `a`'s old market is cleared, the new column holds its size, the rest is unchanged
    assert arrays.count == 3 and arrays.markets == 3 and arrays.base.shape[0] >= 3
    assert arrays.size[0].tolist() == [0.0, 0.0, -0.5] and arrays.abs_size[0, 2] == 0.5
    assert arrays.base[0] == 900 + 1_500 and arrays.base[1] == 5.0
    assert arrays.accounts_at(np.flatnonzero(arrays.holds[:3])) == [a, c]
    fresh = ScreenArrays.from_states(
        {
            a: AccountState(900 * WAD, {2: short}),
            b: AccountState(5 * WAD, {}),
            c: AccountState(WAD, {0: pos}),
        }
    )
    for name in ("base", "size", "abs_size", "holds"):
        assert np.array_equal(getattr(arrays, name)[:3], getattr(fresh, name)[:3]), name
