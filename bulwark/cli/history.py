"""`bulwark account --history`: what happened to an account, read from the clearing house's events.

Every entry carries its block, time and transaction: deposits and withdrawals, trades (with fee,
realised PnL and funding settled), liquidations (the closed part, the penalty, and when the account
went bankrupt, what the fund covered and what became bad debt), ADL closes with their haircut, and
profit haircut on a close while ADL was pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bulwark.chain.contracts import Bulwark
from bulwark.chain.rpc import BlockRef, rpc_batch
from bulwark.cli.context import market_name
from bulwark.cli.render import tokens, tokens_exact, wad, wad_exact, when

KINDS = (
    "Deposited",
    "Withdrawn",
    "PositionChanged",
    "PositionLiquidated",
    "Liquidated",
    "ShortfallSettled",
    "AutoDeleveraged",
    "ProfitHaircutOnClose",
)


@dataclass
class Entry:
    block: int
    log_index: int
    tx: str
    kind: str
    args: dict[str, Any]
    timestamp: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


def entries(bw: Bulwark, address: str, kinds: tuple[str, ...] = KINDS) -> list[Entry]:
    """The account's events of ``kinds`` since the deployment, oldest first, with block times."""
    found: list[Entry] = []
    for kind in kinds:
        event = getattr(bw.ch.events, kind)
        for log in event.get_logs(
            from_block=bw.deployment.deploy_block, argument_filters={"account": address}
        ):
            found.append(
                Entry(
                    block=int(log["blockNumber"]),
                    log_index=int(log["logIndex"]),
                    tx="0x" + bytes(log["transactionHash"]).hex(),
                    kind=kind,
                    args=dict(log["args"]),
                )
            )
    found.sort(key=lambda e: (e.block, e.log_index))
    blocks = sorted({e.block for e in found})
    times: dict[int, int] = {}
    if blocks:
        requests = [("eth_getBlockByNumber", [hex(n), False]) for n in blocks]
        for number, block in zip(blocks, rpc_batch(bw.w3, requests), strict=True):
            times[number] = BlockRef.from_rpc(block).timestamp
    for e in found:
        e.timestamp = times.get(e.block, 0)
    return found


def _market(bw: Bulwark, args: dict[str, Any]) -> str:
    return market_name(bw, int(args["marketId"])) if "marketId" in args else ""


def describe(bw: Bulwark, e: Entry, symbol: str) -> tuple[str, str, str]:
    """(what, market, details) of one entry, in human units."""
    a = e.args
    market = _market(bw, a)
    if e.kind == "Deposited":
        return "deposit", "", f"+{tokens(bw, int(a['amountTokens']))} {symbol} margin"
    if e.kind == "Withdrawn":
        return "withdrawal", "", f"-{tokens(bw, int(a['amountTokens']))} {symbol} margin"
    if e.kind == "PositionChanged":
        side = "bought" if int(a["sizeDeltaWad"]) > 0 else "sold"
        return (
            "trade",
            market,
            f"{side} {wad(abs(int(a['sizeDeltaWad'])), None)} at {wad(int(a['priceWad']))}, "
            f"fee {wad(int(a['feeWad']))}, realized PnL {wad(int(a['realizedPnlWad']), sign=True)}, "
            f"funding paid {wad(int(a['fundingPaidWad']), sign=True)}; "
            f"position {wad(int(a['newSizeWad']), None)}",
        )
    if e.kind == "PositionLiquidated":
        return (
            "liquidation close",
            market,
            f"closed {wad(abs(int(a['closedSizeWad'])), None)} at {wad(int(a['priceWad']))}, "
            f"realized PnL {wad(int(a['realizedPnlWad']), sign=True)}, funding paid "
            f"{wad(int(a['fundingPaidWad']), sign=True)}; position {wad(int(a['newSizeWad']), None)}",
        )
    if e.kind == "Liquidated":
        return (
            "LIQUIDATED",
            market,
            f"penalty {wad(int(a['penaltyWad']))} (keeper reward {wad(int(a['rewardWad']))}), "
            f"shortfall {wad(int(a['shortfallWad']))}" + ("; bankrupt" if a["bankrupt"] else ""),
        )
    if e.kind == "ShortfallSettled":
        return (
            "shortfall settled",
            "",
            f"shortfall {wad(int(a['shortfallWad']))}: the insurance fund covered "
            f"{wad(int(a['coveredWad']))}, {wad(int(a['badDebtWad']))} became bad debt; "
            "margin reset to 0",
        )
    if e.kind == "AutoDeleveraged":
        return (
            "AUTO-DELEVERAGED",
            market,
            f"closed {wad(abs(int(a['closedSizeWad'])), None)} at {wad(int(a['priceWad']))}, "
            f"profit haircut {wad(int(a['haircutWad']))} paid bad debt "
            f"(left {wad(int(a['badDebtRemainingWad']))})",
        )
    return (
        "profit haircut",
        market,
        f"{wad(int(a['haircutWad']))} of the profit on a close paid the other side's bad debt "
        f"(left {wad(int(a['badDebtRemainingWad']))})",
    )


def entry_json(bw: Bulwark, e: Entry, symbol: str) -> dict[str, Any]:
    what, market, details = describe(bw, e, symbol)
    values: dict[str, Any] = {}
    for key, value in e.args.items():
        if key == "account":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            values[key] = value
        elif key.endswith("Wad"):
            values[key] = wad_exact(value)
        elif key.endswith("Tokens"):
            values[key] = tokens_exact(bw, value)
        else:
            values[key] = value
    return {
        "block": e.block,
        "timestamp": e.timestamp,
        "tx": e.tx,
        "event": e.kind,
        "what": what,
        "market": market or None,
        "details": details,
        "values": values,
    }


def history_lines(bw: Bulwark, address: str, found: list[Entry], symbol: str) -> list[str]:
    if not found:
        return [f"account {address}: no deposits, trades, liquidations or ADL since the deployment"]
    rows = []
    for e in found:
        what, market, details = describe(bw, e, symbol)
        rows.append([str(e.block), when(e.timestamp), e.tx, what, market, details])
    lines = [f"account {address}: {len(found)} events since the deployment (oldest first)"]
    headers = ["BLOCK", "TIME", "TX", "WHAT", "MARKET", "DETAILS"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    for cells in [headers, *rows]:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=False)]
        lines.append("  " + "  ".join([*padded, cells[-1]]))
    return lines


def last_hit(bw: Bulwark, address: str, now: int) -> str | None:
    """One line on the account's last liquidation or ADL, or None if it never had one."""
    found = entries(bw, address, ("Liquidated", "ShortfallSettled", "AutoDeleveraged"))
    hits = [e for e in found if e.kind in ("Liquidated", "AutoDeleveraged")]
    if not hits:
        return None
    last = hits[-1]
    market = _market(bw, last.args)
    if last.kind == "AutoDeleveraged":
        what = (
            f"auto-deleveraged in {market}: {wad(abs(int(last.args['closedSizeWad'])), None)} "
            f"closed, profit haircut {wad(int(last.args['haircutWad']))}"
        )
    else:
        what = f"liquidated in {market}: penalty {wad(int(last.args['penaltyWad']))}"
        settled = [e for e in found if e.kind == "ShortfallSettled" and e.block == last.block]
        if settled:
            s = settled[-1].args
            what += (
                f", shortfall {wad(int(s['shortfallWad']))} (fund covered "
                f"{wad(int(s['coveredWad']))}, bad debt {wad(int(s['badDebtWad']))})"
            )
    return (
        f"  last {what}, block {last.block}, {when(last.timestamp, now)}; "
        "`bulwark account --history` lists everything"
    )
