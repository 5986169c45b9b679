"""The protocol's conservation laws, checked against the chain.

1. vault token balance (WAD) + outstanding bad debt == sum of margin over every account (pool and fund
   included); 2. the pool's position is the exact mirror of the traders': sum of trader sizes, open
   notionals and funding bases equal the market's running sums (so uPnL and pending funding sum to zero).
Used by the tests after every step, by `bulwark status` and by the stress report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from keeper.chain import Bulwark

# Events whose indexed `account` (or `keeper`) may hold margin afterwards.
_ACCOUNT_EVENTS = (("Deposited", "account"), ("PositionChanged", "account"), ("Liquidated", "keeper"))


def known_accounts(bw: Bulwark, from_block: int | None = None, to_block: int | str = "latest") -> set[str]:
    """Every address that ever received margin, from the clearing house's events."""
    start = bw.deployment.deploy_block if from_block is None else from_block
    found: set[str] = set()
    for event_name, arg in _ACCOUNT_EVENTS:
        event = getattr(bw.ch.events, event_name)
        for log in event.get_logs(from_block=start, to_block=to_block):
            found.add(log["args"][arg])
    return found


@dataclass
class ConservationReport:
    token_balance_wad: int
    bad_debt_wad: int
    margin_sum_wad: int
    mirror_errors: list[str] = field(default_factory=list)

    @property
    def vault_gap_wad(self) -> int:
        """token balance + bad debt - sum of margins: zero when conserved."""
        return self.token_balance_wad + self.bad_debt_wad - self.margin_sum_wad

    @property
    def ok(self) -> bool:
        return self.vault_gap_wad == 0 and not self.mirror_errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "token_balance_wad": str(self.token_balance_wad),
            "bad_debt_wad": str(self.bad_debt_wad),
            "margin_sum_wad": str(self.margin_sum_wad),
            "vault_gap_wad": str(self.vault_gap_wad),
            "mirror_errors": self.mirror_errors,
        }


def check(bw: Bulwark, accounts: Iterable[str] | None = None, block: int | str = "latest") -> ConservationReport:
    """Checks conservation over `accounts` (default: every account found in the events) at `block`."""
    ch = bw.ch
    traders = set(accounts) if accounts is not None else known_accounts(bw, to_block=block)
    pool, fund = ch.functions.pool().call(block_identifier=block), ch.functions.fund().call(block_identifier=block)
    everyone = traders | {pool, fund}
    margin_sum = sum(ch.functions.marginOf(a).call(block_identifier=block) for a in everyone)
    balance = bw.token.functions.balanceOf(ch.address).call(block_identifier=block) * bw.token_scale
    bad_debt = ch.functions.totalBadDebtWad().call(block_identifier=block)
    report = ConservationReport(balance, bad_debt, margin_sum)

    for market_id in range(ch.functions.marketCount().call(block_identifier=block)):
        sums = [0, 0, 0]
        long_oi = short_oi = 0
        for a in traders - {pool, fund}:
            size, open_notional, basis = ch.functions.positionOf(a, market_id).call(block_identifier=block)
            sums[0] += size
            sums[1] += open_notional
            sums[2] += basis
            long_oi += max(size, 0)
            short_oi += max(-size, 0)
        st = ch.functions.marketState(market_id).call(block_identifier=block)
        expected = [st[1], st[2], st[3]]
        for label, got, want in zip(("size", "open notional", "funding basis"), sums, expected, strict=True):
            if got != want:
                report.mirror_errors.append(f"market {market_id}: sum of trader {label} {got} != {want}")
        if (long_oi, short_oi) != (st[4], st[5]):
            report.mirror_errors.append(
                f"market {market_id}: open interest {(long_oi, short_oi)} != {(st[4], st[5])}"
            )
    return report
