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

from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from bulwark.chain.contracts import WAD, Bulwark, BulwarkError, TxReverted
from bulwark.chain.rpc import decode_output, function_call, rpc_batch
from bulwark.core import riskmath
from bulwark.keeper import invariants

BATCH = 200
LONG, SHORT = 0, 1


# ---------------------------------------------------------------------------- reading


def batch_call(bw: Bulwark, fns: Sequence[Any], block: int | str = "latest") -> list[Any]:
    """Calls many views at `block`, in JSON-RPC batches of ``BATCH`` (:func:`bulwark.chain.rpc.rpc_batch`);
    a call that fails is made again alone so that a revert surfaces as :class:`TxReverted` with
    its decoded error."""
    requests = [function_call(str(fn.address), fn.abi, fn.args, block) for fn in fns]
    try:
        replies = rpc_batch(bw.w3, requests, BATCH)
    except (BulwarkError, ValueError, OSError):  # the node refused or lost the batch: one by one
        replies = [None] * len(fns)
    results: list[Any] = []
    for fn, reply in zip(fns, replies, strict=True):
        if isinstance(reply, str):
            try:
                results.append(decode_output(fn.abi, reply))
                continue
            except (DecodingError, ValueError):
                pass
        results.append(bw.call(fn, block=block))
    return results


def try_price(bw: Bulwark, market_id: int) -> tuple[int | None, str | None]:
    """The oracle price of a market, or None and the decoded reason (a stale feed, say)."""
    try:
        return int(bw.call(bw.oracle.functions.priceWad(market_id), action="priceWad")), None
    except TxReverted as exc:
        return None, str(exc.error)


def feed_reading(bw: Bulwark, market: str) -> tuple[int | None, int | None]:
    """The feed's latest answer in WAD and when it was published, read from the aggregator itself
    (so it reads even when the adapter refuses it as stale); (None, None) if the feed cannot say."""
    feed = bw.feeds.get(market)
    if feed is None:
        return None, None
    try:
        _round, answer, _started, updated_at, _answered = feed.functions.latestRoundData().call()
        decimals = int(feed.functions.decimals().call())
    except Exception:
        return None, None
    if int(answer) <= 0 or decimals > 18:
        return None, int(updated_at)
    return int(answer) * 10 ** (18 - decimals), int(updated_at)


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
    last_price: int | None = None  # the feed's latest answer, even when stale
    updated_at: int | None = None  # when the feed published it

    @property
    def stale(self) -> bool:
        """The adapter refuses the price (older than its heartbeat, or invalid)."""
        return self.price is None

    @property
    def mark_price(self) -> int | None:
        """The oracle price, else the feed's last answer (marked stale by the caller)."""
        return self.price if self.price is not None else self.last_price

    @property
    def oi_notional(self) -> int | None:
        """Notional of every trader position, both sides: (long OI + short OI) x price (the last
        feed answer when the price is stale)."""
        if self.mark_price is None:
            return None
        base = self.state.long_open_interest + self.state.short_open_interest
        return riskmath.mul_wad_up(base, self.mark_price)

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
        if self.mark_price is None:
            return None
        return riskmath.pool_exposure(self.state, self.mark_price)


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
        last_price, updated_at = feed_reading(bw, str(name))
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
                last_price=last_price,
                updated_at=updated_at,
            )
        )
    return views


@dataclass
class MarketTerms:
    """A market's terms and the room left under its caps (WAD; sizes in base units)."""

    market: MarketView
    risk: riskmath.RiskParams
    pool_cap: int | None  # floor(pool equity x k): the most exposure the pool takes per market
    buy_room: int | None  # the largest buy the pool takes now (base units), None: unknown
    sell_room: int | None

    @property
    def max_leverage(self) -> int | None:
        im = self.market.config.im_ratio
        return WAD * WAD // im if im else None

    @property
    def long_oi_room(self) -> int:
        c, st = self.market.config, self.market.state
        return max(0, c.max_open_interest - st.long_open_interest)

    @property
    def short_oi_room(self) -> int:
        c, st = self.market.config, self.market.state
        return max(0, c.max_open_interest - st.short_open_interest)


def pool_room(cap: int, state: riskmath.MarketState, price: int) -> tuple[int, int]:
    """The largest new long and new short the pool takes in one market: the larger side's open
    interest x price, rounded up, must stay within ``cap`` (TradeLogic's exposure check)."""
    most = cap * WAD // price if price > 0 else 0
    return max(0, most - state.long_open_interest), max(0, most - state.short_open_interest)


def market_terms(
    bw: Bulwark, views: Sequence[MarketView], pool_equity: int | None
) -> list[MarketTerms]:
    risk = riskmath.RiskParams.from_tuple(bw.call(bw.ch.functions.riskParams()))
    cap = (
        riskmath.mul_wad_down(max(pool_equity, 0), risk.pool_exposure_multiple)
        if pool_equity is not None
        else None
    )
    terms = []
    for m in views:
        price = m.mark_price
        if cap is None or price is None:
            buy = sell = None
        else:
            buy, sell = pool_room(cap, m.state, price)
        terms.append(MarketTerms(m, risk, cap, buy, sell))
    return terms


def read_pool_equity(bw: Bulwark) -> tuple[int | None, str | None]:
    try:
        return int(bw.call(bw.ch.functions.poolEquityWad(), action="poolEquityWad")), None
    except TxReverted as exc:
        return None, str(exc.error)


# ---------------------------------------------------------------------------- accounts


@dataclass
class AdlQueuePlace:
    """Where a position stands among the profitable positions of its side, first out = rank 1."""

    score: int
    rank: int | None  # None: not in the queue (losing, or the score is zero)
    queue_length: int
    known: bool = True  # False: the scores could not be read (a stale price)

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
    stale: dict[str, int] = field(default_factory=dict)  # market -> when its last price was set
    stale_error: str | None = None  # why the chain refused to value the account

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

    ``accounts`` is the population for the ADL queue (default: every account in the events). When
    a feed is stale the chain refuses to value the account; then the figures are computed here
    (bulwark.core.riskmath, the contract's arithmetic) at the feeds' last answers, and ``stale`` names
    the markets whose price is old and since when.
    """
    address = to_checksum_address(address)
    ch = bw.ch.functions
    margin, open_markets, wallet = batch_call(
        bw, [ch.marginOf(address), ch.openMarketsOf(address), bw.token.functions.balanceOf(address)]
    )
    market_ids = sorted(int(m) for m in open_markets)
    names = {m.id: name for name, m in bw.deployment.markets.items()}
    stale_error: str | None = None
    try:
        equity, imr, mmr, liquidatable = bw.call(ch.healthOf(address), action="healthOf")
    except TxReverted as exc:
        if not exc.error.name.startswith("Oracle"):
            raise
        stale_error = str(exc.error)
    positions: dict[int, riskmath.Position] = {}
    configs: dict[int, riskmath.MarketConfig] = {}
    states: dict[int, riskmath.MarketState] = {}
    for market_id in market_ids:
        position_t, config_t, state_t = batch_call(
            bw,
            [
                ch.positionOf(address, market_id),
                ch.marketConfig(market_id),
                ch.marketState(market_id),
            ],
        )
        positions[market_id] = riskmath.Position.from_tuple(position_t)
        configs[market_id] = riskmath.MarketConfig.from_tuple(config_t)
        states[market_id] = riskmath.MarketState.from_tuple(state_t)
    prices: dict[int, int] = {}
    stale: dict[str, int] = {}
    for market_id in market_ids:
        name = names.get(market_id) or str(bw.call(ch.marketName(market_id)))
        price, _error = try_price(bw, market_id)
        if price is None:
            last, updated_at = feed_reading(bw, name)
            if last is None:
                raise BulwarkError(f"no price of {name} can be read: {_error}")
            price = last
            stale[name] = updated_at or 0
        prices[market_id] = price
    now = latest_timestamp(bw)
    indices: dict[int, int] = {}
    for m in market_ids:
        if names.get(m) in stale:  # the chain's index needs the price: accrue here at the last one
            indices[m] = riskmath.funding_index_now(states[m], configs[m], prices[m], now)
        else:
            indices[m] = int(bw.call(ch.currentFundingIndexWad(m), action="funding index"))
    if stale_error is not None:
        health = riskmath.health(int(margin), positions, prices, indices, configs)
        equity, imr, mmr, liquidatable = health.equity, health.imr, health.mmr, health.liquidatable
    view = AccountView(
        address, int(wallet), int(margin), int(equity), int(imr), int(mmr), bool(liquidatable)
    )
    view.stale, view.stale_error = stale, stale_error
    if not market_ids:
        return view
    population = set(accounts) if accounts is not None else invariants.known_accounts(bw)
    for market_id in market_ids:
        position, price = positions[market_id], prices[market_id]
        try:
            adl = adl_place(bw, address, market_id, position.size, population)
        except TxReverted as exc:
            if not exc.error.name.startswith("Oracle"):
                raise
            adl = AdlQueuePlace(0, None, 0, known=False)
        view.positions.append(
            PositionView(
                market_id=market_id,
                market=names.get(market_id) or str(bw.call(ch.marketName(market_id))),
                size=position.size,
                open_notional=position.open_notional,
                price=price,
                notional=riskmath.notional(position.size, price),
                upnl=riskmath.unrealized_pnl(position.size, position.open_notional, price),
                pending_funding=riskmath.pending_funding(position, indices[market_id]),
                liquidation_price=liquidation_price(
                    position.size,
                    price,
                    view.equity,
                    view.maintenance_margin,
                    configs[market_id].mm_ratio,
                ),
                adl=adl,
            )
        )
    return view


# ---------------------------------------------------------------------------- the pool


@dataclass
class PoolExitView:
    """An LP's shares: their value at the pool's equity (what deposits pay) and at exit (the lower of
    equity and margin), and what `withdraw` takes now (lock, bad debt, exposure cap)."""

    shares: int
    locked_until: int
    equity: int  # WAD, the pool's
    value: int  # tokens, at equity
    exit_value: int  # tokens, at min(equity, margin)
    max_withdraw: int  # tokens


def pool_exit(bw: Bulwark, holder: str) -> PoolExitView:
    p = bw.pool.functions
    shares, locked_until, equity = batch_call(
        bw, [p.balanceOf(holder), p.lockedUntil(holder), bw.ch.functions.poolEquityWad()]
    )
    value, exit_value, most = batch_call(
        bw,
        [p.convertToAssets(int(shares)), p.previewRedeem(int(shares)), p.maxWithdraw(holder)],
    )
    return PoolExitView(
        shares=int(shares),
        locked_until=int(locked_until),
        equity=int(equity),
        value=int(value),
        exit_value=int(exit_value),
        max_withdraw=int(most),
    )


# ---------------------------------------------------------------------------- the fund


@dataclass
class UnstakeView:
    request_id: int
    owner: str
    shares: int
    assets_at_request: int  # tokens
    value_now: int  # tokens
    ready_at: int
    claim_until: int  # the claim window ends here; after it the request lapses
    claimable: int  # tokens: what a claim pays now (the fund's `claimable` view)

    def state(self, now: int) -> str:
        """`cooldown`, `claimable` (inside the claim window) or `lapsed`."""
        if now < self.ready_at:
            return "cooldown"
        return "claimable" if now < self.claim_until else "lapsed"


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
    claim_window: int
    free_assets: int  # WAD: the assets that back the promise
    reserved_tokens: int  # what open requests may claim at most
    total_shares: int
    share_decimals: int
    total_assets_tokens: int
    window_start: int = 0  # 0: no payout has opened a window yet
    holder: str | None = None
    holder_shares: int = 0
    holder_value_tokens: int = 0
    requests: list[UnstakeView] = field(default_factory=list)

    @property
    def current_window_end(self) -> int | None:
        """When the current payout window ends; None before the first payout opened one."""
        return self.window_ends_at if self.window_start else None


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
        claim_window,
        free_assets,
        reserved,
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
            f.claimWindow(),
            f.freeAssetsWad(),
            f.reservedAssets(),
        ],
    )
    view = FundView(
        assets=int(assets),
        available=int(available),
        window_remaining=int(remaining),
        window_cap=int(cap),
        window_ends_at=int(start) + int(duration),
        window_start=int(start),
        window_cap_ratio=int(ratio),
        cap_tokens=int(cap_tokens),
        cooldown=int(cooldown),
        claim_window=int(claim_window),
        free_assets=int(free_assets),
        reserved_tokens=int(reserved),
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
    """Open (neither claimed nor lapsed) unstake requests of `owner`, from the fund's events."""
    logs = bw.fund.events.UnstakeRequested.get_logs(
        from_block=bw.deployment.deploy_block, argument_filters={"owner": owner}
    )
    found: list[UnstakeView] = []
    for log in logs:
        view = unstake_request(bw, int(log["args"]["requestId"]))
        if view is not None:
            found.append(view)
    return found


def unstake_request(bw: Bulwark, request_id: int) -> UnstakeView | None:
    """An open unstake request, or None once it was claimed or lapsed (or never made)."""
    f = bw.fund.functions
    req_owner, ready_at, claim_window, shares, assets = bw.call(f.unstakeRequest(request_id))
    if int(str(req_owner), 16) == 0:
        return None
    value_now, claimable = batch_call(bw, [f.convertToAssets(int(shares)), f.claimable(request_id)])
    return UnstakeView(
        request_id=request_id,
        owner=to_checksum_address(req_owner),
        shares=int(shares),
        assets_at_request=int(assets),
        value_now=int(value_now),
        ready_at=int(ready_at),
        claim_until=int(ready_at) + int(claim_window),
        claimable=int(claimable),
    )


def lapsed_at(bw: Bulwark, request_id: int) -> int | None:
    """The block timestamp at which request `request_id` lapsed, or None if it never did."""
    logs = bw.fund.events.UnstakeLapsed.get_logs(
        from_block=bw.deployment.deploy_block, argument_filters={"requestId": request_id}
    )
    if not logs:
        return None
    return int(bw.w3.eth.get_block(logs[-1]["blockNumber"])["timestamp"])


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
    at_last_prices: bool = False  # liquidatable was computed at stale feeds' last answers

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


def liquidatable_at_last_prices(
    bw: Bulwark, accounts: Sequence[str], views: Sequence[MarketView], now: int
) -> list[LiquidatableAccount] | None:
    """The accounts below maintenance margin at each market's price, a stale feed's last answer
    standing in for its price (bulwark.core.riskmath, the contract's arithmetic); None if a market has
    no price at all."""
    prices = {m.id: m.mark_price for m in views}
    if any(p is None for p in prices.values()):
        return None
    known = {m: p for m, p in prices.items() if p is not None}
    configs = {m.id: m.config for m in views}
    indices = {m.id: riskmath.funding_index_now(m.state, m.config, known[m.id], now) for m in views}
    ch = bw.ch.functions
    fns: list[Any] = []
    for a in accounts:
        fns.append(ch.marginOf(a))
        fns += [ch.positionOf(a, m.id) for m in views]
    answers = batch_call(bw, fns)
    width = 1 + len(views)
    found = []
    for n, address in enumerate(accounts):
        row = answers[n * width : (n + 1) * width]
        positions = {
            m.id: riskmath.Position.from_tuple(t) for m, t in zip(views, row[1:], strict=True)
        }
        health = riskmath.health(int(row[0]), positions, known, indices, configs)
        if health.liquidatable and any(p.size for p in positions.values()):
            found.append(LiquidatableAccount(address, health.equity, health.mmr))
    return found


def pool_equity_at_last_prices(bw: Bulwark, views: Sequence[MarketView], now: int) -> int:
    """Ledger.poolEquity (bulwark.core.riskmath) with a stale feed's last answer standing in for its
    price: what the pool is worth if the next price is the last one."""
    prices = {m.id: m.mark_price or 0 for m in views}
    indices = {
        m.id: riskmath.funding_index_now(m.state, m.config, prices[m.id], now) for m in views
    }
    pool = bw.call(bw.ch.functions.pool())
    margin = int(bw.call(bw.ch.functions.marginOf(pool)))
    return riskmath.pool_equity(
        margin, [m.state for m in sorted(views, key=lambda v: v.id)], prices, indices
    )


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
    views = markets(bw)
    at_last_prices = False
    try:
        liquidatable = liquidatable_accounts(bw, accounts)
    except TxReverted as exc:
        health_error = str(exc.error)
        if exc.error.name.startswith("Oracle"):
            found = liquidatable_at_last_prices(bw, accounts, views, int(block["timestamp"]))
            if found is not None:
                liquidatable, health_error, at_last_prices = found, None, True
    if pool_equity is None and all(m.mark_price is not None for m in views):
        pool_equity = pool_equity_at_last_prices(bw, views, int(block["timestamp"]))
        pool_error = f"{pool_error}; computed at the feeds' last answers"
    return ProtocolStatus(
        block=number,
        timestamp=int(block["timestamp"]),
        reduce_only=bool(reduce_only),
        markets=views,
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
        at_last_prices=at_last_prices,
    )


def require_code(bw: Bulwark) -> None:
    """Fails clearly when the deployment's contracts are not on this chain (a restarted node)."""
    address = to_checksum_address(bw.deployment.contracts["ClearingHouse"])
    if not bw.w3.eth.get_code(address):
        raise BulwarkError(
            f"no ClearingHouse at {address} on this chain: the deployment file belongs to another "
            "chain or an earlier run of the node; run `bulwark deploy`"
        )
