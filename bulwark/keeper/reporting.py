"""What the keeper reports besides a pass's result: the gauges and histograms of the pass, the
fund's gauges, the stale markets and late passes (gauges, a degraded /healthz, a throttled
warning), and the slow gauges refreshed on a timer."""

from __future__ import annotations

import time

from bulwark.chain.rpc import BlockRef
from bulwark.core.logs import get_logger, human, kv
from bulwark.keeper.metrics import HealthState, wad_to_float
from bulwark.keeper.parts import Parts
from bulwark.keeper.results import PassResult
from bulwark.keeper.screening import MarketSnapshot

log = get_logger()


def fund_metrics(parts: Parts, snap: MarketSnapshot) -> None:
    m = parts.metrics
    m.fund_assets.set(wad_to_float(snap.fund_assets))
    m.fund_available.set(wad_to_float(snap.fund_available))
    m.bad_debt.set(wad_to_float(snap.total_bad_debt))


def record_pass(
    parts: Parts, health: HealthState, result: PassResult, snap: MarketSnapshot
) -> None:
    m = parts.metrics
    m.tick_duration.observe(result.duration)
    m.ticks.labels(outcome="ok").inc()
    m.accounts_tracked.set(result.accounts_tracked)
    m.candidates.set(result.candidates)
    m.liquidatable.set(len(result.liquidatable))
    m.liquidatable_left.set(len(result.liquidatable_left))
    m.pass_rounds.observe(result.rounds)
    m.last_block.set(result.block)
    m.block_lag.set(0)
    m.node_up.set(1)
    fund_metrics(parts, snap)
    health.ok(result.block)
    busy = (
        result.sent
        or result.adl_steps
        or result.fund_paid_wad
        or result.socialized_wad
        or result.lapsed
    )
    (log.info if busy else log.debug)("pass", extra=kv(**result.summary()))


def note_stale(
    parts: Parts, health: HealthState, snap: MarketSnapshot, unscreened: int, result: PassResult
) -> None:
    """Per-market stale gauges, the unscreened-accounts gauge, /healthz degraded while a
    market is stale; the warning when it starts (then at most one per `log_repeat_seconds`,
    with the count held back) and one line when the price is fresh again."""
    names = parts.market_names()
    result.unscreened = unscreened
    parts.metrics.unscreened.set(unscreened)
    for market in snap.configs:
        name = names.get(market, str(market))
        stale = market in snap.stale
        parts.metrics.market_stale.labels(market=name).set(1 if stale else 0)
        key = ("stale", market)
        if not stale:
            if parts.repeats.clear(key):
                log.info("market price fresh again", extra=kv(market=name))
            continue
        held = parts.repeats.due(key)
        if held is not None:
            log.warning(
                "market price stale or invalid: its accounts are not screened",
                extra=kv(
                    market=name, error=snap.stale[market], unscreened=unscreened, repeats=held
                ),
            )
    if snap.stale:
        stale_names = ", ".join(names.get(m, str(m)) for m in sorted(snap.stale))
        health.degrade(
            "stale_markets", f"price stale: {stale_names} ({unscreened} accounts unscreened)"
        )
    else:
        health.recover("stale_markets")


def refresh_gauges(parts: Parts, head: BlockRef, index_block: int | None) -> None:
    """The slow gauges: the head's age, the index's lag, accounts, transactions in flight, the
    signer's ETH (with a warning when it is below `min_eth_balance_wei`)."""
    m = parts.metrics
    # not clamped: a negative age says the chain's clock runs ahead of this machine's
    m.head_age.set(time.time() - head.timestamp)
    m.block_lag.set(head.number - index_block if index_block is not None else head.number)
    m.accounts_tracked.set(len(parts.index.accounts))
    m.in_flight.set(len(parts.sender.pending))
    balance = int(parts.bw.w3.eth.get_balance(parts.signer.address))
    m.signer_eth.set(balance / 1e18)
    if balance < parts.settings.min_eth_balance_wei:
        log.warning(
            "keeper is low on ETH for gas",
            extra=kv(keeper=parts.signer.address, eth=human(balance)),
        )


def note_late(
    parts: Parts,
    health: HealthState,
    late: bool,
    since: float,
    behind: int,
    interval: float | None,
    last_block: int | None,
) -> None:
    """Passes late (see :func:`decisions.passes_late`): the passes_late gauge, a degraded
    /healthz and a warning (then at most one per `log_repeat_seconds`); on time again: one line."""
    if not late:
        parts.metrics.passes_late.set(0)
        if health.recover("passes_late"):
            log.info("passes on time again", extra=kv(block=last_block))
        parts.repeats.clear("passes_late")
        return
    parts.metrics.passes_late.set(1)
    health.degrade("passes_late", f"no pass for {since:.0f} s ({behind} blocks behind the head)")
    held = parts.repeats.due("passes_late")
    if held is not None:
        log.warning(
            "passes late: no pass completed for several blocks",
            extra=kv(
                seconds=round(since, 1),
                blocks_behind=behind,
                block_interval=None if interval is None else round(interval, 2),
                node_up=health.node_up,
                repeats=held,
            ),
        )
