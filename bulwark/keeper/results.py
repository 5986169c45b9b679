"""What one keeper pass saw and did (:class:`PassResult`), with the ADL steps it counted."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bulwark.core.logs import human


@dataclass
class AdlStep:
    account: str
    market: int
    score: int
    closed_size: int
    haircut: int
    remaining: int


@dataclass
class PassResult:
    """What one full pass saw and did."""

    block: int
    accounts_tracked: int = 0
    candidates: int = 0  # flagged by the pass's first screen
    liquidatable: list[str] = field(default_factory=list)  # confirmed in any round
    liquidatable_left: list[str] = field(default_factory=list)  # still so when the pass ended
    rounds: int = 0
    sent: list[tuple[str, int]] = field(default_factory=list)  # (account, market) entries sent
    liquidated: list[tuple[str, int]] = field(default_factory=list)  # Liquidated events of ours
    skipped: list[tuple[str, int, str]] = field(default_factory=list)  # entries the batch skipped
    deferred: list[str] = field(default_factory=list)  # other keepers' accounts, not yet due
    races_lost: int = 0
    oracle_refusals: int = 0  # simulations the oracle refused (stale or invalid price)
    unscreened: int = 0  # accounts not screened: they hold a market whose price is stale
    adl_steps: list[AdlStep] = field(default_factory=list)
    shortfall_covered_wad: int = 0  # paid by the fund inside liquidations (ShortfallSettled)
    covered_wad: int = 0  # outstanding bad debt the fund paid later (coverBadDebt)
    socialized_wad: int = 0
    bad_debt_wad: int = 0
    lapsed: list[int] = field(default_factory=list)  # unstake requests of the fund lapsed
    transactions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def fund_paid_wad(self) -> int:
        """Everything the insurance fund paid in this pass: shortfalls covered inside liquidations
        and bad debt covered afterwards."""
        return self.shortfall_covered_wad + self.covered_wad

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """What ``--once --json`` prints: counts as numbers, every amount an exact decimal string
        in human units (as every ``--json`` of the command line), addresses and hashes as text."""
        return {
            "block": self.block,
            "accounts_tracked": self.accounts_tracked,
            "candidates": self.candidates,
            "liquidatable": list(self.liquidatable),
            "liquidatable_left": list(self.liquidatable_left),
            "rounds": self.rounds,
            "sent": [{"account": a, "market": m} for a, m in self.sent],
            "liquidated": [{"account": a, "market": m} for a, m in self.liquidated],
            "skipped": [{"account": a, "market": m, "reason": r} for a, m, r in self.skipped],
            "deferred": list(self.deferred),
            "races_lost": self.races_lost,
            "oracle_refusals": self.oracle_refusals,
            "unscreened": self.unscreened,
            "adl_steps": [
                {
                    "account": st.account,
                    "market": st.market,
                    "score": human(st.score),
                    "closed_size": human(st.closed_size),
                    "haircut": human(st.haircut),
                    "bad_debt_remaining": human(st.remaining),
                }
                for st in self.adl_steps
            ],
            "fund_paid": human(self.fund_paid_wad),
            "shortfall_covered": human(self.shortfall_covered_wad),
            "bad_debt_covered": human(self.covered_wad),
            "socialized": human(self.socialized_wad),
            "bad_debt": human(self.bad_debt_wad),
            "lapsed": list(self.lapsed),
            "transactions": list(self.transactions),
            "errors": list(self.errors),
            "seconds": f"{self.duration:.3f}",
        }

    def summary(self) -> dict[str, Any]:
        """The one-line summary (plain ``--once`` output and the INFO ``pass`` line); amounts in
        human units, exact."""
        return {
            "block": self.block,
            "accounts": self.accounts_tracked,
            "candidates": self.candidates,
            "liquidatable": len(self.liquidatable),
            "left": len(self.liquidatable_left),
            "rounds": self.rounds,
            "sent": len(self.sent),
            "liquidated": len(self.liquidated),
            "races_lost": self.races_lost,
            "oracle_refusals": self.oracle_refusals,
            "unscreened": self.unscreened,
            "adl_steps": len(self.adl_steps),
            "fund_paid_usd": human(self.fund_paid_wad),
            "shortfall_covered_usd": human(self.shortfall_covered_wad),
            "bad_debt_covered_usd": human(self.covered_wad),
            "socialized_usd": human(self.socialized_wad),
            "bad_debt_usd": human(self.bad_debt_wad),
            "lapsed": len(self.lapsed),
            "seconds": round(self.duration, 3),
        }
