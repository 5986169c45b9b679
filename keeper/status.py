"""What `bulwark status`, `bulwark account` and `bulwark fund status` show, read from the chain.

Every number comes from a view call at one block; the few derived ones (liquidation price, ADL
queue position, coverage) are computed here with exact integers and documented in docs/cli.md.
The functions return plain dataclasses in WAD integers; the CLI formats them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from eth_utils.address import to_checksum_address

from keeper import invariants, riskmath
from keeper.chain import WAD, Bulwark, BulwarkError, TxReverted

BATCH = 200
LONG, SHORT = 0, 1


# ---------------------------------------------------------------------------- reading


def batch_call(bw: Bulwark, fns: Sequence[Any], block: int | str = "latest") -> list[Any]:
    """Calls many views, in JSON-RPC batches of ``BATCH``; a failing batch is retried one by one so
    that a revert surfaces as :class:`TxReverted` with its decoded error."""
    results: list[Any] = []
    for start in range(0, len(fns), BATCH):
        chunk = fns[start : start + BATCH]
        try:
            with bw.w3.batch_requests() as batch:
                for fn in chunk:
                    batch.add(fn)
                answers = list(batch.execute())
            if len(answers) != len(chunk) or any(isinstance(a, BaseException) for a in answers):
                raise ValueError("incomplete batch")
        except Exception:
            answers = [bw.call(fn, block=block) for fn in chunk]
        results.extend(answers)
    return results


def try_price(bw: Bulwark, market_id: int) -> tuple[int | None, str | None]:
    """The oracle price of a market, or None and the decoded reason (a stale feed, say)."""
    try:
        return int(bw.call(bw.oracle.functions.priceWad(market_id), action="priceWad")), None
    except TxReverted as exc:
        return None, str(exc.error)


def latest_timestamp(bw: Bulwark) -> int:
    return int(bw.w3.eth.get_block("latest")["timestamp"])


# ---------------------------------------------------------------------------- markets


@dataclass
class MarketView:
    id: int
    name: str
    price: int | None
    price_error: str | None
    config: riskmath.MarketConfig
    state: riskmath.MarketState
    bad_debt_long: int
    bad_debt_short: int

    @property
    def oi_notional(self) -> int | None:
        """Notional of every trader position, both sides: (long OI + short OI) x price."""
        if self.price is None:
            return None
        base = self.state.long_open_interest + self.state.short_open_interest
        return riskmath.mul_wad_up(base, self.price)

    @property
    def funding_rate_per_day(self) -> int:
        """Positive: longs pay shorts (traders are net long)."""
        return riskmath.rate_per_day(
            self.state.sum_size, self.config.skew_scale, self.config.max_funding_rate_per_day
        )

    @property
    def pool_exposure(self) -> int | None:
        """What the exposure cap counts: the larger side's open interest x price (the pool's size if
        either side of the book vanished; it bounds |pool size| x price)."""
        if self.price is None:
            return None
        return riskmath.pool_exposure(self.state, self.price)


def markets(bw: Bulwark) -> list[MarketView]:
    ch = bw.ch.functions
    count = int(bw.call(ch.marketCount()))
    views: list[MarketView] = []
    for m in range(count):
        name, config, state, long_debt, short_debt = batch_call(
            bw,
            [
                ch.marketName(m),
                ch.marketConfig(m),
                ch.marketState(m),
                ch.badDebtOf(m, LONG),
                ch.badDebtOf(m, SHORT),
            ],
        )
        price, error = try_price(bw, m)
        views.append(
            MarketView(
                id=m,
                name=str(name),
                price=price,
                price_error=error,
                config=riskmath.MarketConfig.from_tuple(config),
                state=riskmath.MarketState.from_tuple(state),
                bad_debt_long=int(long_debt),
                bad_debt_short=int(short_debt),
            )
        )
    return views


# ---------------------------------------------------------------------------- accounts


@dataclass
class AdlQueuePlace:
    """Where a position stands among the profitable positions of its side, first out = rank 1."""

    score: int
    rank: int | None  # None: not in the queue (losing, or the score is zero)
    queue_length: int

    @property
    def percentile(self) -> int | None:
        """Share of the queue at or ahead of this position, in percent, rounded up (20: top 20%)."""
        if self.rank is None or self.queue_length == 0:
            return None
        return -(-100 * self.rank // self.queue_length)

    @property
    def lights(self) -> int:
        """0 to 5 lights as BitMEX shows them: 5 for the top fifth of the queue, 1 for the last."""
        if self.rank is None or self.queue_length == 0:
            return 0
        return 5 - (self.rank - 1) * 5 // self.queue_length


@dataclass
class PositionView:
    market_id: int
    market: str
    size: int
    open_notional: int
    price: int
    notional: int
    upnl: int
    pending_funding: int
    liquidation_price: int | None
    adl: AdlQueuePlace

    @property
    def entry_price(self) -> int:
        return abs(self.open_notional) * WAD // abs(self.size) if self.size else 0

    @property
    def side(self) -> str:
        return "long" if self.size > 0 else "short"


@dataclass
class AccountView:
    address: str
    wallet_tokens: int
    margin: int
    equity: int
    initial_margin: int
    maintenance_margin: int
    liquidatable: bool
    positions: list[PositionView] = field(default_factory=list)

    @property
    def notional(self) -> int:
        return sum(p.notional for p in self.positions)

    @property
    def margin_ratio(self) -> int | None:
        """Maintenance margin / equity (WAD): liquidation at 100%; None when equity <= 0."""
        if self.equity <= 0:
            return None
        return self.maintenance_margin * WAD // self.equity

    @property
    def leverage(self) -> int | None:
        """Total notional / equity (WAD); None when equity <= 0."""
        if self.equity <= 0:
            return None
        return self.notional * WAD // self.equity

    @property
    def free_margin(self) -> int:
        """What withdrawing or opening can still use: min(margin, equity - initial margin), >= 0."""
        return max(0, min(self.margin, self.equity - self.initial_margin))


def liquidation_price(
    size: int, price: int, equity: int, maintenance_margin: int, mm_ratio: int
) -> int | None:
    """The price of this market at which equity = maintenance margin, other prices held fixed.

    Equity moves by size x dP and maintenance margin by mmRatio x |size| x dP, so
    dP = (MMR - equity) / (size - mmRatio x |size|). Funding and fees are held fixed. None when
    the position is flat or no positive price gets there (a long backed by more than its notional).
    """
    if size == 0:
        return None
    slope = Fraction(size, WAD) - Fraction(mm_ratio * abs(size), WAD * WAD)
    target = Fraction(price) + Fraction(maintenance_margin - equity) / slope
    if target <= 0:
        return None
    # Round toward the side that triggers sooner: up for a long, down for a short.
    return (
        -(-target.numerator // target.denominator)
        if size > 0
        else target.numerator // target.denominator
    )


def _positions(bw: Bulwark, accounts: Sequence[str], market_id: int) -> list[riskmath.Position]:
    fns = [bw.ch.functions.positionOf(a, market_id) for a in accounts]
    return [riskmath.Position.from_tuple(t) for t in batch_call(bw, fns)]


def adl_place(
    bw: Bulwark, address: str, market_id: int, size: int, accounts: Iterable[str]
) -> AdlQueuePlace:
    """The position's ADL score and its rank among the positions of the same side in the market."""
    others = sorted({to_checksum_address(a) for a in accounts} | {address})
    positions = _positions(bw, others, market_id)
    same_side = [
        a
        for a, p in zip(others, positions, strict=True)
        if p.size != 0 and (p.size > 0) == (size > 0)
    ]
    scores: list[int] = []
    for start in range(0, len(same_side), BATCH):
        chunk = same_side[start : start + BATCH]
        scores += [int(s) for s in bw.call(bw.ch.functions.adlScoresOf(market_id, chunk))]
    by_account = dict(zip(same_side, scores, strict=True))
    mine = by_account.get(address, 0)
    queue = [s for s in scores if s > 0]
    if mine == 0:
        return AdlQueuePlace(0, None, len(queue))
    rank = 1 + sum(1 for s in queue if s > mine)
    return AdlQueuePlace(mine, rank, len(queue))


def account(bw: Bulwark, address: str, accounts: Iterable[str] | None = None) -> AccountView:
    """An account's margin, health, and every open position with its risk figures.

    ``accounts`` is the population for the ADL queue (default: every account in the events).
    """
    address = to_checksum_address(address)
    ch = bw.ch.functions
    margin, open_markets, wallet = batch_call(
        bw, [ch.marginOf(address), ch.openMarketsOf(address), bw.token.functions.balanceOf(address)]
    )
    equity, imr, mmr, liquidatable = bw.call(ch.healthOf(address), action="healthOf")
    view = AccountView(
        address, int(wallet), int(margin), int(equity), int(imr), int(mmr), bool(liquidatable)
    )
    if not open_markets:
        return view
    population = set(accounts) if accounts is not None else invariants.known_accounts(bw)
    names = {m.id: name for name, m in bw.deployment.markets.items()}
    for market_id in sorted(int(m) for m in open_markets):
        position_t, config_t, index = batch_call(
            bw,
            [
                ch.positionOf(address, market_id),
                ch.marketConfig(market_id),
                ch.currentFundingIndexWad(market_id),
            ],
        )
        position = riskmath.Position.from_tuple(position_t)
        config = riskmath.MarketConfig.from_tuple(config_t)
        price = int(bw.call(bw.oracle.functions.priceWad(market_id), action="priceWad"))
        view.positions.append(
            PositionView(
                market_id=market_id,
                market=names.get(market_id) or str(bw.call(ch.marketName(market_id))),
                size=position.size,
                open_notional=position.open_notional,
                price=price,
                notional=riskmath.notional(position.size, price),
                upnl=riskmath.unrealized_pnl(position.size, position.open_notional, price),
                pending_funding=riskmath.pending_funding(position, int(index)),
                liquidation_price=liquidation_price(
                    position.size, price, view.equity, view.maintenance_margin, config.mm_ratio
                ),
                adl=adl_place(bw, address, market_id, position.size, population),
            )
        )
    return view


# ---------------------------------------------------------------------------- the fund


@dataclass
class UnstakeView:
    request_id: int
    owner: str
    shares: int
    assets_at_request: int  # tokens
    value_now: int  # tokens
    ready_at: int

    @property
    def claimable(self) -> int:
        """What a claim pays: min(value at request, value now), in tokens."""
        return min(self.assets_at_request, self.value_now)


@dataclass
class FundView:
    assets: int  # WAD
    available: int  # WAD
    window_remaining: int  # WAD
    window_cap: int  # WAD, of the current window
    window_ends_at: int
    window_cap_ratio: int
    cap_tokens: int
    cooldown: int
    total_shares: int
    share_decimals: int
    total_assets_tokens: int
    holder: str | None = None
    holder_shares: int = 0
    holder_value_tokens: int = 0
    requests: list[UnstakeView] = field(default_factory=list)


def fund(bw: Bulwark, holder: str | None = None) -> FundView:
    f = bw.fund.functions
    (
        assets,
        available,
        remaining,
        cap,
        start,
        duration,
        ratio,
        cap_tokens,
        cooldown,
        supply,
        decimals,
        total_assets,
    ) = batch_call(
        bw,
        [
            f.assetsWad(),
            f.availableWad(),
            f.windowRemainingWad(),
            f.windowCapWad(),
            f.windowStart(),
            f.windowDuration(),
            f.windowCapRatioWad(),
            f.capAssets(),
            f.cooldown(),
            f.totalSupply(),
            f.decimals(),
            f.totalAssets(),
        ],
    )
    view = FundView(
        assets=int(assets),
        available=int(available),
        window_remaining=int(remaining),
        window_cap=int(cap),
        window_ends_at=int(start) + int(duration),
        window_cap_ratio=int(ratio),
        cap_tokens=int(cap_tokens),
        cooldown=int(cooldown),
        total_shares=int(supply),
        share_decimals=int(decimals),
        total_assets_tokens=int(total_assets),
    )
    if holder is None:
        return view
    view.holder = to_checksum_address(holder)
    view.holder_shares = int(bw.call(f.balanceOf(view.holder)))
    view.holder_value_tokens = int(bw.call(f.convertToAssets(view.holder_shares)))
    view.requests = unstake_requests(bw, view.holder)
    return view


def unstake_requests(bw: Bulwark, owner: str) -> list[UnstakeView]:
    """Open (unclaimed) unstake requests of `owner`, from the fund's events."""
    logs = bw.fund.events.UnstakeRequested.get_logs(
        from_block=bw.deployment.deploy_block, argument_filters={"owner": owner}
    )
    found: list[UnstakeView] = []
    for log in logs:
        request_id = int(log["args"]["requestId"])
        req_owner, ready_at, shares, assets = bw.call(bw.fund.functions.unstakeRequest(request_id))
        if int(str(req_owner), 16) == 0:
            continue  # claimed
        value_now = int(bw.call(bw.fund.functions.convertToAssets(int(shares))))
        found.append(
            UnstakeView(request_id, req_owner, int(shares), int(assets), value_now, int(ready_at))
        )
    return found


# ---------------------------------------------------------------------------- the protocol


@dataclass
class LiquidatableAccount:
    address: str
    equity: int
    maintenance_margin: int


@dataclass
class ProtocolStatus:
    block: int
    timestamp: int
    reduce_only: bool
    markets: list[MarketView]
    pool_equity: int | None
    pool_error: str | None
    pool_shares: int
    fund: FundView
    total_bad_debt: int
    bad_debt_since: int
    accounts: int
    liquidatable: list[LiquidatableAccount]
    health_error: str | None
    conservation: invariants.ConservationReport

    @property
    def oi_notional(self) -> int | None:
        values = [m.oi_notional for m in self.markets]
        if any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    @property
    def coverage(self) -> int | None:
        """Fund assets / open-interest notional (WAD); None with no open interest or no price."""
        oi = self.oi_notional
        if not oi:
            return None
        return self.fund.assets * WAD // oi


def liquidatable_accounts(bw: Bulwark, accounts: Sequence[str]) -> list[LiquidatableAccount]:
    """The accounts below maintenance margin now, confirmed with `healthsOf` in batches."""
    found: list[LiquidatableAccount] = []
    for start in range(0, len(accounts), BATCH):
        chunk = list(accounts[start : start + BATCH])
        healths = bw.call(bw.ch.functions.healthsOf(chunk), action="healthsOf")
        for address, (equity, _imr, mmr, liquidatable) in zip(chunk, healths, strict=True):
            if liquidatable:
                found.append(LiquidatableAccount(address, int(equity), int(mmr)))
    return found


def protocol(bw: Bulwark) -> ProtocolStatus:
    block = bw.w3.eth.get_block("latest")
    number = int(block["number"])
    ch = bw.ch.functions
    reduce_only, total_bad_debt, since, pool_shares = batch_call(
        bw,
        [ch.reduceOnly(), ch.totalBadDebtWad(), ch.badDebtSince(), bw.pool.functions.totalSupply()],
    )
    pool_equity: int | None = None
    pool_error: str | None = None
    try:
        pool_equity = int(bw.call(ch.poolEquityWad(), action="poolEquityWad"))
    except TxReverted as exc:
        pool_error = str(exc.error)
    pool_address, fund_address = bw.call(ch.pool()), bw.call(ch.fund())
    accounts = sorted(invariants.known_accounts(bw, to_block=number) - {pool_address, fund_address})
    liquidatable: list[LiquidatableAccount] = []
    health_error: str | None = None
    try:
        liquidatable = liquidatable_accounts(bw, accounts)
    except TxReverted as exc:
        health_error = str(exc.error)
    return ProtocolStatus(
        block=number,
        timestamp=int(block["timestamp"]),
        reduce_only=bool(reduce_only),
        markets=markets(bw),
        pool_equity=pool_equity,
        pool_error=pool_error,
        pool_shares=int(pool_shares),
        fund=fund(bw),
        total_bad_debt=int(total_bad_debt),
        bad_debt_since=int(since),
        accounts=len(accounts),
        liquidatable=liquidatable,
        health_error=health_error,
        conservation=invariants.check(bw, accounts, block=number),
    )


def require_code(bw: Bulwark) -> None:
    """Fails clearly when the deployment's contracts are not on this chain (a restarted node)."""
    address = to_checksum_address(bw.deployment.contracts["ClearingHouse"])
    if not bw.w3.eth.get_code(address):
        raise BulwarkError(
            f"no ClearingHouse at {address} on this chain: the deployment file belongs to another "
            "chain or an earlier run of the node; run `bulwark deploy`"
        )
