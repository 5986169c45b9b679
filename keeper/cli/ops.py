"""`bulwark status`, and the delegated `keeper`, `stress` and `demo` commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from keeper import paths, status, units
from keeper.chain import Bulwark, BulwarkError
from keeper.cli.args import EXIT_OK, UsageError
from keeper.cli.context import Context, token_info
from keeper.cli.render import table, tokens, tokens_exact, wad, wad_exact, when

# ---------------------------------------------------------------------------- status


def cmd_status(ctx: Context) -> int:
    bw = ctx.bulwark()
    s = status.protocol(bw)
    ctx.report(status_json(bw, s), status_lines(bw, s))
    if not s.conservation.ok:
        raise BulwarkError(
            f"conservation check FAILED: vault gap {wad(s.conservation.vault_gap_wad, None)}"
            + (f"; {s.conservation.mirror_errors[0]}" if s.conservation.mirror_errors else "")
        )
    return EXIT_OK


def status_json(bw: Bulwark, s: status.ProtocolStatus) -> dict[str, Any]:
    f = s.fund
    return {
        "chain_id": bw.deployment.chain_id,
        "block": s.block,
        "timestamp": s.timestamp,
        "reduce_only": s.reduce_only,
        "markets": [
            {
                "id": m.id,
                "name": m.name,
                "price": wad_exact(m.price),
                "price_error": m.price_error,
                "long_open_interest": wad_exact(m.state.long_open_interest),
                "short_open_interest": wad_exact(m.state.short_open_interest),
                "open_interest_notional": wad_exact(m.oi_notional),
                "funding_rate_per_day": wad_exact(m.funding_rate_per_day),
                "pool_exposure": wad_exact(m.pool_exposure),
                "bad_debt_long": wad_exact(m.bad_debt_long),
                "bad_debt_short": wad_exact(m.bad_debt_short),
            }
            for m in s.markets
        ],
        "pool": {
            "address": bw.pool.address,
            "equity": wad_exact(s.pool_equity),
            "error": s.pool_error,
        },
        "fund": {
            "address": bw.fund.address,
            "assets": wad_exact(f.assets),
            "available": wad_exact(f.available),
            "window_remaining": wad_exact(f.window_remaining),
            "window_ends_at": f.window_ends_at,
            "cap": tokens_exact(bw, f.cap_tokens),
        },
        "open_interest_notional": wad_exact(s.oi_notional),
        "coverage": wad_exact(s.coverage),
        "bad_debt": wad_exact(s.total_bad_debt),
        "bad_debt_since": s.bad_debt_since or None,
        "accounts": s.accounts,
        "liquidatable": [
            {
                "address": x.address,
                "equity": wad_exact(x.equity),
                "maintenance_margin": wad_exact(x.maintenance_margin),
            }
            for x in s.liquidatable
        ],
        "health_error": s.health_error,
        "conservation": s.conservation.as_dict(),
    }


def status_lines(bw: Bulwark, s: status.ProtocolStatus) -> list[str]:
    _, symbol = token_info(bw)
    f = s.fund
    lines = [
        f"Bulwark on chain {bw.deployment.chain_id}, block {s.block} ({when(s.timestamp)})"
        + ("   REDUCE-ONLY" if s.reduce_only else "")
    ]
    rows = []
    for m in s.markets:
        price = wad(m.price) if m.price is not None else "stale/invalid"
        rows.append(
            [
                m.name,
                price,
                wad(m.state.long_open_interest, 4),
                wad(m.state.short_open_interest, 4),
                wad(m.oi_notional),
                units.format_percent(m.funding_rate_per_day, 4),
                wad(m.pool_exposure),
                f"{wad(m.bad_debt_long)} / {wad(m.bad_debt_short)}",
            ]
        )
    lines += table(
        [
            "MARKET",
            "PRICE",
            "LONG OI",
            "SHORT OI",
            "OI NOTIONAL",
            "FUNDING/DAY",
            "POOL EXPOSURE",
            "BAD DEBT L/S",
        ],
        rows,
    )
    for m in s.markets:
        if m.price_error:
            lines.append(f"  {m.name}: {m.price_error}")
    pool = wad(s.pool_equity) if s.pool_equity is not None else f"unknown ({s.pool_error})"
    coverage = (
        units.format_percent(s.coverage) if s.coverage is not None else "- (no open interest)"
    )
    window = (
        f"window ends {when(f.window_ends_at, s.timestamp)}"
        if f.window_ends_at > s.timestamp
        else "new window"
    )
    lines += [
        f"pool equity       {pool}",
        f"insurance fund    assets {wad(f.assets)}, available {wad(f.available)}, window remaining "
        f"{wad(f.window_remaining)} ({window}), cap {tokens(bw, f.cap_tokens)} {symbol}",
        f"coverage          {coverage} (fund assets / open-interest notional {wad(s.oi_notional)})",
        f"bad debt          {wad(s.total_bad_debt)}"
        + (
            f" (outstanding since {when(s.bad_debt_since, s.timestamp)})"
            if s.bad_debt_since
            else ""
        ),
    ]
    if s.health_error:
        lines.append(f"accounts          {s.accounts} known; health unknown: {s.health_error}")
    else:
        lines.append(f"accounts          {s.accounts} known, {len(s.liquidatable)} liquidatable")
        for x in s.liquidatable[:20]:
            lines.append(
                f"  {x.address}  equity {wad(x.equity)} < maintenance {wad(x.maintenance_margin)}"
            )
        if len(s.liquidatable) > 20:
            lines.append(f"  ... and {len(s.liquidatable) - 20} more (--json lists all)")
    c = s.conservation
    verdict = "OK" if c.ok else "FAILED"
    lines.append(
        f"conservation      {verdict}: vault {wad(c.token_balance_wad)} "
        f"+ bad debt {wad(c.bad_debt_wad)} - margins {wad(c.margin_sum_wad)} "
        f"= {wad(c.vault_gap_wad, None)}"
    )
    lines += [f"  {e}" for e in c.mirror_errors]
    return lines


# ---------------------------------------------------------------------------- delegated commands


def cmd_keeper(ctx: Context) -> int:
    run_from_cli = _import_entry("keeper.daemon", "the keeper daemon")
    try:
        bw = ctx.bulwark()
        signer = ctx.signer(default_dev=0)
    except UsageError:
        raise
    except BulwarkError as exc:  # the keeper's own exit codes (docs/keeper.md): 4 or 2
        refused = _import_entry("keeper.daemon", "the keeper daemon", "refused_at_startup")
        return int(refused(ctx, exc))
    return int(run_from_cli(bw, signer, ctx.args) or 0)


def cmd_stress(ctx: Context) -> int:
    if ctx.args.out is None:
        ctx.args.out = str(paths.project_root() / "reports" / Path(ctx.args.scenario).stem)
    run_from_cli = _import_entry("keeper.stress", "the stress replay")
    return int(run_from_cli(ctx.args) or 0)


def cmd_demo(ctx: Context) -> int:
    if ctx.args.out is None:
        ctx.args.out = str(paths.project_root() / "reports" / "demo")
    run_from_cli = _import_entry("keeper.demo", "the demo")
    return int(run_from_cli(ctx.args) or 0)


def _import_entry(module: str, what: str, name: str = "run_from_cli") -> Callable[..., Any]:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BulwarkError(f"{what} ({module}) is not part of this installation") from None
        raise
    entry: Callable[..., Any] = getattr(mod, name)
    return entry
