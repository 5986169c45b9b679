"""`bulwark status`, and the delegated `keeper`, `stress` and `demo` commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulwark.chain.contracts import Bulwark, BulwarkError
from bulwark.cli.args import EXIT_OK, UsageError
from bulwark.cli.context import Context, token_info
from bulwark.cli.render import table, tokens, tokens_exact, wad, wad_exact, when
from bulwark.cli.trading import stale_lines
from bulwark.core import paths, units
from bulwark.keeper import status

if TYPE_CHECKING:
    from bulwark.sim.stress import StressOptions
    from bulwark.sim.sweep import SweepConfig

# ---------------------------------------------------------------------------- status


def cmd_status(ctx: Context) -> int:
    bw = ctx.bulwark()
    s = status.protocol(bw)
    terms = status.market_terms(bw, s.markets, s.pool_equity)
    data = status_json(bw, s)
    data["terms"] = [terms_json(t) for t in terms]
    lines = status_lines(bw, s)
    at = next(i for i, line in enumerate(lines) if line.startswith("pool equity"))
    lines[at:at] = ["market terms (`bulwark markets` explains each)", *terms_table(terms)]
    ctx.report(data, lines)
    if not s.conservation.ok:
        problems = [*s.conservation.mirror_errors, *s.conservation.owing]
        raise BulwarkError(
            f"conservation check FAILED: vault gap {wad(s.conservation.vault_gap_wad, None)}"
            + (f"; {problems[0]}" if problems else "")
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
                "price_stale": m.stale,
                "last_price": wad_exact(m.last_price),
                "price_updated_at": m.updated_at,
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
            "window_ends_at": f.current_window_end,
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
        "liquidatable_at_last_prices": s.at_last_prices,
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
        if m.price is not None:
            price = wad(m.price)
        elif m.last_price is not None:
            price = f"{wad(m.last_price)} STALE"
        else:
            price = "invalid"
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
    stale = {m.name: m.updated_at or 0 for m in s.markets if m.stale and m.last_price is not None}
    for m in s.markets:
        if m.price_error and m.name not in stale:
            lines.append(f"  {m.name}: {m.price_error}")
    lines += stale_lines(bw, stale, s.timestamp)
    if s.pool_equity is None:
        pool = f"unknown ({s.pool_error})"
    else:
        pool = wad(s.pool_equity) + (" at the last feed prices" if s.pool_error else "")
    if s.coverage is not None:
        coverage = units.format_percent(s.coverage) + (" at stale prices" if stale else "")
    elif s.oi_notional is None:
        coverage = "- (a price cannot be read)"
    else:
        coverage = "- (no open interest)"
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
        lines.append(
            f"accounts          {s.accounts} known, {len(s.liquidatable)} liquidatable"
            + (" at the last feed prices" if s.at_last_prices else "")
        )
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
    lines += [f"  {e}" for e in [*c.mirror_errors, *c.owing]]
    return lines


# ---------------------------------------------------------------------------- markets


def cmd_markets(ctx: Context) -> int:
    bw = ctx.bulwark()
    views = status.markets(bw)
    equity, error = status.read_pool_equity(bw)
    terms = status.market_terms(bw, views, equity)
    lines: list[str] = []
    for t in terms:
        lines += terms_lines(t, equity, error)
    ctx.report({"pool_equity": wad_exact(equity), "markets": [terms_json(t) for t in terms]}, lines)
    return EXIT_OK


def _size(value: int) -> str:
    return units.format_wad(value, None, group=True)


def _pct(ratio: int, places: int = 2) -> str:
    return units.format_percent(ratio, places)


def terms_json(t: status.MarketTerms) -> dict[str, Any]:
    m, c, r = t.market, t.market.config, t.risk
    return {
        "id": m.id,
        "name": m.name,
        "price": wad_exact(m.mark_price),
        "price_stale": m.stale,
        "taker_fee": wad_exact(c.taker_fee),
        "fund_fee_share": wad_exact(r.fund_fee_share),
        "max_leverage": wad_exact(t.max_leverage),
        "initial_margin_ratio": wad_exact(c.im_ratio),
        "maintenance_margin_ratio": wad_exact(c.mm_ratio),
        "liquidation_penalty": wad_exact(c.penalty_ratio),
        "keeper_share": wad_exact(r.keeper_share),
        "partial_fraction": wad_exact(c.partial_fraction),
        "min_partial_notional": wad_exact(c.min_partial_notional),
        "max_funding_rate_per_day": wad_exact(c.max_funding_rate_per_day),
        "skew_scale": wad_exact(c.skew_scale),
        "funding_rate_per_day": wad_exact(m.funding_rate_per_day),
        "max_open_interest": wad_exact(c.max_open_interest),
        "long_open_interest": wad_exact(m.state.long_open_interest),
        "short_open_interest": wad_exact(m.state.short_open_interest),
        "pool_exposure": wad_exact(m.pool_exposure),
        "pool_exposure_cap": wad_exact(t.pool_cap),
        "pool_exposure_multiple": wad_exact(r.pool_exposure_multiple),
        "pool_room_buy": wad_exact(t.buy_room),
        "pool_room_sell": wad_exact(t.sell_room),
    }


def terms_table(terms: list[status.MarketTerms]) -> list[str]:
    rows = []
    for t in terms:
        c = t.market.config
        rows.append(
            [
                t.market.name,
                f"{wad(t.max_leverage, None)}x",
                f"{_pct(c.im_ratio)} / {_pct(c.mm_ratio)}",
                _pct(c.taker_fee),
                _size(c.max_open_interest),
                _pct(c.max_funding_rate_per_day, 3),
                f"{wad(t.buy_room, 4)} / {wad(t.sell_room, 4)}",
            ]
        )
    return table(
        [
            "MARKET",
            "MAX LEV.",
            "IM / MM",
            "FEE",
            "OI CAP/SIDE",
            "MAX FUNDING/DAY",
            "POOL ROOM BUY/SELL",
        ],
        rows,
    )


def terms_lines(t: status.MarketTerms, equity: int | None, error: str | None) -> list[str]:
    m, c, r = t.market, t.market.config, t.risk
    price = wad(m.mark_price) + (" (STALE)" if m.stale else "") if m.mark_price else "unknown"
    funding_side = "longs pay" if m.funding_rate_per_day > 0 else "shorts pay"
    pool = (
        f"{wad(m.pool_exposure)} of a {wad(t.pool_cap)} cap ({wad(r.pool_exposure_multiple, None)} "
        f"x pool equity {wad(equity)}): the pool takes a buy of up to {wad(t.buy_room, 4)} or a "
        f"sell of up to {wad(t.sell_room, 4)} now"
        if t.pool_cap is not None
        else f"unknown ({error})"
    )
    return [
        f"{m.name} (market {m.id})  price {price}",
        f"  fees          taker {_pct(c.taker_fee)} of notional ({_pct(r.fund_fee_share)} of it to "
        "the insurance fund, the rest to the pool)",
        f"  margin        initial {_pct(c.im_ratio)} (max leverage {wad(t.max_leverage, None)}x), "
        f"maintenance {_pct(c.mm_ratio)}",
        f"  liquidation   penalty {_pct(c.penalty_ratio)} of the closed notional "
        f"({_pct(r.keeper_share)} to the keeper, {wad(r.reward_floor)} to "
        f"{wad(r.reward_ceiling)}); a position over {wad(c.min_partial_notional)} notional is "
        f"closed {_pct(c.partial_fraction)} at a time",
        f"  funding       up to {_pct(c.max_funding_rate_per_day, 3)} a day at a skew of "
        f"{_size(c.skew_scale)}; now {_pct(m.funding_rate_per_day, 4)} a day"
        + (f" ({funding_side})" if m.funding_rate_per_day else ""),
        f"  open interest long {_size(m.state.long_open_interest)} / short "
        f"{_size(m.state.short_open_interest)}, cap {_size(c.max_open_interest)} per side",
        f"  pool exposure {pool}",
    ]


# ---------------------------------------------------------------------------- delegated commands


def cmd_keeper(ctx: Context) -> int:
    from bulwark.cli import keeper  # the daemon's imports load only for this command

    args = ctx.args
    try:  # file < BULWARK_* < flags; a wrong setting is one line per problem, exit code 2
        settings = keeper.settings_from_args(args)
    except BulwarkError as exc:
        for line in str(exc).splitlines():
            print(f"bulwark: error: {line}", file=ctx.err, flush=True)
        return 2
    args.settings = settings
    for name in ("rpc", "deployment"):  # from the file or BULWARK_*, unless a flag gave one
        if getattr(args, name, None) is None:
            setattr(args, name, getattr(settings, name))
    signer_flags = ("keystore", "dev_account", "account_index")
    if settings.keystore and all(getattr(args, n, None) is None for n in signer_flags):
        args.keystore = settings.keystore
    try:
        bw = ctx.bulwark()
        signer = ctx.signer(default_dev=0)
    except UsageError:
        raise
    except BulwarkError as exc:  # the keeper's own exit codes (docs/keeper.md): 4 or 2
        return int(keeper.refused_at_startup(ctx, exc))
    return int(keeper.run_from_cli(bw, signer, ctx.args) or 0)


def cmd_stress(ctx: Context) -> int:
    if ctx.args.out is None:
        ctx.args.out = str(paths.project_root() / "reports" / Path(ctx.args.scenario).stem)
    # The run reads no environment: the node, the deployment file and the signer (resolved as for
    # every command, only when the run is on a node that was named) come from here.
    ctx.args.rpc = ctx.rpc_url()
    ctx.args.deployment = ctx.deployment_given()
    ctx.args.signer = lambda: ctx.signer(default_dev=0)
    return run_stress(ctx.args)


def run_stress(args: argparse.Namespace) -> int:
    """`bulwark stress`'s flags into the typed options of bulwark/sim/stress.py, then the run (or the
    sweep), its summary or JSON printed; a mistake is one line on stderr and exit code 1."""
    run_command = _import_entry("bulwark.sim.stress", "the stress replay", "run_command")
    return _report_outcome("stress", bool(getattr(args, "json", False)),
                           lambda: run_command(stress_options(args)))  # fmt: skip


def _report_outcome(command: str, as_json: bool, produce: Callable[[], Any]) -> int:
    """Runs a simulation command and prints what it hands back: the JSON or the summary lines;
    exit code 0 when every check passed, 3 when one failed, 1 (one line on stderr) for a
    mistake."""
    from bulwark.sim.scenarios import ScenarioError

    try:
        outcome = produce()
    except (BulwarkError, ScenarioError) as exc:
        print(f"bulwark {command}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(outcome.data, indent=2) if as_json else "\n".join(outcome.lines))
    return 0 if outcome.ok else 3


# Flags of `bulwark stress` that only a fund sweep reads.
SWEEP_ONLY_FLAGS = (
    "--window-caps",
    "--haircut-bound",
    "--refine",
    "--adl-policy",
    "--compare-policies",
)


def stress_options(args: argparse.Namespace) -> StressOptions:
    """The options of `bulwark stress` from its parsed flags (absent ones take their defaults):
    the run's StressConfig, the chain, the report folder and, with --fund-sweep, the SweepConfig."""
    from bulwark.sim.stress import ChainOptions, StressConfig, StressOptions, default_out

    if getattr(args, "fund_sweep", None) is None:
        for flag in SWEEP_ONLY_FLAGS:
            if getattr(args, flag.removeprefix("--").replace("-", "_"), None) not in (None, False):
                raise BulwarkError(f"{flag} applies to a fund sweep: add --fund-sweep")
    step, seed, speed = (getattr(args, k, None) for k in ("step", "seed", "speed"))
    max_steps = getattr(args, "max_steps", None)
    config = StressConfig(
        scenario=str(args.scenario),
        accounts=int(getattr(args, "accounts", None) or 500),
        seed=int(seed) if seed is not None else 1,
        speed=float(speed) if speed is not None else 1.0,
        step_seconds=int(step) if step is not None else None,
        max_steps=int(max_steps) if max_steps is not None else None,
    )
    out = getattr(args, "out", None)
    return StressOptions(
        config=config,
        out=Path(out) if out else default_out(config.scenario),
        chain=ChainOptions.of(args),
        json=bool(getattr(args, "json", False)),
        sweep=sweep_config(args) if getattr(args, "fund_sweep", None) is not None else None,
    )


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """--fund-sweep [PCTS], --window-caps, --haircut-bound, --refine, --adl-policy and
    --compare-policies into the sweep's SweepConfig (validated)."""
    from bulwark.sim import sweep

    fund = getattr(args, "fund_sweep", None)
    bound = getattr(args, "haircut_bound", None)
    cfg = sweep.SweepConfig(
        fund_pcts=sweep.parse_pcts(
            None if fund in (None, True) else fund, sweep.DEFAULT_FUND_PCTS, "--fund-sweep"
        ),
        window_caps_pct=sweep.parse_pcts(
            getattr(args, "window_caps", None), sweep.DEFAULT_WINDOW_CAPS_PCT, "--window-caps"
        ),
        haircut_bound_pct=sweep.parse_pcts(
            bound, (sweep.DEFAULT_HAIRCUT_BOUND_PCT,), "--haircut-bound"
        )[0],
        refine=int(getattr(args, "refine", None) or 0),
        adl_policy=getattr(args, "adl_policy", None),
        compare_policies=bool(getattr(args, "compare_policies", False)),
    )
    cfg.validate()
    return cfg


def cmd_demo(ctx: Context) -> int:
    out = Path(ctx.args.out) if ctx.args.out else paths.project_root() / "reports" / "demo"
    run = _import_entry("bulwark.sim.demo", "the demo", "run")
    from bulwark.sim.stress import ChainOptions

    # Only an explicit --rpc moves the demo off its own Anvil (BULWARK_RPC is for other commands).
    chain = ChainOptions(rpc=getattr(ctx.args, "rpc", None))
    return _report_outcome("demo", bool(ctx.args.json), lambda: run(out, chain))


def _import_entry(module: str, what: str, name: str) -> Callable[..., Any]:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BulwarkError(f"{what} ({module}) is not part of this installation") from None
        raise
    entry: Callable[..., Any] = getattr(mod, name)
    return entry
