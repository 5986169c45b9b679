"""The keeper lapses the insurance fund's unstake requests whose claim window has passed: after the
pass's liquidations and bad debt, at most `lapse_max_per_pass` a pass, behind `lapse_requests`,
counted in the metrics. The chain's clock is pinned (evm_setNextBlockTimestamp), never the wall's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import own_chain
from web3.logs import DISCARD

from bulwark.chain.contracts import dev_account
from bulwark.devnet.world import World
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import Keeper

KEEPER = dev_account(3)


@pytest.fixture
def chain() -> Iterator[World]:
    with own_chain() as c:
        c.stake(9_000)
        yield c


def request_unstake(chain: World, parts: int) -> list[tuple[int, int]]:
    """The staker's shares unstaked in `parts` requests: (request id, claim window end) each."""
    fund = chain.bw.fund
    shares = int(fund.functions.balanceOf(chain.staker.address).call())
    out = []
    for _ in range(parts):
        receipt = chain.send(fund.functions.requestUnstake(shares // parts), chain.staker)
        (ev,) = fund.events.UnstakeRequested().process_receipt(receipt, errors=DISCARD)
        out.append((int(ev["args"]["requestId"]), int(ev["args"]["claimUntil"])))
    return out


def lapsed_total(keeper: Keeper) -> float:
    value = keeper.metrics.registry.get_sample_value("bulwark_keeper_requests_lapsed_total")
    return 0.0 if value is None else value


def test_keeper_lapses_expired_requests_a_few_per_pass(chain: World) -> None:
    fund = chain.bw.fund
    shares = int(fund.functions.balanceOf(chain.staker.address).call())
    requests = request_unstake(chain, 3)
    keeper = Keeper(chain.bw, KEEPER, KeeperSettings(lapse_max_per_pass=2))
    # given a claim window that is still open (its last second): nothing lapses
    first_end = min(end for _, end in requests)
    chain.mine(first_end - 1)
    result = keeper.run_once()
    assert result.lapsed == [] and result.transactions == []
    assert fund.functions.reservedAssets().call() > 0
    # when every window has passed
    chain.mine(max(end for _, end in requests))
    # then the first pass lapses two (oldest first), the next the third, and a third pass sends
    # nothing
    ids = [rid for rid, _ in requests]
    first = keeper.run_once()
    assert first.lapsed == ids[:2] and len(first.transactions) == 2
    assert lapsed_total(keeper) == 2
    second = keeper.run_once()
    assert second.lapsed == ids[2:] and lapsed_total(keeper) == 3
    third = keeper.run_once()
    assert third.lapsed == [] and third.transactions == []
    # the shares are staked again and the fund holds nothing in reserve for them
    events = fund.events.UnstakeLapsed().get_logs(from_block=0)
    assert sorted(int(e["args"]["requestId"]) for e in events) == ids
    assert all(e["args"]["caller"] == KEEPER.address for e in events)
    assert fund.functions.balanceOf(chain.staker.address).call() >= shares - 2
    assert fund.functions.reservedAssets().call() == 0
    assert first.summary()["lapsed"] == 2 and first.to_json()["lapsed"] == ids[:2]


def test_keeper_leaves_expired_requests_alone_when_lapsing_is_off(chain: World) -> None:
    fund = chain.bw.fund
    ((rid, end),) = request_unstake(chain, 1)
    chain.mine(end + 60)
    off = Keeper(chain.bw, KEEPER, KeeperSettings(lapse_requests=False))
    result = off.run_once()
    assert result.lapsed == [] and result.transactions == []
    assert lapsed_total(off) == 0
    assert int(fund.functions.unstakeRequest(rid).call()[0], 16) != 0  # still open
