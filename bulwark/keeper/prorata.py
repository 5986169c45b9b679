"""Pro-rata ADL: the set the keeper presents and the haircuts the contract takes from it.

Mirrors ``AdlLogic._proRata``: the keeper presents every eligible position on the winning side
(score > 0), in strictly ascending address order; each pays ``debtTaken x pnl / sum(pnl)`` rounded
down or up so that the shares add up to ``debtTaken``, where ``debtTaken = min(debt the fund cannot pay, sum(pnl))``, and closes just enough of its
position to realise that share. A share is further capped on chain by what keeps the target at
maintenance margin (and by what the pool can pay out), which only lowers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bulwark.core import riskmath as rm

QUEUE = 0
PRO_RATA = 1
POLICY_NAMES = {QUEUE: "queue", PRO_RATA: "pro rata"}


def pro_rata_set(scores: Mapping[str, int]) -> list[str]:
    """The accounts with a positive ADL score, in the strictly ascending address order the contract
    requires (addresses compare as 160-bit integers, so letter case does not matter)."""
    return sorted((a for a, s in scores.items() if s > 0), key=lambda a: int(a, 16))


def debt_taken(owed: int, pnls: Mapping[str, int]) -> int:
    """``min(owed, sum of presented profit)``: what the call shares out."""
    return min(owed, sum(pnls.values()))


def pro_rata_shares(owed: int, pnls: Mapping[str, int]) -> dict[str, int]:
    """Each target's share of ``debtTaken`` (``AdlLogic._allot``): ``debtTaken x pnl / sum(pnl)``
    rounded down, then the remainder one wei each to the first targets, in presentation order,
    whose exact share was not whole; the shares add up to ``debtTaken`` exactly."""
    if any(p <= 0 for p in pnls.values()):
        raise ValueError("every presented target must have a positive profit")
    total = sum(pnls.values())
    if total == 0:
        return {}
    taken = debt_taken(owed, pnls)
    shares = {a: rm.mul_div_down(taken, p, total) for a, p in pnls.items()}
    left = taken - sum(shares.values())
    for a in pro_rata_set({a: 1 for a in pnls}):
        if left == 0:
            break
        if taken * pnls[a] % total != 0:
            shares[a] += 1
            left -= 1
    return shares


@dataclass(frozen=True)
class ProRataCut:
    """What one target is expected to lose: its share and the size closed to realise it."""

    account: str
    share: int
    close_size: int


def pro_rata_plan(owed: int, positions: Mapping[str, tuple[int, int]]) -> list[ProRataCut]:
    """The cuts of a pro-rata call over ``positions`` (account -> (size, pnl)), in presentation
    order; targets whose share rounds to zero are skipped, as on chain."""
    shares = pro_rata_shares(owed, {a: pnl for a, (_size, pnl) in positions.items()})
    cuts: list[ProRataCut] = []
    for account in pro_rata_set({a: 1 for a in positions}):
        share = shares[account]
        if share == 0:
            continue
        size, pnl = positions[account]
        cuts.append(ProRataCut(account, share, rm.adl_close_size(size, pnl, share)))
    return cuts
