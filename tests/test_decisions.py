"""bulwark.keeper.decisions without a chain: which accounts, which batches, cover/ADL/socialise and in what
order, which ADL targets, which unstake requests lapse, whether passes are late; checked by example
and by property against bulwark/core/riskmath.py and the contracts' rules."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from bulwark.core import riskmath as rm
from bulwark.keeper import decisions as dec

WAD = rm.WAD
RISK = rm.RiskParams(
    fund_fee_share=WAD // 10,
    pool_exposure_multiple=5 * WAD,
    keeper_share=WAD // 2,
    socialize_grace_period=3_600,
    reward_floor=5 * WAD,
    reward_ceiling=100 * WAD,
)
CONFIG = rm.MarketConfig(
    im_ratio=WAD // 10,
    mm_ratio=WAD // 20,
    taker_fee=WAD // 1_000,
    penalty_ratio=WAD // 50,
    partial_fraction=WAD // 4,
    max_funding_rate_per_day=WAD // 10,
    skew_scale=10**6 * WAD,
    max_open_interest=10**9 * WAD,
    min_partial_notional=10_000 * WAD,
)
MARKETS = (0, 1, 2)
ME = "0x" + "ee" * 20


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def by_last_digit(account: str, count: int) -> int:
    return int(account[-1], 16) % count


def choose(
    views: list[dec.AccountView], prices: dict[int, int], **kw: object
) -> dec.LiquidationChoice:
    args: dict[str, object] = {
        "indices": dict.fromkeys(prices, 0),
        "pool_margin": 10**30,  # pays any close unless a test says otherwise
        "me": ME,
        "busy": (),
        "block": 100,
        "first_seen": {},
        "sharding": dec.Sharding(),
        "shard_of": by_last_digit,
    }
    args.update(kw)
    return dec.choose_liquidations(views, prices, RISK, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- accounts

positions = st.dictionaries(
    st.sampled_from(MARKETS),
    st.builds(
        lambda size, entry: rm.Position(size, rm.entry_notional(size, entry), 0),
        st.integers(min_value=1, max_value=10**22).flatmap(lambda s: st.sampled_from([s, -s])),
        st.integers(min_value=10**18, max_value=10**23),
    ),
    max_size=3,
)
books = st.lists(
    st.tuples(st.integers(min_value=-(10**21), max_value=10**24), positions),
    min_size=0,
    max_size=12,
)
price_maps = st.fixed_dictionaries(
    {m: st.integers(min_value=10**18, max_value=10**23) for m in MARKETS}
)


def views_of(
    book: list[tuple[int, dict[int, rm.Position]]], prices: dict[int, int]
) -> tuple[list[dec.AccountView], dict[str, rm.Health]]:
    views, healths = [], {}
    for i, (margin, held) in enumerate(book):
        h = rm.health(
            margin, held, prices, dict.fromkeys(MARKETS, 0), dict.fromkeys(MARKETS, CONFIG)
        )
        account = address(i + 1)
        healths[account] = h
        views.append(dec.AccountView(account, h.liquidatable, h.equity, held))
    return views, healths


@settings(max_examples=200, deadline=None)
@given(
    books,
    price_maps,
    st.sets(st.sampled_from(MARKETS)),
    st.integers(min_value=-(10**21), max_value=10**24),
)
def test_choose_liquidations_takes_exactly_the_liquidatable_accounts(
    book: list[tuple[int, dict[int, rm.Position]]],
    prices: dict[int, int],
    stale: set[int],
    pool_margin: int,
) -> None:
    views, healths = views_of(book, prices)
    fresh = {m: p for m, p in prices.items() if m not in stale}
    choice = choose(views, fresh, pool_margin=pool_margin)
    expected = [
        a
        for a, h in healths.items()
        if h.liquidatable and any(m in fresh for m in views[int(a, 16) - 1].positions)
    ]
    assert [a for a, _ in choice.entries] == expected
    assert not choice.deferred and not choice.backups
    for account, market in choice.entries:
        held = views[int(account, 16) - 1].positions
        assert market in held and market in fresh
        if rm.is_bankrupt(healths[account].equity, RISK):
            assert market == min(m for m in held if m in fresh)
        else:
            # The contract's order: a close the pool's margin pays before one it cannot, then the
            # larger notional; the contract refuses a market when another strictly precedes it.
            rank = {
                m: (
                    rm.unrealized_pnl(p.size, p.open_notional, fresh[m]) <= pool_margin,
                    rm.notional(p.size, fresh[m]),
                )
                for m, p in held.items()
                if m in fresh
            }
            assert all(r <= rank[market] for r in rank.values())


@settings(max_examples=200, deadline=None)
@given(
    books,
    price_maps,
    st.integers(min_value=2, max_value=4),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=8),
)
def test_choose_liquidations_shards_and_backs_up_after_the_delay(
    book: list[tuple[int, dict[int, rm.Position]]],
    prices: dict[int, int],
    count: int,
    index: int,
    delay: int,
    waited: int,
) -> None:
    views, healths = views_of(book, prices)
    sharding = dec.Sharding(count, index % count, delay)
    first = choose(views, prices, sharding=sharding)
    liquidatable = [a for a, h in healths.items() if h.liquidatable]
    mine = [a for a in liquidatable if by_last_digit(a, count) == index % count]
    others = [a for a in liquidatable if a not in mine]
    if delay > 0:
        assert [a for a, _ in first.entries] == [a for a in mine if views[int(a, 16) - 1].positions]
        assert list(first.deferred) == others
    assert dict(first.first_seen) == dict.fromkeys(others, 100)
    later = choose(
        views, prices, sharding=sharding, block=100 + waited, first_seen=first.first_seen
    )
    backed = [a for a in others if waited >= delay]
    sendable = [a for a in liquidatable if views[int(a, 16) - 1].positions]
    assert [a for a, _ in later.entries] == [a for a in sendable if a in mine or a in backed]
    assert [a for a, _ in later.backups] == backed
    assert all(since == 100 for _, since in later.backups)


def test_choose_liquidations_skips_own_busy_and_stale_only_accounts() -> None:
    long = {0: rm.Position(WAD, 100 * WAD, 0)}
    views = [
        dec.AccountView(ME, True, 0, long),
        dec.AccountView(address(1), True, 0, long),
        dec.AccountView(address(2), True, 0, {1: rm.Position(WAD, 100 * WAD, 0)}),
        dec.AccountView(address(3), False, 0, long),
        dec.AccountView(address(4), True, 0, {}),
        dec.AccountView(
            address(5),
            True,
            10 * WAD,
            {0: rm.Position(WAD, WAD, 0), 2: rm.Position(-3 * WAD, 3 * WAD, 0)},
        ),
    ]
    choice = choose(views, {0: 100 * WAD, 2: 100 * WAD}, busy=[address(1)])
    assert choice.entries == ((address(5), 2),)  # 3 units at 100 > 1 unit at 100


def test_liquidation_market_takes_a_close_the_pool_can_pay_before_a_larger_one_it_cannot() -> None:
    """The hedged pair of test/foundry/attacks/UnpayableLargestLeg.t.sol: a 60 ETH short 60,000 in
    profit (120,000 notional) and 3 BTC long 73,800 at a loss (106,200 notional)."""
    held = {
        0: rm.Position(-60 * WAD, -180_000 * WAD, 0),
        1: rm.Position(3 * WAD, 180_000 * WAD, 0),
    }
    prices = {0: 2_000 * WAD, 1: 35_400 * WAD}
    indices = dict.fromkeys(prices, 0)
    equity = 4_520 * WAD

    def first(pool_margin: int) -> int | None:
        return dec.liquidation_market(held, prices, indices, pool_margin, RISK, equity)

    assert first(60_000 * WAD) == 0  # the pool pays the profit: the larger notional first
    assert first(60_000 * WAD - 1) == 1  # it cannot: the losing leg, which pays the pool, first
    # Pending funding counts in the value: the index down 50 since the short opened, it owes 3,000,
    # so the pool's margin pays its close at 57,000.
    owing = {0: -50 * WAD, 1: 0}
    assert dec.liquidation_market(held, prices, owing, 57_000 * WAD, RISK, equity) == 0
    assert dec.liquidation_market(held, prices, owing, 57_000 * WAD - 1, RISK, equity) == 1
    # Unpayable, a leg closes in full, not in part.
    cfg = dataclasses.replace(CONFIG, min_partial_notional=0)
    args = (held[0].size, prices[0], cfg, equity, 5_655 * WAD, RISK)
    assert rm.liquidation_size(*args) != held[0].size
    assert rm.liquidation_size(*args, payable=False) == held[0].size


# ---------------------------------------------------------------------------- batches

entries_lists = st.lists(
    st.tuples(st.integers(min_value=1, max_value=500).map(address), st.sampled_from(MARKETS)),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(
    entries_lists,
    st.integers(min_value=20_000, max_value=2_000_000),
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=100_000, max_value=60_000_000),
    st.integers(min_value=1, max_value=400),
)
def test_plan_batches_covers_every_entry_once_within_the_limits(
    entries: list[tuple[str, int]], estimate: int, probe_size: int, block_gas: int, max_batch: int
) -> None:
    probe = dec.probe_entries(entries, max_batch)
    assert len(probe) <= min(dec.PROBE_ENTRIES, max_batch)
    per_entry = dec.gas_per_entry(estimate * probe_size, probe_size)
    plans = dec.plan_batches(entries, per_entry, block_gas, max_batch)
    assert [e for p in plans for e in p.entries] == entries  # every entry once, in order
    for p in plans:
        assert 1 <= len(p.entries) <= max_batch
        assert p.gas <= block_gas
        assert p.gas == min(block_gas, int(per_entry * len(p.entries)) + dec.BATCH_FIXED_GAS)
        if len(p.entries) > 1:  # a quarter of the block, unless one entry alone is more
            assert per_entry * len(p.entries) <= block_gas // dec.BATCH_BLOCK_SHARE
    sizes = [len(p.entries) for p in plans]
    assert all(s == sizes[0] for s in sizes[:-1])  # equal chunks, the last the remainder


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=21_000, max_value=30_000_000),
    st.booleans(),
    st.integers(min_value=21_000, max_value=30_000_000),
    st.integers(min_value=1_000_000, max_value=30_000_000),
)
def test_fitted_gas_adds_headroom_and_never_exceeds_the_block(
    checked: int, fits: bool, predicted: int, block_gas: int
) -> None:
    checked = min(checked, block_gas)
    gas, fallback = dec.fitted_gas(checked, fits, predicted, block_gas)
    assert (fallback is None) is fits
    assert gas <= block_gas
    base = checked if fits else min(block_gas, 4 * predicted)
    assert fallback in (None, base)
    assert gas == min(block_gas, base * 10_300 // 10_000)
    assert gas >= base


# ---------------------------------------------------------------------------- bad debt


def resolve(
    state: dec.SideState, policy: dec.BadDebtPolicy, targets: tuple[str, ...], recorded_at: int
) -> tuple[dec.Act, list[dec.Act]]:
    """What the daemon does: answers each question the decision asks, once, until it acts or
    waits. Returns the final action and the questions asked."""
    asked = []
    while (act := dec.side_action(state, policy)) in (
        dec.Act.NEED_TARGETS,
        dec.Act.NEED_GRACE_CLOCK,
    ):
        assert act not in asked
        asked.append(act)
        if act is dec.Act.NEED_TARGETS:
            state = dataclasses.replace(state, targets=targets)
        else:
            state = dataclasses.replace(state, recorded_at=recorded_at)
    return act, asked


sides = st.builds(
    dec.SideState,
    fund_available=st.sampled_from([0, 0, 1, 10**21]),
    price_fresh=st.booleans(),
    now=st.integers(min_value=10_000, max_value=20_000),
    grace_period=st.integers(min_value=0, max_value=10_000),
)
policies = st.builds(dec.BadDebtPolicy, adl_role=st.booleans(), socialize=st.booleans())
target_lists = st.lists(st.integers(1, 9).map(address), max_size=3, unique=True).map(tuple)


@settings(max_examples=500, deadline=None)
@given(
    sides,
    policies,
    target_lists,
    st.integers(min_value=0, max_value=20_000),
    st.integers(min_value=1, max_value=10**24),
)
def test_side_action_covers_then_deleverages_then_socialises(
    state: dec.SideState,
    policy: dec.BadDebtPolicy,
    targets: tuple[str, ...],
    recorded_at: int,
    debt: int,
) -> None:
    act, asked = resolve(state, policy, targets, recorded_at)
    grace_over = state.now >= recorded_at + state.grace_period
    # cover whenever the fund has anything; ADL only for what the fund cannot pay
    assert (act is dec.Act.COVER) == (state.fund_available > 0)
    if act is dec.Act.COVER:
        assert asked == []
    if act is dec.Act.DELEVERAGE:
        assert rm.adl_debt(debt, state.fund_available) == debt
        assert policy.adl_role and targets and state.price_fresh
    if act is dec.Act.SOCIALISE:
        assert state.fund_available == 0 and state.price_fresh and grace_over
        assert policy.socialize and not (policy.adl_role and targets)
        # the same side with money in the fund is covered; with a target (and the role), deleveraged
        assert (
            resolve(dataclasses.replace(state, fund_available=1), policy, targets, recorded_at)[0]
            is dec.Act.COVER
        )
        with_role = dataclasses.replace(policy, adl_role=True)
        assert resolve(state, with_role, (address(1),), recorded_at)[0] is dec.Act.DELEVERAGE
    if act is dec.Act.WAIT_STALE_PRICE:
        assert state.fund_available == 0 and not state.price_fresh and asked == []
    if act is dec.Act.WAIT_GRACE:
        assert not (policy.socialize and grace_over)
    # the chain is asked for targets only with the ADL role, for the grace clock only without targets
    assert (dec.Act.NEED_TARGETS in asked) <= policy.adl_role
    if dec.Act.NEED_GRACE_CLOCK in asked:
        assert act in (dec.Act.SOCIALISE, dec.Act.WAIT_GRACE)


def test_side_action_examples() -> None:
    state = dec.SideState(fund_available=0, price_fresh=True, now=5_000, grace_period=3_600)
    role = dec.BadDebtPolicy(adl_role=True, socialize=True)
    no_role = dec.BadDebtPolicy(adl_role=False, socialize=True)
    assert dec.side_action(state, role) is dec.Act.NEED_TARGETS
    assert dec.side_action(state, no_role) is dec.Act.NEED_GRACE_CLOCK
    assert resolve(state, role, (address(1),), 0)[0] is dec.Act.DELEVERAGE
    assert resolve(state, role, (), 1_400)[0] is dec.Act.SOCIALISE  # 1,400 + 3,600 = now
    assert resolve(state, role, (), 1_401)[0] is dec.Act.WAIT_GRACE
    off = dec.BadDebtPolicy(adl_role=True, socialize=False)
    assert resolve(state, off, (), 0)[0] is dec.Act.WAIT_GRACE
    assert dec.socializable_at(1_400, 3_600) == 5_000


def test_bad_debt_turn_and_side_order() -> None:
    solo = dec.Sharding()
    backup = dec.Sharding(keeper_count=2, keeper_index=1, backup_delay_blocks=3)
    assert dec.bad_debt_turn(0, 7, 10, solo) == (False, None)
    assert dec.bad_debt_turn(5, None, 10, solo) == (True, 10)
    assert dec.bad_debt_turn(5, None, 10, backup) == (False, 10)
    assert dec.bad_debt_turn(5, 10, 12, backup) == (False, 10)
    assert dec.bad_debt_turn(5, 10, 13, backup) == (True, 10)
    assert dec.bad_debt_turn(0, 10, 14, backup) == (False, None)  # settled: the clock restarts
    debts = {(1, 0): 5, (0, 1): 7, (0, 0): 2}
    assert dec.bad_debt_sides(debts) == [(0, 0, 2), (0, 1, 7), (1, 0, 5)]


# ---------------------------------------------------------------------------- ADL targets

adl_books = st.lists(
    st.tuples(
        st.integers(min_value=10**17, max_value=10**22),  # size of a long
        st.integers(min_value=10**18, max_value=4 * 10**21),  # entry price
        st.integers(min_value=10**18, max_value=10**23),  # equity
    ),
    min_size=0,
    max_size=15,
)


@settings(max_examples=300, deadline=None)
@given(
    adl_books,
    st.integers(min_value=10**18, max_value=4 * 10**21),
    st.integers(min_value=1, max_value=10**24),
    st.integers(min_value=1, max_value=20),
    st.booleans(),
)
def test_adl_targets_follow_the_contract_order_and_stop_once_the_debt_is_covered(
    book: list[tuple[int, int, int]], price: int, debt: int, max_targets: int, pro_rata: bool
) -> None:
    positions, scores = {}, {}
    for i, (size, entry, equity) in enumerate(book):
        account = address(i + 1)
        p = rm.Position(size, rm.entry_notional(size, entry), 0)
        positions[account] = p
        pnl = rm.unrealized_pnl(p.size, p.open_notional, price)
        scores[account] = rm.adl_score(pnl, p.open_notional, rm.notional(size, price), equity)
    chosen = dec.adl_targets(scores, positions, price, debt, max_targets, pro_rata)
    eligible = [a for a, s in scores.items() if s > 0]
    if pro_rata:
        # every eligible position, strictly ascending by address
        assert sorted(chosen) == sorted(eligible)
        assert [int(a, 16) for a in chosen] == sorted(int(a, 16) for a in chosen)
        return
    # a prefix of the contract's order (non-increasing score), within the cap
    assert chosen == rm.rank_adl(scores)[: len(chosen)]
    assert len(chosen) <= max_targets
    assert all(scores[a] >= scores[b] for a, b in itertools.pairwise(chosen))

    def profit(accounts: list[str]) -> int:
        return sum(
            max(0, rm.unrealized_pnl(positions[a].size, positions[a].open_notional, price))
            for a in accounts
        )

    # no shorter prefix (of at least two) already covered the debt; a full list either covers it
    # or took every eligible target the cap allows
    for n in range(2, len(chosen)):
        assert profit(chosen[:n]) <= debt
    if profit(chosen) <= debt or len(chosen) < 2:
        assert len(chosen) == min(len(eligible), max_targets)


def test_trim_adl_targets_cuts_before_out_of_order_and_drops_ineligible() -> None:
    a, b, c = address(1), address(2), address(3)
    assert dec.trim_adl_targets([a, b, c], "AdlOutOfOrder", b) == [a]
    assert dec.trim_adl_targets([a, b, c], "AdlTargetIneligible", b) == [a, c]
    assert dec.trim_adl_targets([a, b, c], "AdlTargetLeftOwing", a) == [b, c]
    assert dec.trim_adl_targets([a, b, c], "AdlOutOfOrder", address(9)) is None
    assert dec.trim_adl_targets([a, b, c], "AdlNotRequired", a) is None
    assert dec.trim_adl_targets([a, b, c], "AdlOutOfOrder", None) is None


# ---------------------------------------------------------------------------- fund housekeeping

unstake_requests = st.lists(
    st.builds(
        dec.UnstakeRequestView,
        request_id=st.integers(min_value=0, max_value=50),
        open=st.booleans(),
        ready_at=st.integers(min_value=0, max_value=10**6),
        claim_window=st.integers(min_value=3_600, max_value=30 * 86_400),
    ),
    unique_by=lambda r: r.request_id,
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    unstake_requests,
    st.integers(min_value=0, max_value=4 * 10**6),
    st.sets(st.integers(min_value=0, max_value=50)),
    st.integers(min_value=0, max_value=10),
)
def test_lapsed_requests_are_exactly_the_open_ones_past_their_claim_window(
    requests: list[dec.UnstakeRequestView], now: int, busy: set[int], limit: int
) -> None:
    chosen = dec.lapsed_requests(requests, now, busy, limit)
    by_id = {r.request_id: r for r in requests}
    # the contract's rule (lapse reverts FundClaimWindowOpen while now < readyAt + claimWindow)
    due = sorted(
        r.request_id
        for r in requests
        if r.open and now >= r.ready_at + r.claim_window and r.request_id not in busy
    )
    assert chosen == due[:limit]
    for request_id in chosen:
        r = by_id[request_id]
        assert r.open and now >= r.claim_ends_at and request_id not in busy


def test_lapsed_requests_examples() -> None:
    req = dec.UnstakeRequestView(7, True, ready_at=1_000, claim_window=100)
    assert dec.lapsed_requests([req], 1_099, (), 5) == []  # the window is still open
    assert dec.lapsed_requests([req], 1_100, (), 5) == [7]  # it ended at readyAt + claimWindow
    assert dec.lapsed_requests([req], 1_100, {7}, 5) == []  # a lapse of it is in flight
    closed = dataclasses.replace(req, open=False)
    assert dec.lapsed_requests([closed], 10**9, (), 5) == []  # claimed or lapsed already


# ---------------------------------------------------------------------------- liveness


def test_block_interval_learns_from_newer_heads_only() -> None:
    assert dec.block_interval(None, None, (10, 120)) is None
    assert dec.block_interval(None, (10, 120), (12, 144)) == 12.0
    assert dec.block_interval(12.0, (12, 144), (13, 146)) == 0.8 * 12.0 + 0.2 * 2.0
    assert dec.block_interval(12.0, (12, 144), (12, 150)) == 12.0  # not a newer block
    assert dec.block_interval(12.0, (12, 144), (13, 140)) == 12.0  # older in time


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0, max_value=1_000),
    st.one_of(st.none(), st.floats(min_value=0.01, max_value=60)),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=1, max_value=10),
    st.booleans(),
)
def test_passes_late_only_while_blocks_come_or_the_node_is_away(
    since: float, interval: float | None, behind: int, limit: int, away: bool
) -> None:
    late = dec.passes_late(since, interval, behind, limit, away)
    if behind >= limit:
        assert late  # the head ran `limit` blocks past the last pass
    elif behind == 0 and not away:
        assert not late  # a quiet chain is not late
    elif interval is None:
        assert not late  # nothing learnt yet
    else:
        assert late == (since > limit * max(interval, 1.0))


def test_raised_gas_adds_fifteen_percent_up_to_the_block() -> None:
    assert dec.raised_gas(1_000_000, 30_000_000) == 1_150_000
    assert dec.raised_gas(29_000_000, 30_000_000) == 30_000_000
