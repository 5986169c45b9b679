"""`bulwark pool ...` and `bulwark fund ...`."""

from __future__ import annotations

from typing import Any

from web3.types import TxReceipt

from bulwark.chain.contracts import Bulwark, BulwarkError
from bulwark.cli.args import EXIT_OK, MAX_UINT, UsageError
from bulwark.cli.context import (
    Context,
    chain_now,
    parse_address,
    parse_amount,
    prepare_payment,
    send,
    token_info,
)
from bulwark.cli.render import duration, events, tokens, tokens_exact, tx_info, wad, wad_exact, when
from bulwark.core import units
from bulwark.keeper import status


def shares_text(shares: int, decimals: int) -> str:
    """Shares for a person: grouped, at most 4 decimals (JSON keeps every digit)."""
    text = units.format_units(shares, decimals, 4, group=True)
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------------------- pool


def cmd_pool_deposit(ctx: Context) -> int:
    bw = ctx.bulwark()
    amount = parse_amount(bw, ctx.args.amount)
    signer = ctx.signer()
    prepare_payment(bw, signer, bw.pool.address, amount)
    receipt = send(
        bw, bw.pool.functions.deposit(amount, signer.address), signer, action="pool deposit"
    )
    shares = sum(int(e["shares"]) for e in events(bw.pool.events.Deposit, receipt))
    return _report_pool(ctx, bw, signer.address, "deposited", amount, shares, receipt)


def cmd_pool_withdraw(ctx: Context) -> int:
    bw = ctx.bulwark()
    signer = ctx.signer()
    p = bw.pool.functions
    locked_until = int(bw.call(p.lockedUntil(signer.address)))
    now = chain_now(bw)
    if locked_until > now:
        raise BulwarkError(
            f"pool shares of {signer.address} are locked after a deposit, until "
            f"{when(locked_until, now)}"
        )
    bad_debt = int(bw.call(bw.ch.functions.totalBadDebtWad()))
    if bad_debt:
        raise BulwarkError(f"withdrawals wait while bad debt is outstanding ({wad(bad_debt)})")
    exit_ = status.pool_exit(bw, signer.address)
    if exit_.equity < 0:
        raise BulwarkError(
            f"the pool is under water (equity {wad(exit_.equity)}): exits wait until it recovers"
        )
    most = exit_.max_withdraw
    if ctx.args.amount.strip().lower() == "max":
        amount = most
        if amount == 0:
            raise BulwarkError(f"{signer.address} has nothing to withdraw from the pool now")
    else:
        amount = parse_amount(bw, ctx.args.amount)
        if amount > most:
            reason = (
                "what its shares are worth at exit"
                if most == exit_.exit_value
                else "what the pool can pay out now under its exposure cap"
            )
            raise BulwarkError(
                f"{signer.address} can withdraw at most {tokens(bw, most)} from the pool ({reason})"
            )
    receipt = send(
        bw, p.withdraw(amount, signer.address, signer.address), signer, action="pool withdraw"
    )
    shares = sum(int(e["shares"]) for e in events(bw.pool.events.Withdraw, receipt))
    return _report_pool(ctx, bw, signer.address, "withdrew", amount, shares, receipt)


def _report_pool(
    ctx: Context, bw: Bulwark, address: str, verb: str, amount: int, shares: int, receipt: TxReceipt
) -> int:
    p = bw.pool.functions
    decimals = int(bw.call(p.decimals()))
    exit_ = status.pool_exit(bw, address)
    balance, locked_until = exit_.shares, exit_.locked_until
    _, symbol = token_info(bw)
    now = chain_now(bw)
    data = {
        "account": address,
        verb: tokens_exact(bw, amount),
        "shares": units.format_units(shares, decimals),
        "shares_held": units.format_units(balance, decimals),
        "value": tokens_exact(bw, exit_.value),
        "exit_value": tokens_exact(bw, exit_.exit_value),
        "locked_until": locked_until,
        **tx_info(receipt),
    }
    lines = [
        f"{verb} {tokens(bw, amount)} {symbol} ({shares_text(shares, decimals)} "
        f"LP shares); you hold {shares_text(balance, decimals)} shares "
        f"worth {tokens(bw, exit_.value)} {symbol}"
    ]
    if exit_.exit_value < exit_.value:
        lines.append(
            f"  at exit they pay {tokens(bw, exit_.exit_value)} {symbol}: exits are priced at the "
            "lower of the pool's equity and its margin (no unrealised gain leaves)"
        )
    if locked_until > now:
        lines.append(f"  shares locked until {when(locked_until, now)}")
    ctx.report(data, lines)
    return EXIT_OK


# ---------------------------------------------------------------------------- insurance fund


def cmd_fund_stake(ctx: Context) -> int:
    bw = ctx.bulwark()
    amount = parse_amount(bw, ctx.args.amount)
    signer = ctx.signer()
    room = int(bw.call(bw.fund.functions.maxDeposit(signer.address)))
    if amount > room:
        raise BulwarkError(f"the fund takes at most {tokens(bw, room)} more before its cap")
    prepare_payment(bw, signer, bw.fund.address, amount)
    receipt = send(
        bw, bw.fund.functions.deposit(amount, signer.address), signer, action="fund stake"
    )
    shares = sum(int(e["shares"]) for e in events(bw.fund.events.Deposit, receipt))
    decimals = int(bw.call(bw.fund.functions.decimals()))
    _, symbol = token_info(bw)
    ctx.report(
        {
            "account": signer.address,
            "staked": tokens_exact(bw, amount),
            "shares": units.format_units(shares, decimals),
            **tx_info(receipt),
        },
        [
            f"staked {tokens(bw, amount)} {symbol} for {shares_text(shares, decimals)} "
            "fund shares; unstaking takes a request, then a claim after the cooldown"
        ],
    )
    return EXIT_OK


def cmd_fund_unstake(ctx: Context) -> int:
    bw = ctx.bulwark()
    signer = ctx.signer()
    f = bw.fund.functions
    decimals = int(bw.call(f.decimals()))
    held = int(bw.call(f.balanceOf(signer.address)))
    if ctx.args.shares.strip().lower() == "all":
        shares = held
        if shares == 0:
            raise BulwarkError(f"{signer.address} holds no fund shares")
    else:
        shares = units.parse_units(ctx.args.shares, decimals, "SHARES", unit="shares")
        if shares > held:
            raise BulwarkError(
                f"{signer.address} holds {units.format_units(held, decimals, group=True)} "
                "fund shares, fewer than that"
            )
    receipt = send(bw, f.requestUnstake(shares), signer, action="unstake request")
    req = events(bw.fund.events.UnstakeRequested, receipt)[-1]
    _, symbol = token_info(bw)
    now = chain_now(bw)
    ctx.report(
        {
            "account": signer.address,
            "request_id": int(req["requestId"]),
            "shares": units.format_units(shares, decimals),
            "value": tokens_exact(bw, int(req["assets"])),
            "ready_at": int(req["readyAt"]),
            "claim_until": int(req["claimUntil"]),
            **tx_info(receipt),
        },
        [
            f"unstake request #{req['requestId']}: {shares_text(shares, decimals)} "
            f"shares worth {tokens(bw, int(req['assets']))} {symbol} now",
            f"  claim from {when(int(req['readyAt']), now)} until "
            f"{when(int(req['claimUntil']), now)}: `bulwark fund claim {req['requestId']}`; it "
            "pays the lower of that value and the value then, and lapses back to staked if "
            "not claimed in time",
        ],
    )
    return EXIT_OK


def _request_id(ctx: Context, command: str) -> int:
    text = ctx.args.request_id.strip()
    try:
        if not (text.isascii() and text.isdigit()):
            raise ValueError
        request_id = int(text)
        if request_id > MAX_UINT:
            raise ValueError
    except ValueError:
        raise UsageError(
            f"bulwark fund {command}: ID must be a request number, got {ctx.args.request_id!r}"
        ) from None
    return request_id


def _open_request(bw: Bulwark, request_id: int, now: int) -> status.UnstakeView:
    req = status.unstake_request(bw, request_id)
    if req is None:
        lapsed = status.lapsed_at(bw, request_id)
        if lapsed is not None:
            raise BulwarkError(
                f"request #{request_id} lapsed {when(lapsed, now)}: its claim window had passed "
                "and its shares are staked again (`bulwark fund unstake` to ask anew)"
            )
        raise BulwarkError(
            f"no open unstake request #{request_id} (never made, or already claimed)"
        )
    return req


def cmd_fund_claim(ctx: Context) -> int:
    bw = ctx.bulwark()
    request_id = _request_id(ctx, "claim")
    signer = ctx.signer()
    now = chain_now(bw)
    req = _open_request(bw, request_id, now)
    if req.state(now) == "cooldown":
        raise BulwarkError(
            f"request #{request_id} is in its cooldown until {when(req.ready_at, now)}"
        )
    if req.state(now) == "lapsed":
        raise BulwarkError(
            f"request #{request_id} lapsed: its claim window closed {when(req.claim_until, now)}; "
            f"`bulwark fund lapse {request_id}` stakes its shares again, then unstake anew"
        )
    receipt = send(bw, bw.fund.functions.claim(request_id), signer, action="claim")
    claimed = events(bw.fund.events.UnstakeClaimed, receipt)[-1]
    _, symbol = token_info(bw)
    ctx.report(
        {
            "account": signer.address,
            "request_id": request_id,
            "paid": tokens_exact(bw, int(claimed["assets"])),
            "forfeited": tokens_exact(bw, int(claimed["forfeited"])),
            **tx_info(receipt),
        },
        [
            f"claimed request #{request_id}: paid {tokens(bw, int(claimed['assets']))} {symbol}"
            + (
                f", {tokens(bw, int(claimed['forfeited']))} left to the remaining stakers"
                if claimed["forfeited"]
                else ""
            )
        ],
    )
    return EXIT_OK


def cmd_fund_lapse(ctx: Context) -> int:
    bw = ctx.bulwark()
    request_id = _request_id(ctx, "lapse")
    signer = ctx.signer()
    now = chain_now(bw)
    req = _open_request(bw, request_id, now)
    if req.state(now) != "lapsed":
        raise BulwarkError(
            f"request #{request_id} can still be claimed until {when(req.claim_until, now)}"
        )
    receipt = send(bw, bw.fund.functions.lapse(request_id), signer, action="lapse")
    lapsed = events(bw.fund.events.UnstakeLapsed, receipt)[-1]
    decimals = int(bw.call(bw.fund.functions.decimals()))
    shares = units.format_units(int(lapsed["shares"]), decimals)
    ctx.report(
        {
            "request_id": request_id,
            "owner": req.owner,
            "shares": shares,
            **tx_info(receipt),
        },
        [f"request #{request_id} lapsed: {shares} shares are staked again for {req.owner}"],
    )
    return EXIT_OK


def cmd_fund_status(ctx: Context) -> int:
    bw = ctx.bulwark()
    holder = None
    if ctx.args.address:
        holder = parse_address(ctx.args.address)
    elif ctx.has_signer():
        holder = ctx.signer().address
    v = status.fund(bw, holder)
    _, symbol = token_info(bw)
    now = chain_now(bw)
    sd = v.share_decimals
    data: dict[str, Any] = {
        "assets": wad_exact(v.assets),
        "available": wad_exact(v.available),
        "window_remaining": wad_exact(v.window_remaining),
        "window_ends_at": v.current_window_end,
        "window_cap_ratio": wad_exact(v.window_cap_ratio),
        "cap": tokens_exact(bw, v.cap_tokens),
        "cooldown_seconds": v.cooldown,
        "claim_window_seconds": v.claim_window,
        "free_assets": wad_exact(v.free_assets),
        "reserved": tokens_exact(bw, v.reserved_tokens),
        "total_shares": units.format_units(v.total_shares, sd),
    }
    window = (
        f"ends {when(v.window_ends_at, now)}"
        if v.window_ends_at > now
        else "a new window opens with the next payout"
    )
    lines = [
        f"insurance fund {bw.fund.address}",
        f"  assets {wad(v.assets)}   available now {wad(v.available)}   "
        f"cap {tokens(bw, v.cap_tokens)} {symbol}",
        f"  payout window: {wad(v.window_remaining)} left of "
        f"{units.format_percent(v.window_cap_ratio)} of assets per window ({window})",
        f"  unstaking: cooldown {duration(v.cooldown)}, then a claim window of "
        f"{duration(v.claim_window)}; shares {shares_text(v.total_shares, sd)}",
        f"  free assets (back payouts) {wad(v.free_assets)}   reserved for open requests "
        f"{tokens(bw, v.reserved_tokens)} {symbol}",
    ]
    if holder:
        data["holder"] = {
            "address": holder,
            "shares": units.format_units(v.holder_shares, sd),
            "value": tokens_exact(bw, v.holder_value_tokens),
            "requests": [
                {
                    "id": r.request_id,
                    "shares": units.format_units(r.shares, sd),
                    "value_at_request": tokens_exact(bw, r.assets_at_request),
                    "value_now": tokens_exact(bw, r.value_now),
                    "claimable": tokens_exact(bw, r.claimable),
                    "ready_at": r.ready_at,
                    "claim_until": r.claim_until,
                    "ready": r.state(now) == "claimable",
                    "state": r.state(now),
                }
                for r in v.requests
            ],
        }
        lines.append(
            f"  {holder}: {shares_text(v.holder_shares, sd)} shares worth "
            f"{tokens(bw, v.holder_value_tokens)} {symbol}"
        )
        for r in v.requests:
            state = r.state(now)
            if state == "cooldown":
                ready = f"claimable from {when(r.ready_at, now)} until {when(r.claim_until, now)}"
            elif state == "claimable":
                ready = f"claimable now, until {when(r.claim_until, now)}"
            else:
                ready = f"lapsed {when(r.claim_until, now)}: `bulwark fund lapse {r.request_id}`"
            lines.append(
                f"    request #{r.request_id}: {tokens(bw, r.claimable)} {symbol} ({ready})"
            )
    ctx.report(data, lines)
    return EXIT_OK
