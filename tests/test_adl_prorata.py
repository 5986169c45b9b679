"""Pro-rata ADL: the keeper's set-building against the contract's arithmetic, on a real Anvil."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulwark.chain.contracts import Bulwark, dev_account
from bulwark.core import riskmath as rm
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import World
from bulwark.keeper import invariants, prorata
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.daemon import Keeper

KEEPER = dev_account(3)
ETH = 0
LONG = 0  # the bankrupt longs leave their debt on the long side; the shorts absorb it

addresses = st.integers(min_value=1, max_value=2**160 - 1).map(lambda n: f"0x{n:040x}")
books = st.dictionaries(
    addresses, st.integers(min_value=1, max_value=10**30), min_size=1, max_size=12
)


@given(owed=st.integers(min_value=0, max_value=10**31), pnls=books)
@settings(max_examples=300, deadline=None)
def test_pro_rata_shares_never_exceed_share_or_debt(owed: int, pnls: dict[str, int]) -> None:
    shares = prorata.pro_rata_shares(owed, pnls)
    total = sum(pnls.values())
    taken = min(owed, total)
    # each share is its exact share rounded down or up: never more than ceil(taken x pnl / total)
    for a, share in shares.items():
        assert taken * pnls[a] - total < share * total <= taken * pnls[a] + total - 1
        assert share <= pnls[a]
    # and together exactly the debt taken, never more than the debt
    assert sum(shares.values()) == taken <= owed


@given(scores=st.dictionaries(addresses, st.integers(min_value=0, max_value=10**20), max_size=12))
def test_pro_rata_set_is_strictly_ascending_and_only_the_eligible(scores: dict[str, int]) -> None:
    chosen = prorata.pro_rata_set({a.upper().replace("0X", "0x"): s for a, s in scores.items()})
    as_ints = [int(a, 16) for a in chosen]
    assert as_ints == sorted(set(as_ints))  # what AdlTargetsNotAscending requires
    assert {int(a, 16) for a, s in scores.items() if s > 0} == set(as_ints)


def test_pro_rata_shares_refuse_a_target_without_profit() -> None:
    with pytest.raises(ValueError, match="positive profit"):
        prorata.pro_rata_shares(10, {"0x01": 5, "0x02": 0})


@pytest.fixture
def chain(anvil: AnvilNode, bw: Bulwark) -> World:
    c = World(anvil, bw)
    c.seed_pool(500_000)
    return c


def test_keeper_pro_rata_takes_every_share_the_plan_predicts(chain: World) -> None:
    # given ETH under the pro-rata policy, shorts of different sizes and longs a crash bankrupts
    chain.send(chain.bw.ch.functions.setAdlPolicy(ETH, prorata.PRO_RATA), chain.admin)
    assert chain.bw.ch.functions.adlPolicyOf(ETH).call() == prorata.PRO_RATA
    shorts = [chain.new_trader(i, 3_000, "pr-short") for i in range(5)]
    for n, t in enumerate(shorts):
        chain.trade(t, "ETH-USD", -(2 + n * 1.5))
    longs = [chain.new_trader(i, 1_000, "pr-long") for i in range(5)]
    for t in longs:
        chain.trade(t, "ETH-USD", 6)
    k = Keeper(chain.bw, KEEPER, KeeperSettings(adl_max_targets=2))  # the cap is the queue's
    k.run_once()

    # when ETH falls 10% and the keeper runs
    start = chain.set_price("ETH-USD", 2700)["blockNumber"]
    k.run_once()

    # then one pro-rata call presented every short, in ascending address order
    applied = chain.events("AdlProRataApplied", start)
    assert applied, "no pro-rata ADL ran"
    first = applied[0]
    before = first["blockNumber"] - 1
    steps = [
        s
        for s in chain.events("AutoDeleveraged", start)
        if s["transactionHash"] == first["transactionHash"]
    ]
    addresses = sorted((t.address for t in shorts), key=lambda a: int(a, 16))
    assert first["args"]["targets"] == len(addresses)
    assert first["args"]["presentedSizeWad"] == first["args"]["sideOpenInterestWad"]  # complete
    # and every haircut and close equals the plan computed from the state just before
    price = chain.bw.oracle.functions.priceWad(ETH).call(block_identifier=before)
    positions = {}
    for a in addresses:
        p = chain.bw.ch.functions.positionOf(a, ETH).call(block_identifier=before)
        positions[a] = (p[0], rm.unrealized_pnl(p[0], p[1], price))
    debt = chain.bw.ch.functions.badDebtOf(ETH, LONG).call(block_identifier=before)
    owed = rm.adl_debt(debt, chain.bw.fund.functions.availableWad().call(block_identifier=before))
    plan = prorata.pro_rata_plan(owed, positions)
    assert len(plan) == len(steps) == len(addresses)
    assert 0 < owed < sum(v[1] for v in positions.values())  # shares, not whole profits
    assert first["args"]["debtTakenWad"] == prorata.debt_taken(
        owed, {a: v[1] for a, v in positions.items()}
    )
    assert [
        (s["args"]["account"], s["args"]["haircutWad"], s["args"]["closedSizeWad"]) for s in steps
    ] == [(c.account, c.share, c.close_size) for c in plan]
    # the debt fell by exactly the haircuts, and conservation holds
    after = chain.bw.ch.functions.badDebtOf(ETH, LONG).call(block_identifier=first["blockNumber"])
    assert debt - after == sum(c.share for c in plan) == first["args"]["absorbedWad"]
    # and no debt was left, not even rounding wei
    assert chain.bw.ch.functions.totalBadDebtWad().call() == 0
    report = invariants.check(chain.bw)
    assert report.ok, report.as_dict()


def test_gini_of_the_policy_comparison() -> None:
    from bench.adl_policies import gini

    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0
    assert abs(gini([0, 0, 9]) - 2 / 3) < 1e-12  # one of three pays everything: (n - 1) / n
    assert gini([1, 2, 3]) < gini([0, 1, 5])
