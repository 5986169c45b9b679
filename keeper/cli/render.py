"""Human and JSON output: amounts, times, tables and readable revert messages."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

from eth_utils.address import is_address, to_checksum_address
from web3.logs import DISCARD
from web3.types import TxReceipt

from keeper import chain, units
from keeper.chain import Bulwark, DecodedError, TxReverted


def tokens(bw: Bulwark, amount: int, places: int | None = 2) -> str:
    return units.format_units(
        amount, bw.deployment.collateral_decimals, places, group=places is not None
    )


def tokens_exact(bw: Bulwark, amount: int) -> str:
    return units.format_units(amount, bw.deployment.collateral_decimals)


def wad(value: int | None, places: int | None = 2, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return units.format_wad(value, places, group=places is not None, sign=sign)


def wad_exact(value: int | None) -> str | None:
    return None if value is None else units.format_wad(value)


def when(timestamp: int, now: int | None = None) -> str:
    text = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if now is None:
        return text
    delta = timestamp - now
    if delta > 0:
        return f"{text} (in {duration(delta)})"
    return f"{text} ({duration(-delta)} ago)" if delta else f"{text} (now)"


def duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def tx_info(receipt: TxReceipt) -> dict[str, Any]:
    return {
        "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
        "block": int(receipt["blockNumber"]),
        "gas_used": int(receipt["gasUsed"]),
    }


def events(contract_event: Any, receipt: TxReceipt) -> list[dict[str, Any]]:
    return [dict(e["args"]) for e in contract_event().process_receipt(receipt, errors=DISCARD)]


def lights(count: int) -> str:
    full, empty = ("\u25cf", "\u25cb") if _utf8(sys.stdout) else ("#", "-")
    return full * count + empty * (5 - count)


def _utf8(stream: Any) -> bool:
    encoding = str(getattr(stream, "encoding", "") or "")
    return encoding.lower().replace("-", "") in ("utf8", "utf8mb4")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Columns aligned: the first left, the others right."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


# ---------------------------------------------------------------------------- error messages

_TIME_ARGS = {"readyAt", "until", "updatedAt", "socializableAt", "startedAt"}


_HINTS = {
    "TradeMarginInsufficient": "deposit more (`bulwark trade deposit`) or trade a smaller size",
    "TradeWouldBankrupt": "the fee would leave the account bankrupt: deposit more first",
    "TradeSlippage": "the oracle price is beyond your bound: widen --slippage or the price bound",
    "TradeReduceOnly": "the guardian paused the protocol to reduce-only: only closing works",
    "TradeOpenInterestCap": "the market is at its open-interest cap: trade smaller",
    "TradePoolExposureCap": "the pool cannot take more of this side: trade smaller or add to it",
    "TradePositionBelowMinimum": "a position must be flat or at least the market's minimum "
    "notional: trade a larger size, or close the position in full",
    "OracleStalePrice": "the feed is older than its heartbeat; on a local chain publish a fresh "
    "price with `bulwark feed set MARKET PRICE`",
    "OracleInvalidPrice": "the feed's answer is not a positive price",
    "VaultBadDebtOutstanding": "withdrawals wait until bad debt is covered, deleveraged or shared",
    "VaultInsufficientMargin": "see `bulwark account` for your free margin",
    "VaultBelowInitialMargin": "open positions need that margin: see `bulwark account`",
    "VaultPoolExposure": "the pool's open exposure needs that margin",
    "ERC20InsufficientBalance": "the wallet holds too little of the token",
    "ERC20InsufficientAllowance": "approve the contract to spend the token first",
    "AccessControlUnauthorizedAccount": "this signer lacks the role; on a local chain the deployer "
    "(--dev-account 0) holds every role",
    "PoolSharesLocked": "LP shares stay locked for the pool's cooldown after each deposit",
    "FundCooldownActive": "claim once the cooldown has passed",
    "FundNotRequestOwner": "only the account that asked to unstake can claim",
    "LiquidationAccountHealthy": "the account is above maintenance margin",
}


def describe_error(error: DecodedError, token_decimals: int = 6) -> str:
    """A decoded custom error with WAD and token amounts in human units and times as dates."""
    if not error.args or error.name in ("Error", "Panic"):
        return str(error)
    parts = []
    for key, value in error.args.items():
        if isinstance(value, int) and not isinstance(value, bool):
            if key.endswith("Wad") and abs(value) < 2**200:
                exact = units.format_wad(value, group=True)
                short = (
                    exact
                    if len(exact.partition(".")[2]) <= 6
                    else units.format_wad(value, 6, group=True)
                )
                parts.append(f"{key[:-3]}={short}")
                continue
            if key.endswith("Tokens"):
                parts.append(f"{key[:-6]}={units.format_units(value, token_decimals, group=True)}")
                continue
            if key in _TIME_ARGS and 0 < value < 2**40:
                parts.append(f"{key}={when(value)}")
                continue
        if isinstance(value, str) and is_address(value):
            value = to_checksum_address(value)
        parts.append(f"{key}={chain._fmt_arg(value)}")
    return f"{error.name}({', '.join(parts)})"


def revert_message(exc: TxReverted, token_decimals: int = 6) -> str:
    text = f"{exc.action} reverted: {describe_error(exc.error, token_decimals)}"
    hint = _HINTS.get(exc.error.name)
    return f"{text}; {hint}" if hint else text
