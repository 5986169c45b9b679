"""`bulwark trade ...` and `bulwark account`."""

from __future__ import annotations

import argparse
from typing import Any

from web3.types import TxReceipt

from bulwark.chain.contracts import WAD, Bulwark, BulwarkError, TxReverted
from bulwark.cli import history
from bulwark.cli.args import ENV_PRIVATE_KEY, EXIT_OK, UsageError
from bulwark.cli.context import (
    Context,
    market_name,
    parse_address,
    parse_amount,
    prepare_payment,
    send,
    token_info,
)
from bulwark.cli.render import (
    events,
    lights,
    revert_message,
    table,
    tokens,
    tokens_exact,
    tx_info,
    wad,
    wad_exact,
    when,
)
from bulwark.core import riskmath, units
from bulwark.keeper import status

# ---------------------------------------------------------------------------- trading


def cmd_trade_deposit(ctx: Context) -> int:
    bw = ctx.bulwark()
    amount = parse_amount(bw, ctx.args.amount)
    signer = ctx.signer()
    prepare_payment(bw, signer, bw.ch.address, amount)
    receipt = send(bw, bw.ch.functions.deposit(signer.address, amount), signer, action="deposit")
    return _report_margin(ctx, bw, signer.address, "deposited", amount, receipt)


def cmd_trade_withdraw(ctx: Context) -> int:
    bw = ctx.bulwark()
    signer = ctx.signer()
    if ctx.args.amount.strip().lower() == "max":
        view = status.account(bw, signer.address, accounts=())
        amount = bw.to_tokens(view.free_margin)
        if amount == 0:
            raise BulwarkError(f"account {signer.address} has no free margin to withdraw")
    else:
        amount = parse_amount(bw, ctx.args.amount)
    receipt = send(bw, bw.ch.functions.withdraw(amount, signer.address), signer, action="withdraw")
    return _report_margin(ctx, bw, signer.address, "withdrew", amount, receipt)


def _report_margin(
    ctx: Context, bw: Bulwark, address: str, verb: str, amount: int, receipt: TxReceipt
) -> int:
    _, symbol = token_info(bw)
    margin = int(bw.call(bw.ch.functions.marginOf(address)))
    wallet = int(bw.call(bw.token.functions.balanceOf(address)))
    ctx.report(
        {
            "account": address,
            verb: tokens_exact(bw, amount),
            "margin": wad_exact(margin),
            "wallet": tokens_exact(bw, wallet),
            **tx_info(receipt),
        },
        [
            f"{verb} {tokens(bw, amount)} {symbol}; margin {wad(margin)}, "
            f"wallet {tokens(bw, wallet)} {symbol}"
        ],
    )
    return EXIT_OK


def _acceptable_price(price: int, buy: bool, args: argparse.Namespace) -> int:
    if args.max_price is not None:
        if not buy:
            raise UsageError(
                "--max-price bounds a buy (a long, or closing a short); this trade sells: "
                "use --min-price"
            )
        return units.check_price(units.parse_wad(args.max_price, "--max-price"), 18, "--max-price")
    if args.min_price is not None:
        if buy:
            raise UsageError(
                "--min-price bounds a sell (a short, or closing a long); this trade buys: "
                "use --max-price"
            )
        return units.check_price(units.parse_wad(args.min_price, "--min-price"), 18, "--min-price")
    slippage = units.parse_decimal(args.slippage, "--slippage")
    if not 0 <= slippage < 100:
        raise UsageError(
            f"--slippage must be a percentage from 0 to under 100, got {args.slippage}"
        )
    pct = units.decimal_to_units(slippage, 16, "--slippage")  # percent -> WAD ratio
    return price + (price * pct + WAD - 1) // WAD if buy else price - price * pct // WAD


def _trade(ctx: Context, market: str, size: int, verb: str) -> int:
    bw = ctx.bulwark()
    market_id = bw.market_id(market)
    name = market_name(bw, market_id)
    signer = ctx.signer()
    price = int(bw.call(bw.oracle.functions.priceWad(market_id), action=f"price of {name}"))
    config = riskmath.MarketConfig.from_tuple(bw.call(bw.ch.functions.marketConfig(market_id)))
    if abs(size) > config.max_open_interest:
        raise BulwarkError(
            f"SIZE {wad(abs(size), None)} is more than {name}'s open-interest cap of "
            f"{wad(config.max_open_interest, None)} per side: no account can hold it"
        )
    limit = _acceptable_price(price, size > 0, ctx.args)
    fn = bw.ch.functions.trade(market_id, size, limit)
    try:
        receipt = send(bw, fn, signer, action=f"trade {name}")
    except TxReverted as exc:
        if exc.error.name != "TradePoolExposureCap":
            raise
        hint = pool_cap_hint(bw, market_id, size, exc.error.args)
        raise BulwarkError(revert_message(exc, bw.deployment.collateral_decimals, hint)) from None
    fills = [
        e for e in events(bw.ch.events.PositionChanged, receipt) if e["account"] == signer.address
    ]
    if not fills:
        raise BulwarkError(f"the trade in {name} was mined but reported no fill")
    f = fills[-1]
    data = {
        "account": signer.address,
        "market": name,
        "size_delta": units.format_wad(f["sizeDeltaWad"]),
        "new_size": units.format_wad(f["newSizeWad"]),
        "price": units.format_wad(f["priceWad"]),
        "acceptable_price": units.format_wad(limit),
        "fee": units.format_wad(f["feeWad"]),
        "realized_pnl": units.format_wad(f["realizedPnlWad"]),
        "funding_paid": units.format_wad(f["fundingPaidWad"]),
        **tx_info(receipt),
    }
    after = status.account(bw, signer.address, accounts=())
    mine = next((p for p in after.positions if p.market_id == market_id), None)
    liq = mine.liquidation_price if mine is not None else None
    data["leverage"] = wad_exact(after.leverage)
    data["liquidation_price"] = wad_exact(liq)
    data["equity"] = wad_exact(after.equity)
    side = "bought" if size > 0 else "sold"
    lines = [
        f"{verb}: {side} {wad(abs(size), None)} {name} at {wad(f['priceWad'])} "
        f"(bound {wad(limit)}); fee {wad(f['feeWad'])}",
        f"  position now {wad(f['newSizeWad'], None)}; "
        f"realized PnL {wad(f['realizedPnlWad'], sign=True)}, "
        f"funding paid {wad(f['fundingPaidWad'], sign=True)}",
    ]
    if mine is not None:
        lines.append(
            f"  leverage {wad(after.leverage)}x (notional {wad(after.notional)} / equity "
            f"{wad(after.equity)}); {name} liquidation price "
            + (wad(liq) if liq is not None else "none (no positive price gets there)")
        )
    ctx.report(data, lines)
    return EXIT_OK


SIZE_STEP = WAD // 10_000  # the largest passing size is shown rounded down to 0.0001


def pool_cap_hint(bw: Bulwark, market_id: int, size: int, args: dict[str, Any]) -> str:
    """Why the pool refused and the largest size of this trade that it takes now.

    The pool takes at most ``cap`` = k x pool equity of exposure in each market, exposure being
    ``ceil(max(long open interest, short open interest) x price)``. A new long adds to the long
    side, a new short to the short side; so the largest buy is floor(cap / price) - long OI and the
    largest sell floor(cap / price) - short OI. The cap is taken from the pool's equity now (views),
    without the fee the trade would add to it, so the size shown passes (rounded down to 0.0001).
    """
    blocked = int(args.get("marketId", market_id))
    deposit = "deposits into the pool raise the cap: `bulwark pool deposit AMOUNT`"
    if blocked != market_id:
        return (
            f"the pool is already over its exposure cap in {market_name(bw, blocked)}, so it "
            f"takes no trade that adds risk until it grows; {deposit}"
        )
    name = market_name(bw, market_id)
    equity, _error = status.read_pool_equity(bw)
    price = int(bw.call(bw.oracle.functions.priceWad(market_id)))
    state = riskmath.MarketState.from_tuple(bw.call(bw.ch.functions.marketState(market_id)))
    multiple = riskmath.RiskParams.from_tuple(
        bw.call(bw.ch.functions.riskParams())
    ).pool_exposure_multiple
    cap = riskmath.mul_wad_down(max(equity or 0, 0), multiple)
    buy, sell = status.pool_room(cap, state, price)
    room = (buy if size > 0 else sell) // SIZE_STEP * SIZE_STEP
    if room == 0:
        return f"the pool takes no more {name} on this side now; {deposit}"
    side, sign = ("buy", "") if size > 0 else ("sell", "-")
    return (
        f"the largest {side} the pool takes now is {wad(room, None)} {name} "
        f"(`bulwark trade open {name} {sign}{wad(room, None)}`); {deposit}"
    )


def cmd_trade_open(ctx: Context) -> int:
    size = units.parse_units(ctx.args.size, 18, "SIZE", allow_negative=True)
    return _trade(ctx, ctx.args.market, size, "opened")


def cmd_trade_close(ctx: Context) -> int:
    bw = ctx.bulwark()
    market_id = bw.market_id(ctx.args.market)
    signer = ctx.signer()
    size = int(bw.call(bw.ch.functions.positionOf(signer.address, market_id))[0])
    if size == 0:
        raise BulwarkError(
            f"{signer.address} has no position in {ctx.args.market.upper()} to close"
        )
    return _trade(ctx, ctx.args.market, -size, "closed")


# ---------------------------------------------------------------------------- account


def cmd_account(ctx: Context) -> int:
    bw = ctx.bulwark()
    if ctx.args.address:
        address = parse_address(ctx.args.address)
    elif ctx.has_signer():
        address = ctx.signer().address
    else:
        raise UsageError(
            "bulwark account: give an ADDRESS, or a signer (--dev-account N, --keystore "
            f"FILE or ${ENV_PRIVATE_KEY}) to show your own account"
        )
    _, symbol = token_info(bw)
    if ctx.args.history:
        found = history.entries(bw, address)
        ctx.report(
            {"address": address, "history": [history.entry_json(bw, e, symbol) for e in found]},
            history.history_lines(bw, address, found, symbol),
        )
        return EXIT_OK
    view = status.account(bw, address)
    data, lines = account_json(bw, view), account_lines(bw, view, symbol)
    hit = history.last_hit(bw, address, status.latest_timestamp(bw))
    data["last_liquidation_or_adl"] = hit.strip() if hit else None
    if hit:
        lines.insert(1, hit)
    ctx.report(data, lines)
    return EXIT_OK


def account_json(bw: Bulwark, v: status.AccountView) -> dict[str, Any]:
    return {
        "address": v.address,
        "wallet": tokens_exact(bw, v.wallet_tokens),
        "margin": wad_exact(v.margin),
        "equity": wad_exact(v.equity),
        "initial_margin": wad_exact(v.initial_margin),
        "maintenance_margin": wad_exact(v.maintenance_margin),
        "margin_ratio": wad_exact(v.margin_ratio),
        "leverage": wad_exact(v.leverage),
        "free_margin": wad_exact(v.free_margin),
        "liquidatable": v.liquidatable,
        "stale_prices": v.stale,
        "stale_error": v.stale_error,
        "positions": [
            {
                "market": p.market,
                "side": p.side,
                "size": wad_exact(p.size),
                "entry_price": wad_exact(p.entry_price),
                "price": wad_exact(p.price),
                "notional": wad_exact(p.notional),
                "upnl": wad_exact(p.upnl),
                "pending_funding": wad_exact(p.pending_funding),
                "liquidation_price": wad_exact(p.liquidation_price),
                "price_stale_since": v.stale.get(p.market),
                "adl": {
                    "known": p.adl.known,
                    "score": wad_exact(p.adl.score),
                    "rank": p.adl.rank,
                    "queue_length": p.adl.queue_length,
                    "percentile": p.adl.percentile,
                    "lights": p.adl.lights,
                },
            }
            for p in v.positions
        ],
    }


def account_lines(bw: Bulwark, v: status.AccountView, symbol: str) -> list[str]:
    ratio = (
        units.format_percent(v.margin_ratio) if v.margin_ratio is not None else "n/a (equity <= 0)"
    )
    lev = f"{wad(v.leverage)}x" if v.leverage is not None else "-"
    state = "LIQUIDATABLE" if v.liquidatable else "healthy"
    if v.stale:
        state += " at the last feed prices"
    lines = [
        f"account {v.address}  ({state}; wallet {tokens(bw, v.wallet_tokens)} {symbol})",
        f"  margin {wad(v.margin)}   equity {wad(v.equity)}   free margin {wad(v.free_margin)}",
        f"  initial margin {wad(v.initial_margin)}   "
        f"maintenance margin {wad(v.maintenance_margin)}",
        f"  margin ratio {ratio} (maintenance / equity; liquidation at 100%)   leverage {lev}",
    ]
    if not v.positions:
        lines.append("  no open positions")
        return lines
    rows = []
    for p in v.positions:
        if not p.adl.known:
            adl = "unknown (stale price)"
        elif p.adl.rank is not None:
            adl = f"{lights(p.adl.lights)} rank {p.adl.rank} of {p.adl.queue_length}"
        else:
            adl = f"{lights(0)} not in queue"
        rows.append(
            [
                p.market,
                p.side,
                wad(abs(p.size), None),
                wad(p.entry_price),
                wad(p.price) + (" STALE" if p.market in v.stale else ""),
                wad(p.notional),
                wad(p.upnl, sign=True),
                wad(p.pending_funding, sign=True),
                wad(p.liquidation_price) if p.liquidation_price is not None else "none",
                adl,
            ]
        )
    lines += table(
        [
            "MARKET",
            "SIDE",
            "SIZE",
            "ENTRY",
            "PRICE",
            "NOTIONAL",
            "uPnL",
            "FUNDING OWED",
            "LIQ. PRICE",
            "ADL QUEUE",
        ],
        rows,
    )
    lines += stale_lines(bw, v.stale)
    return lines


def stale_lines(bw: Bulwark, stale: dict[str, int], now: int | None = None) -> list[str]:
    """What is stale since when, and how to refresh it on a local chain."""
    if not stale:
        return []
    now = status.latest_timestamp(bw) if now is None else now
    lines = [
        f"  STALE: {name} price last published {when(at, now)}; the chain refuses it, so the "
        "figures above are computed at that last price"
        for name, at in stale.items()
    ]
    if bw.deployment.local:
        names = " ".join(stale)
        lines.append(
            f"  refresh: `bulwark feed set MARKET PRICE` for {names} (the feeder: dev account 0), "
            "or `bulwark feed replay FILE.csv` to follow a scenario"
        )
    else:
        lines.append("  the feed's operator must publish a fresh price; until then trading waits")
    return lines
