"""The ``bulwark`` command line.

Global options (``--rpc``, ``--deployment``, ``--keystore``, ``--dev-account``, ``--json``) may
stand before or after the subcommand: they are taken out of the arguments before argparse sees
the rest. Amounts are human units parsed exactly (bulwark.core.units). Every mistake ends in one line on
stderr and a non-zero exit code; a traceback appears only for an unexpected failure, and only
with ``BULWARK_DEBUG=1``. See docs/cli.md for every command with an example.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from bulwark.chain.contracts import BulwarkError, TxReverted
from bulwark.cli.accounts import cmd_accounts_create, cmd_accounts_fund, cmd_accounts_list
from bulwark.cli.args import (
    DEFAULT_NODE_PORT,
    DEFAULT_SLIPPAGE,
    ENV_DEBUG,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    GLOBAL_OPTIONS,
    GLOBAL_SWITCHES,
    Parser,
    UsageError,
    _global_parent,
    _node_port,
    _positive_decimal,
    _positive_int,
    _whole_number,
    split_global_options,
)
from bulwark.cli.context import Context, _is_connection_error
from bulwark.cli.feeds import cmd_feed_replay, cmd_feed_set
from bulwark.cli.node import cmd_compile, cmd_deploy, cmd_node
from bulwark.cli.ops import cmd_demo, cmd_keeper, cmd_markets, cmd_status, cmd_stress
from bulwark.cli.render import revert_message
from bulwark.cli.trading import (
    cmd_account,
    cmd_trade_close,
    cmd_trade_deposit,
    cmd_trade_open,
    cmd_trade_withdraw,
)
from bulwark.cli.vaults import (
    cmd_fund_claim,
    cmd_fund_lapse,
    cmd_fund_stake,
    cmd_fund_status,
    cmd_fund_unstake,
    cmd_pool_deposit,
    cmd_pool_withdraw,
)
from bulwark.cli.web import DEFAULT_WEB_PORT, cmd_web
from bulwark.core import paths
from bulwark.devnet import compiler

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Context",
    "UsageError",
    "build_parser",
    "cmd_status",
    "iter_commands",
    "main",
    "parse_args",
    "split_global_options",
]


def build_parser() -> Parser:
    parent = _global_parent()
    parser = Parser(
        prog="bulwark",
        description="Bulwark: perpetual futures with an insurance fund. Amounts are human units "
        "(1000 = 1,000 USDC, 2.5 = 2.5 ETH).",
        parents=[parent],
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )

    def add(subs: Any, name: str, help_text: str, handler: Callable[[Context], int]) -> Parser:
        sub: Parser = subs.add_parser(
            name, help=help_text, description=help_text, parents=[parent], allow_abbrev=False
        )
        sub.set_defaults(handler=handler)
        return sub

    node = add(
        commands, "node", "run a local Anvil chain in the foreground (Ctrl-C stops it)", cmd_node
    )
    node.add_argument(
        "--port",
        type=_node_port,
        default=DEFAULT_NODE_PORT,
        help="port (default 8545; 0 picks a free one)",
    )
    node.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    node.add_argument(
        "--deploy", action="store_true", help="deploy Bulwark on it and write the deployment file"
    )
    node.add_argument(
        "--no-seed",
        action="store_true",
        help="with --deploy: leave the pool and the fund empty (by default dev accounts 8 and 9 "
        "seed them)",
    )
    node.add_argument(
        "--state", metavar="FILE", help="load the chain from FILE, save it there on exit"
    )
    node.add_argument(
        "--block-time",
        type=_positive_decimal,
        metavar="SECONDS",
        help="mine a block every SECONDS (default: one block per transaction)",
    )
    node.add_argument(
        "--web",
        nargs="?",
        const=DEFAULT_WEB_PORT,
        type=_node_port,
        metavar="PORT",
        help=f"also serve the trading page (default port {DEFAULT_WEB_PORT}; see `bulwark web`)",
    )

    comp = add(
        commands, "compile", "compile contracts/ into build/contracts and print sizes", cmd_compile
    )
    comp.add_argument("--force", action="store_true", help="recompile even if nothing changed")

    dep = add(commands, "deploy", "deploy every contract and write the deployment file", cmd_deploy)
    dep.add_argument(
        "--collateral",
        metavar="ADDRESS",
        help="use this ERC-20 as collateral instead of deploying a mock USDC",
    )
    dep.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="MARKET=ADDRESS",
        help="use this Chainlink feed for MARKET instead of a mock (repeatable)",
    )
    dep.add_argument(
        "--no-seed",
        action="store_true",
        help="on a local chain, leave the pool and the fund empty (by default dev accounts 8 and "
        "9 deposit 500,000 into the pool and stake 50,000 in the fund)",
    )
    dep.add_argument(
        "--adl-keeper",
        action="append",
        default=None,
        metavar="ADDRESS",
        help="grant ADDRESS the ADL keeper role, which autoDeleverage requires (repeatable; "
        "default on a local chain: dev account 3; the deployer always holds it)",
    )

    trade = add(
        commands, "trade", "deposit or withdraw margin, open or close positions", _needs_action
    )
    tsubs = trade.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    p = add(
        tsubs,
        "deposit",
        "move AMOUNT collateral from your wallet into your margin",
        cmd_trade_deposit,
    )
    p.add_argument("amount", metavar="AMOUNT", help="collateral, e.g. 1000")
    p = add(tsubs, "withdraw", "move AMOUNT of free margin back to your wallet", cmd_trade_withdraw)
    p.add_argument("amount", metavar="AMOUNT", help="collateral, or `max` for all free margin")
    p = add(
        tsubs,
        "open",
        "trade SIZE of MARKET at the oracle price: positive buys (long), negative sells (short)",
        cmd_trade_open,
    )
    p.add_argument("market", metavar="MARKET", help="e.g. ETH-USD")
    p.add_argument("size", metavar="SIZE", help="base units, e.g. 2.5 or -2.5")
    _add_price_bounds(p)
    p = add(
        tsubs, "close", "close your whole position in MARKET at the oracle price", cmd_trade_close
    )
    p.add_argument("market", metavar="MARKET")
    _add_price_bounds(p)

    acct = add(
        commands,
        "account",
        "margin, equity, liquidation prices, positions and ADL queue place of an account",
        cmd_account,
    )
    acct.add_argument("address", metavar="ADDRESS", nargs="?", help="default: the signer's account")
    acct.add_argument(
        "--history",
        action="store_true",
        help="what happened to the account, from the events: deposits, withdrawals, trades, "
        "liquidations (penalty, fund cover, bad debt) and ADL haircuts, with block, time and tx",
    )

    pool = add(
        commands,
        "pool",
        "provide liquidity: the pool takes the other side of every trade",
        _needs_action,
    )
    psubs = pool.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    p = add(
        psubs,
        "deposit",
        "deposit AMOUNT into the pool for LP shares (locked for the cooldown)",
        cmd_pool_deposit,
    )
    p.add_argument("amount", metavar="AMOUNT")
    p = add(psubs, "withdraw", "withdraw AMOUNT of collateral from the pool", cmd_pool_withdraw)
    p.add_argument("amount", metavar="AMOUNT", help="collateral, or `max`")

    fund = add(
        commands, "fund", "stake in the insurance fund, unstake, claim, status", _needs_action
    )
    fsubs = fund.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    p = add(fsubs, "stake", "stake AMOUNT of collateral for fund shares", cmd_fund_stake)
    p.add_argument("amount", metavar="AMOUNT")
    p = add(
        fsubs, "unstake", "request to unstake SHARES; claim after the cooldown", cmd_fund_unstake
    )
    p.add_argument("shares", metavar="SHARES", help="fund shares, or `all`")
    p = add(
        fsubs,
        "claim",
        "claim unstake request ID within its window after the cooldown",
        cmd_fund_claim,
    )
    p.add_argument("request_id", metavar="ID")
    p = add(
        fsubs,
        "lapse",
        "return the shares of request ID, past its claim window, to staked",
        cmd_fund_lapse,
    )
    p.add_argument("request_id", metavar="ID")
    p = add(
        fsubs,
        "status",
        "the fund's assets, window and cap, and a staker's shares and requests",
        cmd_fund_status,
    )
    p.add_argument("address", metavar="ADDRESS", nargs="?", help="default: the signer's account")

    feed = add(
        commands, "feed", "push prices to the mock feeds (local and test networks)", _needs_action
    )
    fdsubs = feed.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    p = add(fdsubs, "set", "publish PRICE for MARKET now", cmd_feed_set)
    p.add_argument("market", metavar="MARKET")
    p.add_argument("price", metavar="PRICE", help="quote per base unit, e.g. 2875.5")
    p = add(
        fdsubs,
        "replay",
        "replay a CSV of timestamp,market,price, advancing chain time",
        cmd_feed_replay,
    )
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument(
        "--speed",
        type=_positive_decimal,
        default=Decimal(1),
        help="divide the file's time spacing by X (default 1)",
    )
    p.add_argument(
        "--market-map",
        action="append",
        default=[],
        metavar="NAME=MARKET[,...]",
        help="rename markets of the file, e.g. BTC=BTC-USD (repeatable)",
    )
    p.add_argument(
        "--wall-clock",
        action="store_true",
        help="also wait the spacing in real time (always so on non-local chains)",
    )

    st = add(
        commands,
        "status",
        "markets, open interest, pool, fund, coverage, bad debt, "
        "liquidatable accounts and the conservation check",
        cmd_status,
    )
    del st
    add(
        commands,
        "markets",
        "each market's terms: fees, max leverage, margin ratios, funding, open-interest caps and "
        "the pool-exposure room left",
        cmd_markets,
    )

    kp = add(commands, "keeper", "run the keeper daemon (liquidations and ADL)", cmd_keeper)
    kp.add_argument("--once", action="store_true", help="one full pass, then exit")
    kp.add_argument("--config", metavar="FILE", help="settings file")
    kp.add_argument(
        "--metrics-port",
        type=_node_port,
        metavar="N",
        help="serve /metrics and /healthz on port N (0: off)",
    )
    kp.add_argument(
        "--log-format",
        choices=("plain", "json"),
        default=None,
        help="plain or json (default: the config file, then plain)",
    )

    sx = add(
        commands,
        "stress",
        "many accounts through a price path with the keeper running; writes a report",
        cmd_stress,
    )
    sx.add_argument(
        "scenario", metavar="SCENARIO", help="a scenario name or CSV file (see scenarios/)"
    )
    sx.add_argument(
        "--accounts",
        type=_positive_int,
        default=500,
        metavar="N",
        help="number of trader accounts (default 500)",
    )
    sx.add_argument("--out", metavar="DIR", help="report directory (default reports/<scenario>)")
    sx.add_argument("--speed", type=_positive_decimal, help="divide the path's time spacing by X")
    sx.add_argument("--seed", type=int, help="random seed (default: the same every run)")
    sx.add_argument(
        "--step",
        type=_whole_number,
        metavar="SECONDS",
        help="replay one price every SECONDS of the path (0: every row; default: the scenario's)",
    )
    sx.add_argument("--max-steps", type=_positive_int, metavar="N", help="stop after N price steps")
    sx.add_argument(
        "--fund-sweep",
        nargs="?",
        const="",
        metavar="PCTS",
        help="replay the crash from one snapshot for each fund size, in %% of open interest "
        "(default 0,0.25,0.5,1,2,4,8); see docs/stress.md",
    )
    sx.add_argument(
        "--window-caps", metavar="PCTS", help="with --fund-sweep: window caps in %% (default 50)"
    )
    sx.add_argument(
        "--haircut-bound",
        metavar="PCT",
        help="with --fund-sweep: haircuts to stay within, %% of open interest (default 0.1)",
    )
    sx.add_argument(
        "--refine",
        type=_whole_number,
        metavar="N",
        help="with --fund-sweep: N more replays per marker, bisecting towards it (default 0)",
    )
    sx.add_argument(
        "--adl-policy",
        choices=("queue", "prorata"),
        help="with --fund-sweep: the ADL policy the risk admin sets on every market before the "
        "snapshot (default: as deployed, the queue)",
    )
    sx.add_argument(
        "--compare-policies",
        action="store_true",
        help="with --fund-sweep: replay each point under the queue and under pro rata, "
        "side by side",
    )

    web = add(
        commands,
        "web",
        "serve the trading page for wallet users on 127.0.0.1 (Ctrl-C stops it)",
        cmd_web,
    )
    web.add_argument(
        "--port",
        type=_node_port,
        default=DEFAULT_WEB_PORT,
        help=f"port (default {DEFAULT_WEB_PORT}; 0 picks a free one)",
    )

    accts = add(
        commands,
        "accounts",
        "many funded test accounts: keys in a keystore folder, picked with --account-index",
        _needs_action,
    )
    asubs = accts.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    p = add(
        asubs,
        "create",
        "create N keys in the keystore folder and fund each with ETH and mock USDC (local chain)",
        cmd_accounts_create,
    )
    p.add_argument("count", metavar="N", type=_positive_int, help="how many keys")
    p.add_argument("--eth", default="10", metavar="AMOUNT", help="ETH for gas, each (default 10)")
    p.add_argument(
        "--usdc", default="100000", metavar="AMOUNT", help="mock USDC, each (default 100000)"
    )
    add(asubs, "list", "the keys of the keystore folder with their balances", cmd_accounts_list)
    p = add(asubs, "fund", "give ADDRESS ETH and mock USDC on a local chain", cmd_accounts_fund)
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--eth", default="10", metavar="AMOUNT", help="ETH to add (default 10)")
    p.add_argument(
        "--usdc", default="100000", metavar="AMOUNT", help="mock USDC to mint (default 100000)"
    )

    demo = add(commands, "demo", "the whole story on an embedded Anvil, start to finish", cmd_demo)
    demo.add_argument("--out", metavar="DIR", help="report directory (default reports/demo)")
    return parser


def _add_price_bounds(p: argparse.ArgumentParser) -> None:
    bounds = p.add_mutually_exclusive_group()
    bounds.add_argument(
        "--max-price", metavar="P", help="worst price a buy accepts (a long, or closing a short)"
    )
    bounds.add_argument(
        "--min-price", metavar="P", help="worst price a sell accepts (a short, or closing a long)"
    )
    p.add_argument(
        "--slippage",
        metavar="PCT",
        default=DEFAULT_SLIPPAGE,
        help="without a bound, accept the oracle price +/- PCT percent (default 1)",
    )


def _needs_action(ctx: Context) -> int:  # pragma: no cover - argparse requires the action
    raise UsageError("choose an action")


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found, rest = split_global_options(argv)
    if not rest and not found:
        raise UsageError("bulwark: choose a command (see `bulwark --help`)")
    args = build_parser().parse_args(rest)
    for key in GLOBAL_OPTIONS.values():
        setattr(args, key, found.get(key))
    for key in GLOBAL_SWITCHES.values():
        setattr(args, key, bool(found.get(key, False)))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ctx: Context | None = None
    try:
        try:
            args = parse_args(argv)
        except SystemExit as exc:  # --help, or argparse giving up
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        ctx = Context(args)
        handler: Callable[[Context], int] = args.handler
        return handler(ctx)
    except UsageError as exc:
        message = str(exc)
        _fail(message if message.startswith("bulwark") else f"bulwark: error: {message}")
        return EXIT_USAGE
    except TxReverted as exc:
        decimals = ctx._bw.deployment.collateral_decimals if ctx and ctx._bw else 6
        _fail(f"bulwark: error: {revert_message(exc, decimals)}")
        return EXIT_ERROR
    except (BulwarkError, compiler.CompileError, paths.ToolchainMissingError) as exc:
        _fail(f"bulwark: error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _fail("bulwark: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: one line, no traceback
        return _unexpected(exc, ctx)
    finally:
        if ctx is not None:
            ctx.close()


def _unexpected(exc: Exception, ctx: Context | None) -> int:
    if isinstance(exc, BrokenPipeError):  # the reader of our output went away (`| head`)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the interpreter's final flush
        return EXIT_ERROR
    url = ctx.rpc_url() if ctx else None
    if _is_connection_error(exc):
        _fail(f"bulwark: error: lost the node{' at ' + url if url else ''}: {type(exc).__name__}")
        return EXIT_ERROR
    if os.environ.get(ENV_DEBUG):
        traceback.print_exc()
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    _fail(
        f"bulwark: unexpected error: {type(exc).__name__}{': ' + message if message else ''} "
        f"(set {ENV_DEBUG}=1 for the traceback)"
    )
    return EXIT_ERROR


def _fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def iter_commands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> Iterator[str]:
    """Every command path (``trade open``, ``fund status`` ...): used by the docs test."""
    parser = parser or build_parser()
    for action in parser._actions:  # argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                if nested:
                    yield from iter_commands(sub, path)
                else:
                    yield path
