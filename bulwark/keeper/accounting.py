"""Receipt accounting: what a finished transaction did (the events of a liquidation batch, an ADL
step, a cover, a socialisation or a lapse) into the pass's result, the metrics and the log; and why
nothing was sent when a simulation reverted (an oracle refusal, or a race lost)."""

from __future__ import annotations

from typing import Any

from web3.logs import DISCARD

from bulwark.chain.contracts import DecodedError
from bulwark.chain.sender import SendOutcome, is_oracle_refusal
from bulwark.core.logs import get_logger, human, kv
from bulwark.keeper.parts import Parts
from bulwark.keeper.results import AdlStep, PassResult

log = get_logger()
SIDES = ("Long", "Short")


class Accounting:
    """Counts outcomes for one keeper."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def not_sending(
        self,
        error: DecodedError,
        result: PassResult | None,
        market: int | None,
        entries: int = 1,
        **where: Any,
    ) -> None:
        """A simulation reverted, so nothing is sent. The oracle refusing its price (stale,
        invalid) is not a lost race: counted apart, per market, and its repeats throttled."""
        metrics = self.parts.metrics
        if is_oracle_refusal(error):
            name = self.parts.market_names().get(market, "?") if market is not None else "?"
            metrics.oracle_refusals.labels(market=name).inc(entries)
            if result is not None:
                result.oracle_refusals += entries
            held = self.parts.repeats.due(("oracle", name))
            if held is not None:
                log.warning(
                    "not sending: the oracle refuses the price in the simulation",
                    extra=kv(market=name, entries=entries, error=str(error), repeats=held, **where),
                )
            return
        if result is not None:
            result.races_lost += entries
        metrics.races_lost.inc(entries)
        log.info(
            "not sending: simulation shows nothing to do (race lost)",
            extra=kv(market=market, entries=entries, error=str(error), **where),
        )

    def batch_lost(
        self, entries: int, why: str, result: PassResult, error: str | None = None
    ) -> None:
        result.races_lost += entries
        self.parts.metrics.races_lost.inc(entries)
        log.info(f"not sending: {why}", extra=kv(entries=entries, error=error))

    def finished(self, outcome: SendOutcome, result: PassResult | None) -> None:
        """Counts what a finished transaction did (events of a liquidation or an ADL batch)."""
        receipt = outcome.receipt
        if receipt is None:
            return
        metrics = self.parts.metrics
        if result is not None and outcome.pending.hashes[-1] not in result.transactions:
            result.transactions.append(outcome.pending.hashes[-1])
        if receipt["status"] != 1:
            if outcome.pending.action == "liquidateBatch":
                metrics.liquidations_failed.inc(len(outcome.pending.keys))
            if result is not None:
                result.errors.append(f"{outcome.pending.action}: {outcome.error}")
            return
        bw = self.parts.bw
        ch = bw.ch
        me = self.parts.signer.address
        for ev in ch.events.Liquidated().process_receipt(receipt, errors=DISCARD):
            if ev["args"]["keeper"] != me:
                continue
            metrics.liquidations_mined.inc()
            entry = (ev["args"]["account"], int(ev["args"]["marketId"]))
            log.info(
                "liquidated",
                extra=kv(
                    account=entry[0],
                    market=entry[1],
                    bankrupt=ev["args"]["bankrupt"],
                    reward=human(ev["args"]["rewardWad"]),
                    penalty=human(ev["args"]["penaltyWad"]),
                    shortfall=human(ev["args"]["shortfallWad"]),
                    block=receipt["blockNumber"],
                ),
            )
            if result is not None:
                result.liquidated.append(entry)
        for ev in ch.events.LiquidationSkipped().process_receipt(receipt, errors=DISCARD):
            metrics.liquidations_failed.inc()
            reason = str(bw.errors.decode(ev["args"]["reason"]))
            log.warning(
                "batch entry skipped",
                extra=kv(
                    account=ev["args"]["account"], market=int(ev["args"]["marketId"]), error=reason
                ),
            )
            if result is not None:
                result.skipped.append((ev["args"]["account"], int(ev["args"]["marketId"]), reason))
        for ev in ch.events.AutoDeleveraged().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            metrics.adl_steps.inc()
            step = AdlStep(
                a["account"],
                int(a["marketId"]),
                int(a["scoreWad"]),
                int(a["closedSizeWad"]),
                int(a["haircutWad"]),
                int(a["badDebtRemainingWad"]),
            )
            log.info(
                "deleveraged",
                extra=kv(
                    account=step.account,
                    market=step.market,
                    score=human(step.score),
                    closed_size=human(step.closed_size),
                    haircut=human(step.haircut),
                    bad_debt_remaining=human(step.remaining),
                ),
            )
            if result is not None:
                result.adl_steps.append(step)
        for ev in ch.events.ShortfallSettled().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            if result is not None:
                result.shortfall_covered_wad += int(a["coveredWad"])
            log.info(
                "shortfall settled",
                extra=kv(
                    account=a["account"],
                    shortfall=human(a["shortfallWad"]),
                    fund_paid=human(a["coveredWad"]),
                    bad_debt=human(a["badDebtWad"]),
                ),
            )
        for name, attr in (
            ("BadDebtCovered", "covered_wad"),
            ("BadDebtSocialized", "socialized_wad"),
        ):
            for ev in getattr(ch.events, name)().process_receipt(receipt, errors=DISCARD):
                if result is not None:
                    setattr(result, attr, getattr(result, attr) + int(ev["args"]["amountWad"]))
                log.info(
                    name,
                    extra=kv(
                        market=int(ev["args"]["marketId"]),
                        side=SIDES[ev["args"]["side"]],
                        amount=human(ev["args"]["amountWad"]),
                        remaining=human(ev["args"]["totalBadDebtWad"]),
                    ),
                )

        for ev in bw.fund.events.UnstakeLapsed().process_receipt(receipt, errors=DISCARD):
            a = ev["args"]
            metrics.requests_lapsed.inc()
            if result is not None:
                result.lapsed.append(int(a["requestId"]))
            log.info(
                "unstake request lapsed",
                extra=kv(request=int(a["requestId"]), owner=a["owner"], shares=human(a["shares"])),
            )
