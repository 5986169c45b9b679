"""`bulwark feed set` and `bulwark feed replay`."""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from bulwark.chain.contracts import Bulwark, BulwarkError
from bulwark.cli.args import EXIT_OK, UsageError
from bulwark.cli.context import Context, chain_now, market_name, send
from bulwark.cli.render import duration, tx_info
from bulwark.core import units
from bulwark.core.progress import Progress

# ---------------------------------------------------------------------------- feeds


def _feed_contract(ctx: Context, bw: Bulwark, market: str) -> tuple[str, Any, int]:
    market_id = bw.market_id(market)
    name = market_name(bw, market_id)
    feed = bw.feeds[name]
    try:
        feed.functions.FEEDER_ROLE().call()
    except Exception:
        raise BulwarkError(
            f"the {name} feed at {feed.address} is not a mock aggregator: prices can be "
            "pushed only on local and test networks"
        ) from None
    return name, feed, int(bw.call(feed.functions.decimals()))


def cmd_feed_set(ctx: Context) -> int:
    bw = ctx.bulwark()
    name, feed, decimals = _feed_contract(ctx, bw, ctx.args.market)
    answer = units.check_price(units.parse_units(ctx.args.price, decimals, "PRICE"), decimals)
    signer = ctx.signer(default_dev=0)
    previous = int(bw.call(feed.functions.latestAnswer()))
    receipt = send(bw, feed.functions.updateAnswer(answer), signer, action=f"{name} feed update")
    ctx.report(
        {
            "market": name,
            "price": units.format_units(answer, decimals),
            "previous": units.format_units(previous, decimals),
            **tx_info(receipt),
        },
        [
            f"{name} price {units.format_units(answer, decimals, 2, group=True)} "
            f"(was {units.format_units(previous, decimals, 2, group=True)})"
        ],
    )
    return EXIT_OK


@dataclass
class ReplayRow:
    line: int
    timestamp: Decimal
    market: str
    price: Decimal


def _parse_timestamp(text: str) -> Decimal:
    text = text.strip()
    try:
        return units.parse_decimal(text, "timestamp")
    except units.UnitError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise units.UnitError(
            f"timestamp {text!r} is neither seconds nor an ISO 8601 date"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return Decimal(str(stamp.timestamp()))


def read_replay(path: Path, market_map: dict[str, str]) -> list[ReplayRow]:
    """Rows of a `timestamp,market,price` CSV (header optional), sorted by time (stable)."""
    if not path.is_file():
        raise BulwarkError(f"no such file: {path}")
    rows: list[ReplayRow] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        columns = (0, 1, 2)
        for number, record in enumerate(reader, start=1):
            cells = [c.strip() for c in record]
            if not cells or all(not c for c in cells) or cells[0].startswith("#"):
                continue
            lowered = [c.lower() for c in cells]
            if not rows and {"timestamp", "market", "price"} <= set(lowered):
                columns = (
                    lowered.index("timestamp"),
                    lowered.index("market"),
                    lowered.index("price"),
                )
                continue
            if len(cells) <= max(columns):
                raise BulwarkError(
                    f"{path} line {number}: expected timestamp,market,price, got {','.join(cells)}"
                )
            try:
                stamp = _parse_timestamp(cells[columns[0]])
                price = units.parse_decimal(cells[columns[2]], "price")
            except units.UnitError as exc:
                raise BulwarkError(f"{path} line {number}: {exc}") from None
            if price <= 0:
                raise BulwarkError(
                    f"{path} line {number}: price must be positive, got {cells[columns[2]]}"
                )
            if price > units.MAX_PRICE:
                raise BulwarkError(
                    f"{path} line {number}: price {cells[columns[2]]} is above "
                    f"{units.MAX_PRICE:,}, more than any market trades at"
                )
            market = cells[columns[1]]
            rows.append(ReplayRow(number, stamp, market_map.get(market, market), price))
    if not rows:
        raise BulwarkError(f"{path} has no price rows (expected timestamp,market,price)")
    rows.sort(key=lambda r: r.timestamp)
    return rows


def _market_map(items: Sequence[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            if not pair.strip():
                continue
            source, eq, target = pair.partition("=")
            if not eq or not source.strip() or not target.strip():
                raise UsageError(
                    f"bulwark feed replay: --market-map wants NAME=MARKET, got {pair!r}"
                )
            mapping[source.strip()] = target.strip()
    return mapping


def cmd_feed_replay(ctx: Context) -> int:
    a = ctx.args
    bw = ctx.bulwark()
    rows = read_replay(Path(a.file), _market_map(a.market_map))
    feeds: dict[str, tuple[str, Any, int]] = {}
    for row in rows:
        if row.market not in feeds:
            try:
                feeds[row.market] = _feed_contract(ctx, bw, row.market)
            except BulwarkError as exc:
                raise BulwarkError(f"{a.file} line {row.line}: {exc}") from None
    answers = [units.decimal_to_units(r.price, feeds[r.market][2], exact=False) for r in rows]
    for row, answer in zip(rows, answers, strict=True):
        if answer <= 0:
            raise BulwarkError(f"{a.file} line {row.line}: price {row.price} rounds to zero")
    signer = ctx.signer(default_dev=0)
    local = ctx.is_local()
    wall_clock = a.wall_clock or not local
    speed: Decimal = a.speed
    first = rows[0].timestamp
    chain_start = chain_now(bw) + 1
    wall_start = time.monotonic()
    progress = Progress(len(rows), ctx.err, "replay")
    drift = 0
    last: dict[str, int] = {}
    try:
        for done, (row, answer) in enumerate(zip(rows, answers, strict=True), start=1):
            offset = (row.timestamp - first) / speed
            if wall_clock:
                pause = float(offset) - (time.monotonic() - wall_start)
                if pause > 0:
                    time.sleep(pause)
            if local:
                target = chain_start + int(offset)
                stamp = max(target, chain_now(bw))
                drift = max(drift, stamp - target)
                bw.w3.provider.make_request("evm_setNextBlockTimestamp", [stamp])  # type: ignore[arg-type]
            name, feed, decimals = feeds[row.market]
            send(
                bw,
                feed.functions.updateAnswer(answer),
                signer,
                action=f"{name} feed update (line {row.line})",
            )
            last[name] = answer
            progress.update(
                done, f"{name} {units.format_units(answer, decimals, 2)} t+{duration(int(offset))}"
            )
    finally:
        progress.close()
    end = chain_now(bw)
    data = {
        "rows": len(rows),
        "markets": sorted(feeds),
        "speed": str(speed),
        "file_seconds": str(rows[-1].timestamp - first),
        "chain_start": chain_start,
        "chain_end": end,
        "chain_seconds": end - chain_start,
        "max_drift_seconds": drift,
        "local": local,
        "last_prices": {n: units.format_units(v, feeds[n][2]) for n, v in last.items()},
    }
    lines = [
        f"replayed {len(rows)} prices for {', '.join(sorted(feeds))}: "
        f"{duration(int(rows[-1].timestamp - first))} of file time in "
        f"{duration(end - chain_start)} of chain time (speed {speed})"
    ]
    if drift:
        lines.append(
            f"  chain time ran up to {drift}s behind the file (blocks cannot go back in time)"
        )
    ctx.report(data, lines)
    return EXIT_OK
