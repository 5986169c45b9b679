"""Human and JSON output: amounts, times, tables and readable revert messages."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from eth_utils.address import is_address, to_checksum_address
from web3.logs import DISCARD
from web3.types import TxReceipt

from bulwark.chain import contracts as chain
from bulwark.chain.contracts import Bulwark, DecodedError, TxReverted
from bulwark.core import units


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

# The plain words for errors live in bulwark/core/errors.json, which the page (web/) reads too.
_WORDS: dict[str, Any] = json.loads(
    resources.files("bulwark.core").joinpath("errors.json").read_text()
)


_TIME_ARGS: set[str] = set(_WORDS["time_args"])


_HINTS: dict[str, str] = _WORDS["hints"]


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


def revert_message(exc: TxReverted, token_decimals: int = 6, hint: str | None = None) -> str:
    """One line: what reverted, the decoded error, and a hint (``hint``, else the table's)."""
    message = str(exc.error.args.get("message", "")).strip().lower()
    no_data = exc.error.name == "Error" or exc.error.raw in ("", "0x")
    if exc.error.name in ("Error", "unknown") and message in ("", "execution reverted") and no_data:
        return (
            f"{exc.action} reverted without revert data, so the contract gave no reason: the "
            "address may hold another contract than the deployment says, or the call ran "
            "out of gas"
        )
    text = f"{exc.action} reverted: {describe_error(exc.error, token_decimals)}"
    hint = hint or _HINTS.get(exc.error.name)
    return f"{text}; {hint}" if hint else text
