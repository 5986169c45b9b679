"""The protocol's conservation laws, checked against the chain.

1. vault token balance (WAD) + outstanding bad debt == sum of margin over every account (pool and
   fund included);
2. the pool's position is the exact mirror of the traders': sum of trader sizes, open notionals and
   funding bases equal the market's running sums (so uPnL and pending funding sum to zero);
3. no trader without a position has a negative margin: a flat account that owes is a debt nobody
   recorded (the clearing house settles every liquidated account's shortfall as bad debt).

Used by the tests after every step, by `bulwark status` and by the stress report. Every read is
pinned to one block and sent in JSON-RPC batches (the keeper's ``rpc_batch`` and ``Calls``): one
``marginOf`` per account and one ``positionOf`` per trader and market, a few hundred calls a request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address

from bulwark.chain.contracts import Bulwark
from bulwark.chain.rpc import Calls, NodeError, get_block, rpc_batch

# Events whose indexed `account` (or `keeper`) may hold margin afterwards.
_ACCOUNT_EVENTS = (
    ("Deposited", "account"),
    ("PositionChanged", "account"),
    ("Liquidated", "keeper"),
)


def _account_topics(bw: Bulwark) -> dict[bytes, int]:
    """topic0 of each event in _ACCOUNT_EVENTS -> the topic position of its account argument."""
    wanted = dict(_ACCOUNT_EVENTS)
    out: dict[bytes, int] = {}
    abi: list[Any] = list(bw.ch.abi)
    for item in abi:
        name = item.get("name")
        if item.get("type") != "event" or name not in wanted:
            continue
        indexed = [i["name"] for i in item["inputs"] if i.get("indexed")]
        out[bytes(event_abi_to_log_topic(item))] = 1 + indexed.index(wanted[name])
    return out


def known_accounts(
    bw: Bulwark, from_block: int | None = None, to_block: int | str = "latest"
) -> set[str]:
    """Every address that ever received margin, from the clearing house's events."""
    start = bw.deployment.deploy_block if from_block is None else from_block
    spots = {"0x" + topic.hex(): spot for topic, spot in _account_topics(bw).items()}
    query = {
        "address": bw.ch.address,
        "fromBlock": hex(start),
        "toBlock": hex(to_block) if isinstance(to_block, int) else to_block,
        "topics": [list(spots)],
    }
    reply = cast(Any, bw.w3.provider).make_request("eth_getLogs", [query])
    if "error" in reply or not isinstance(reply.get("result"), list):
        raise NodeError(f"eth_getLogs for the account events failed: {reply.get('error')}")
    raw: set[str] = set()
    for entry in reply["result"]:
        topics = entry["topics"]
        spot = spots.get(topics[0])
        if spot is not None and spot < len(topics):
            raw.add(topics[spot][-40:])
    return {to_checksum_address("0x" + a) for a in raw}


@dataclass
class ConservationReport:
    token_balance_wad: int
    bad_debt_wad: int
    margin_sum_wad: int
    mirror_errors: list[str] = field(default_factory=list)
    owing: list[str] = field(default_factory=list)  # flat traders with a negative margin

    @property
    def vault_gap_wad(self) -> int:
        """token balance + bad debt - sum of margins: zero when conserved."""
        return self.token_balance_wad + self.bad_debt_wad - self.margin_sum_wad

    @property
    def ok(self) -> bool:
        return self.vault_gap_wad == 0 and not self.mirror_errors and not self.owing

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "token_balance_wad": str(self.token_balance_wad),
            "bad_debt_wad": str(self.bad_debt_wad),
            "margin_sum_wad": str(self.margin_sum_wad),
            "vault_gap_wad": str(self.vault_gap_wad),
            "mirror_errors": self.mirror_errors,
            "owing": self.owing,
        }


def check(
    bw: Bulwark, accounts: Iterable[str] | None = None, block: int | str = "latest"
) -> ConservationReport:
    """Checks conservation over `accounts` (default: every account found in the events) at
    `block` (a tag is resolved to its number first, so every read sees the same state)."""
    number = block if isinstance(block, int) else get_block(bw.w3, block).number
    ch, token = Calls(bw.ch), Calls(bw.token)
    head = rpc_batch(
        bw.w3,
        [
            ch.request("pool", [], number),
            ch.request("fund", [], number),
            ch.request("marketCount", [], number),
            ch.request("totalBadDebtWad", [], number),
            token.request("balanceOf", [bw.ch.address], number),
        ],
    )
    pool = to_checksum_address(ch.decode("pool", head[0]))
    fund = to_checksum_address(ch.decode("fund", head[1]))
    markets = int(ch.decode("marketCount", head[2]))
    bad_debt = int(ch.decode("totalBadDebtWad", head[3]))
    balance = int(token.decode("balanceOf", head[4])) * bw.token_scale

    given = accounts if accounts is not None else known_accounts(bw, to_block=number)
    traders = sorted({to_checksum_address(a) for a in given} - {pool, fund})
    everyone = [*traders, pool, fund]
    requests = [ch.request("marginOf", [a], number) for a in everyone]
    requests += [ch.request("marketState", [m], number) for m in range(markets)]
    requests += [ch.request("positionOf", [a, m], number) for m in range(markets) for a in traders]
    replies = rpc_batch(bw.w3, requests)
    margins = replies[: len(everyone)]
    states = replies[len(everyone) : len(everyone) + markets]
    positions = replies[len(everyone) + markets :]

    margin_of = [int(ch.decode("marginOf", r)) for r in margins]
    report = ConservationReport(balance, bad_debt, sum(margin_of))
    n = len(traders)
    holding = [False] * n
    for market_id in range(markets):
        rows = [ch.decode("positionOf", r) for r in positions[market_id * n : (market_id + 1) * n]]
        _check_mirror(report, market_id, rows, ch.decode("marketState", states[market_id]))
        holding = [held or row[0] != 0 for held, row in zip(holding, rows, strict=True)]
    report.owing = [
        f"{trader} holds no position and owes {-margin} wei"
        for trader, margin, held in zip(traders, margin_of[:n], holding, strict=True)
        if margin < 0 and not held
    ]
    return report


def _check_mirror(
    report: ConservationReport, market_id: int, positions: list[Any], st: Any
) -> None:
    """Sum of trader sizes, open notionals and funding bases, and both open interests, against the
    market's running sums."""
    sums = [0, 0, 0]
    long_oi = short_oi = 0
    for size, open_notional, basis in positions:
        sums[0] += size
        sums[1] += open_notional
        sums[2] += basis
        long_oi += max(size, 0)
        short_oi += max(-size, 0)
    expected = [st[1], st[2], st[3]]
    labels = ("size", "open notional", "funding basis")
    for label, got, want in zip(labels, sums, expected, strict=True):
        if got != want:
            report.mirror_errors.append(
                f"market {market_id}: sum of trader {label} {got} != {want}"
            )
    if (long_oi, short_oi) != (st[4], st[5]):
        report.mirror_errors.append(
            f"market {market_id}: open interest {(long_oi, short_oi)} != {(st[4], st[5])}"
        )
