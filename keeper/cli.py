"""The ``bulwark`` command line.

Global options (``--rpc``, ``--deployment``, ``--keystore``, ``--dev-account``, ``--json``) may
stand before or after the subcommand: they are taken out of the arguments before argparse sees
the rest. Amounts are human units parsed exactly (keeper.units). Every mistake ends in one line on
stderr and a non-zero exit code; a traceback appears only for an unexpected failure, and only
with ``BULWARK_DEBUG=1``. See docs/cli.md for every command with an example.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException
from pathlib import Path
from typing import Any, NoReturn

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from keeper import chain, compiler, paths, status, units
from keeper.chain import (
    LOCAL_CHAIN_IDS,
    WAD,
    Bulwark,
    BulwarkError,
    DecodedError,
    Deployment,
    TxReverted,
)

ENV_RPC = "BULWARK_RPC"
ENV_DEPLOYMENT = "BULWARK_DEPLOYMENT"
ENV_PRIVATE_KEY = "BULWARK_PRIVATE_KEY"
ENV_DEBUG = "BULWARK_DEBUG"
DEFAULT_NODE_PORT = 8545
DEFAULT_SLIPPAGE = "1"  # percent
MAX_UINT = 2**256 - 1

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Options that belong to every command, with the attribute they fill.
GLOBAL_OPTIONS = {
    "--rpc": "rpc",
    "--deployment": "deployment",
    "--keystore": "keystore",
    "--dev-account": "dev_account",
}
GLOBAL_SWITCHES = {"--json": "json"}
_NEGATIVE_NUMBER = re.compile(r"-(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?")


class UsageError(BulwarkError):
    """The command line itself is wrong (exit code 2)."""


# ---------------------------------------------------------------------------- argument parsing


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def split_global_options(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Takes the global options out of `argv`, wherever they stand.

    Also rewrites negative numbers into a form argparse takes as a value (``-1e3`` -> ``-1000``),
    so ``bulwark trade open ETH-USD -2.5`` needs no ``--``.
    """
    found: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = token.partition("=")
        if name in GLOBAL_OPTIONS:
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise UsageError(f"bulwark: {name} needs a value")
                value = argv[i + 1]
                i += 1
            found[GLOBAL_OPTIONS[name]] = value
        elif token in GLOBAL_SWITCHES:
            found[GLOBAL_SWITCHES[token]] = True
        elif _NEGATIVE_NUMBER.fullmatch(token):
            rest.append(_plain_negative(token))
        else:
            rest.append(token)
        i += 1
    return found, rest


def _plain_negative(token: str) -> str:
    """``-1e3`` as ``-1000``, which argparse takes for a value; an exponent so large that the
    digits would not fit on a screen is refused here (no amount, size or price comes near it)."""
    try:
        value = Decimal(token.replace("_", ""))
    except DecimalException:
        value = Decimal("-Infinity")
    if not value.is_finite() or abs(value.adjusted()) > 100:
        shown = token if len(token) <= 40 else f"{token[:37]}..."
        raise UsageError(f"bulwark: the number {shown} is out of range")
    return format(value, "f")


def _global_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--rpc",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"JSON-RPC endpoint (default: ${ENV_RPC})",
    )
    group.add_argument(
        "--deployment",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"deployment file (default: ${ENV_DEPLOYMENT}, else "
        "deployments/<chainId>.json in the project)",
    )
    group.add_argument(
        "--keystore",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="sign with this keystore (password from $BULWARK_KEYSTORE_PASSWORD)",
    )
    group.add_argument(
        "--dev-account",
        metavar="N",
        default=argparse.SUPPRESS,
        help=f"sign as Anvil dev account N on a local chain (else ${ENV_PRIVATE_KEY})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the result as JSON on stdout",
    )
    return parent


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _node_port(text: str) -> int:
    return 0 if text.strip() == "0" else _port(text)


def _positive_decimal(text: str) -> Decimal:
    try:
        value = units.parse_decimal(text, "value")
    except units.UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


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
        "--state", metavar="FILE", help="load the chain from FILE, save it there on exit"
    )
    node.add_argument(
        "--block-time",
        type=_positive_decimal,
        metavar="SECONDS",
        help="mine a block every SECONDS (default: one block per transaction)",
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
    p = add(fsubs, "claim", "claim unstake request ID after its cooldown", cmd_fund_claim)
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

    kp = add(commands, "keeper", "run the keeper daemon (liquidations and ADL)", cmd_keeper)
    kp.add_argument("--once", action="store_true", help="one full pass, then exit")
    kp.add_argument("--config", metavar="FILE", help="settings file")
    kp.add_argument(
        "--metrics-port", type=_port, metavar="N", help="serve Prometheus metrics on port N"
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


# ---------------------------------------------------------------------------- context


@dataclass
class Context:
    """What a command needs: the parsed arguments, a node, the deployment, a signer, an output."""

    args: argparse.Namespace
    out: Any = field(default_factory=lambda: sys.stdout)
    err: Any = field(default_factory=lambda: sys.stderr)
    node: Any = None  # an embedded AnvilNode, stopped by close()
    _w3: Web3 | None = None
    _bw: Bulwark | None = None
    _signer: LocalAccount | None = None

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def command(self) -> str:
        action = getattr(self.args, "action", None)
        return f"{self.args.command} {action}" if action else str(self.args.command)

    # -- output

    def note(self, message: str) -> None:
        print(message, file=self.err, flush=True)

    def report(self, data: dict[str, Any], lines: Sequence[str]) -> None:
        if self.json:
            print(json.dumps(data, indent=2, default=str), file=self.out, flush=True)
        else:
            for line in lines:
                print(line, file=self.out)
            self.out.flush()

    # -- node and deployment

    def rpc_url(self) -> str | None:
        return getattr(self.args, "rpc", None) or os.environ.get(ENV_RPC) or None

    def web3(self, *, embedded: bool = False) -> Web3:
        if self._w3 is not None:
            return self._w3
        url = self.rpc_url()
        if url:
            self._w3 = chain.connect(url)
        elif embedded:
            from keeper.node import AnvilNode

            self.node = AnvilNode().start()
            self._w3 = chain.connect(self.node.rpc_url)
        else:
            raise BulwarkError(
                f"`bulwark {self.command}` needs a running node with a deployment: pass --rpc URL "
                f"or set {ENV_RPC} (an embedded Anvil would start empty, with nothing deployed; "
                "start a local chain with `bulwark node --deploy`)"
            )
        return self._w3

    def deployment_path(self, chain_id: int) -> Path:
        given = getattr(self.args, "deployment", None) or os.environ.get(ENV_DEPLOYMENT)
        return Path(given) if given else Deployment.default_path(chain_id)

    def bulwark(self) -> Bulwark:
        if self._bw is not None:
            return self._bw
        w3 = self.web3()
        chain_id = w3.eth.chain_id
        path = self.deployment_path(chain_id)
        deployment = load_deployment(path)
        if deployment.chain_id != chain_id:
            raise BulwarkError(
                f"deployment file {path} is for chain {deployment.chain_id}, but the node at "
                f"{self.rpc_url()} is chain {chain_id}"
            )
        bw = Bulwark(w3, deployment, load_artifacts())
        status.require_code(bw)
        check_code(bw, path)
        check_collateral(bw, path)
        self._bw = bw
        return bw

    def is_local(self) -> bool:
        return self.web3().eth.chain_id in LOCAL_CHAIN_IDS

    # -- signer

    def has_signer(self) -> bool:
        a = self.args
        return bool(
            getattr(a, "keystore", None)
            or getattr(a, "dev_account", None) is not None
            or os.environ.get(ENV_PRIVATE_KEY)
        )

    def signer(self, *, default_dev: int | None = None) -> LocalAccount:
        """The signer from --keystore, --dev-account or BULWARK_PRIVATE_KEY, in that order.

        ``default_dev`` is used on a local chain when none is given (operator commands: the
        deployer, dev account 0, holds every role there).
        """
        if self._signer is not None:
            return self._signer
        keystore = getattr(self.args, "keystore", None)
        dev = getattr(self.args, "dev_account", None)
        if keystore and dev is not None:
            raise UsageError("bulwark: give either --keystore or --dev-account, not both")
        if keystore:
            self._signer = chain.account_from_keystore(keystore)
        elif dev is not None:
            self._signer = chain.dev_account(self._dev_index(dev))
        elif os.environ.get(ENV_PRIVATE_KEY):
            self._signer = chain.account_from_key(os.environ[ENV_PRIVATE_KEY])
        elif default_dev is not None and self.is_local():
            self._signer = chain.dev_account(default_dev)
        else:
            raise BulwarkError(
                f"`bulwark {self.command}` needs a signer: --keystore FILE (password in "
                f"$BULWARK_KEYSTORE_PASSWORD), ${ENV_PRIVATE_KEY}, or --dev-account N on a local "
                "chain"
            )
        return self._signer

    def _dev_index(self, text: str) -> int:
        try:
            if not text.isascii():
                raise ValueError
            index = int(text)
        except ValueError:
            raise UsageError(
                f"bulwark: --dev-account must be a whole number, got {text!r}"
            ) from None
        if not self.is_local():
            raise BulwarkError(
                f"--dev-account works only on a local chain (31337 or 1337), not chain "
                f"{self.web3().eth.chain_id}: use --keystore or {ENV_PRIVATE_KEY}"
            )
        return index

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None


def load_deployment(path: Path) -> Deployment:
    """The deployment file; numbers JSON allows but no field can hold (``1e400`` reads as infinity)
    and nesting too deep to parse are malformed too."""
    try:
        return Deployment.load(path)
    except (OverflowError, RecursionError) as exc:
        raise BulwarkError(
            f"deployment file {path} is malformed: {type(exc).__name__} {exc}"
        ) from None


def check_code(bw: Bulwark, path: Path) -> None:
    """Every contract and feed the deployment file names has code on this chain (one batch)."""
    d = bw.deployment
    named = {**d.contracts, **{f"feed {n}": m.feed for n, m in d.markets.items()}}
    with bw.w3.batch_requests() as batch:
        for address in named.values():
            batch.add(bw.w3.eth.get_code(to_checksum_address(address)))
        codes = batch.execute()
    missing = [f"{n} at {a}" for (n, a), code in zip(named.items(), codes, strict=True) if not code]
    if missing:
        raise BulwarkError(
            f"deployment file {path}: no contract code for {', '.join(missing)} on this chain"
        )


def check_collateral(bw: Bulwark, path: Path) -> None:
    """Every amount is scaled by the deployment's collateral decimals: they must be the token's."""
    token = bw.token.address
    try:
        decimals = int(bw.token.functions.decimals().call())
    except Exception as exc:
        if _is_connection_error(exc):
            raise
        raise BulwarkError(
            f"deployment file {path}: Collateral {token} does not answer decimals() like an ERC-20"
        ) from None
    if decimals != bw.deployment.collateral_decimals:
        raise BulwarkError(
            f"deployment file {path} says the collateral has {bw.deployment.collateral_decimals} "
            f"decimals, but the token at {token} has {decimals}"
        )


def load_artifacts() -> dict[str, Any]:
    """Build artifacts, compiling first when the sources changed (a cached build costs ~1 ms)."""
    try:
        return compiler.compile_contracts()
    except compiler.CompileError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "compile failed"
        raise BulwarkError(
            f"the contracts do not compile: {first} (run `bulwark compile`)"
        ) from None
    except paths.ToolchainMissingError as exc:
        raise BulwarkError(str(exc)) from None


# ---------------------------------------------------------------------------- shared helpers


def token_info(bw: Bulwark) -> tuple[int, str]:
    decimals = bw.deployment.collateral_decimals
    try:
        symbol = str(bw.call(bw.token.functions.symbol()))
    except Exception:
        symbol = "USDC"
    return decimals, symbol


def parse_amount(bw: Bulwark, text: str, what: str = "AMOUNT") -> int:
    decimals, symbol = token_info(bw)
    return units.parse_units(text, decimals, what, unit=symbol)


def market_name(bw: Bulwark, market_id: int) -> str:
    return next(n for n, m in bw.deployment.markets.items() if m.id == market_id)


def parse_address(text: str, what: str = "ADDRESS") -> str:
    if not is_address(text):
        raise UsageError(f"{what} {text!r} is not an Ethereum address")
    return to_checksum_address(text)


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


def send(bw: Bulwark, fn: Any, signer: LocalAccount, *, action: str) -> TxReceipt:
    """``bw.send`` with room for what the estimate cannot see: the transaction lands in a later
    block, and a new second can take the contract down a costlier path (funding accrual writes
    storage). Unused gas is not charged."""
    try:
        estimate = int(fn.estimate_gas({"from": signer.address}))
    except Exception:  # a revert: bw.send simulates again and decodes it
        return bw.send(fn, signer, action=action)
    return bw.send(fn, signer, action=action, gas=estimate * 3 // 2 + 100_000)


def ensure_allowance(bw: Bulwark, signer: LocalAccount, spender: str, amount: int) -> None:
    allowance = int(bw.call(bw.token.functions.allowance(signer.address, spender)))
    if allowance < amount:
        send(bw, bw.token.functions.approve(spender, amount), signer, action="approve")


def require_wallet_balance(bw: Bulwark, signer: LocalAccount, amount: int) -> None:
    balance = int(bw.call(bw.token.functions.balanceOf(signer.address)))
    if balance < amount:
        _, symbol = token_info(bw)
        raise BulwarkError(
            f"wallet {signer.address} holds {tokens(bw, balance)} {symbol}, less than the "
            f"{tokens(bw, amount)} asked for"
        )


def chain_now(bw: Bulwark) -> int:
    return status.latest_timestamp(bw)


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


# ---------------------------------------------------------------------------- node, compile, deploy


def cmd_node(ctx: Context) -> int:
    from keeper.deploy import deploy_all
    from keeper.node import AnvilError, AnvilNode

    a = ctx.args
    block_time = float(a.block_time) if a.block_time is not None else None
    node = AnvilNode(port=a.port, host=a.host, state_file=a.state, block_time=block_time)
    try:
        node.start()
    except AnvilError as exc:
        raise BulwarkError(
            f"could not start Anvil on {a.host}:{a.port}: {_anvil_reason(exc)}"
        ) from None
    ctx.node = node
    w3 = chain.connect(node.rpc_url)
    info: dict[str, Any] = {
        "rpc_url": node.rpc_url,
        "chain_id": w3.eth.chain_id,
        "pid": node.pid,
        "deployment": None,
    }
    if a.deploy:
        deployment = deploy_all(w3, chain.dev_account(0))
        path = deployment.save(ctx.deployment_path(deployment.chain_id))
        info["deployment"] = str(path)
        info["contracts"] = deployment.contracts
    lines = [
        f"Anvil is listening on {node.rpc_url} (chain id {info['chain_id']}, pid {node.pid})",
        f"  export {ENV_RPC}={node.rpc_url}",
    ]
    if info["deployment"]:
        lines.append(f"  Bulwark deployed; deployment file {info['deployment']}")
        lines.append(
            f"  mock USDC {info['contracts']['Collateral']}: 1,000,000 to each dev account"
        )
    lines.append("  dev accounts (Anvil's well-known test keys; never use them on a real network):")
    for i in range(10):
        acct = chain.dev_account(i)
        lines.append(f"    {i}  {acct.address}  0x{bytes(acct.key).hex()}")
    lines.append("Ctrl-C stops the node.")
    ctx.report(info, lines)
    _stop_on_sigterm()
    try:
        code = node.wait()
    except KeyboardInterrupt:
        node.stop()
        ctx.node = None
        ctx.note("node stopped")
        return EXIT_OK
    ctx.node = None
    raise BulwarkError(f"Anvil exited by itself with code {code}")


def _anvil_reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "rror" in ln or "in use" in ln:
            return ln
    return lines[-1] if lines else type(exc).__name__


def _stop_on_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    # A shell starts background jobs with SIGINT ignored, and Python then leaves it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_compile(ctx: Context) -> int:
    try:
        artifacts = compiler.compile_contracts(force=ctx.args.force)
    except compiler.CompileError as exc:
        raise BulwarkError(f"compilation failed:\n{exc}") from None
    sizes = {name: compiler.deployed_size(a) for name, a in sorted(artifacts.items())}
    over = [n for n, s in sizes.items() if s > compiler.CODE_SIZE_LIMIT]
    rows = [
        [n, f"{s:,}", f"{compiler.CODE_SIZE_LIMIT - s:,}", "OVER THE LIMIT" if n in over else ""]
        for n, s in sizes.items()
        if s > 0
    ]
    lines = table(["CONTRACT", "BYTES", "TO SPARE", ""], rows)
    lines.append(
        f"{len(artifacts)} artifacts in {paths.build_dir()} "
        f"(limit {compiler.CODE_SIZE_LIMIT:,} bytes)"
    )
    ctx.report(
        {
            "build_dir": str(paths.build_dir()),
            "limit": compiler.CODE_SIZE_LIMIT,
            "sizes": sizes,
            "over_limit": over,
        },
        lines,
    )
    if over:
        raise BulwarkError(
            f"over the {compiler.CODE_SIZE_LIMIT:,}-byte code limit: {', '.join(over)}"
        )
    return EXIT_OK


def cmd_deploy(ctx: Context) -> int:
    from keeper.deploy import deploy_all

    a = ctx.args
    feeds: dict[str, str] = {}
    for item in a.feed:
        name, eq, address = item.partition("=")
        if not eq:
            raise UsageError(f"bulwark deploy: --feed wants MARKET=ADDRESS, got {item!r}")
        feeds[name.strip().upper()] = parse_address(address.strip(), f"--feed {name}")
    collateral = parse_address(a.collateral, "--collateral") if a.collateral else None
    embedded = ctx.rpc_url() is None
    w3 = ctx.web3(embedded=True)
    signer = ctx.signer(default_dev=0)
    load_artifacts()
    deployment = deploy_all(w3, signer, collateral=collateral, feeds=feeds or None)
    data: dict[str, Any] = {
        "chain_id": deployment.chain_id,
        "deploy_block": deployment.deploy_block,
        "contracts": deployment.contracts,
        "deployer": signer.address,
        "markets": {n: {"id": m.id, "feed": m.feed} for n, m in deployment.markets.items()},
        "deployment_file": None,
        "embedded": embedded,
    }
    lines = [f"Bulwark deployed on chain {deployment.chain_id} by {signer.address}"]
    lines += table(["CONTRACT", "ADDRESS"], [[k, v] for k, v in deployment.contracts.items()])
    lines += table(
        ["MARKET", "ID", "FEED"], [[n, str(m.id), m.feed] for n, m in deployment.markets.items()]
    )
    if embedded:
        lines.append(
            "This was an embedded Anvil, gone when this command ends: no deployment file was "
            "written. For a chain that stays: `bulwark node --deploy`, or "
            "`bulwark node` then `bulwark deploy --rpc URL`."
        )
    else:
        path = deployment.save(ctx.deployment_path(deployment.chain_id))
        data["deployment_file"] = str(path)
        lines.append(f"deployment file: {path}")
        if deployment.local and collateral is None:
            lines.append("each of Anvil's 10 dev accounts holds 1,000,000 mock USDC")
    ctx.report(data, lines)
    return EXIT_OK


# ---------------------------------------------------------------------------- trading


def cmd_trade_deposit(ctx: Context) -> int:
    bw = ctx.bulwark()
    amount = parse_amount(bw, ctx.args.amount)
    signer = ctx.signer()
    require_wallet_balance(bw, signer, amount)
    ensure_allowance(bw, signer, bw.ch.address, amount)
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
        return units.parse_wad(args.max_price, "--max-price")
    if args.min_price is not None:
        if buy:
            raise UsageError(
                "--min-price bounds a sell (a short, or closing a long); this trade buys: "
                "use --max-price"
            )
        return units.parse_wad(args.min_price, "--min-price")
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
    limit = _acceptable_price(price, size > 0, ctx.args)
    fn = bw.ch.functions.trade(market_id, size, limit)
    receipt = send(bw, fn, signer, action=f"trade {name}")
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
    side = "bought" if size > 0 else "sold"
    lines = [
        f"{verb}: {side} {wad(abs(size), None)} {name} at {wad(f['priceWad'])} "
        f"(bound {wad(limit)}); fee {wad(f['feeWad'])}",
        f"  position now {wad(f['newSizeWad'], None)}; "
        f"realized PnL {wad(f['realizedPnlWad'], sign=True)}, "
        f"funding paid {wad(f['fundingPaidWad'], sign=True)}",
    ]
    ctx.report(data, lines)
    return EXIT_OK


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
    view = status.account(bw, address)
    _, symbol = token_info(bw)
    ctx.report(account_json(bw, view), account_lines(bw, view, symbol))
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
                "adl": {
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
        adl = (
            f"{lights(p.adl.lights)} rank {p.adl.rank} of {p.adl.queue_length}"
            if p.adl.rank is not None
            else f"{lights(0)} not in queue"
        )
        rows.append(
            [
                p.market,
                p.side,
                wad(abs(p.size), None),
                wad(p.entry_price),
                wad(p.price),
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
    return lines


# ---------------------------------------------------------------------------- pool


def cmd_pool_deposit(ctx: Context) -> int:
    bw = ctx.bulwark()
    amount = parse_amount(bw, ctx.args.amount)
    signer = ctx.signer()
    require_wallet_balance(bw, signer, amount)
    ensure_allowance(bw, signer, bw.pool.address, amount)
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
    most = int(bw.call(p.maxWithdraw(signer.address)))
    if ctx.args.amount.strip().lower() == "max":
        amount = most
        if amount == 0:
            raise BulwarkError(f"{signer.address} has nothing to withdraw from the pool")
    else:
        amount = parse_amount(bw, ctx.args.amount)
        if amount > most:
            raise BulwarkError(
                f"{signer.address} can withdraw at most {tokens(bw, most)} from the pool"
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
    balance, locked_until = int(bw.call(p.balanceOf(address))), int(bw.call(p.lockedUntil(address)))
    value = int(bw.call(p.convertToAssets(balance)))
    _, symbol = token_info(bw)
    now = chain_now(bw)
    data = {
        "account": address,
        verb: tokens_exact(bw, amount),
        "shares": units.format_units(shares, decimals),
        "shares_held": units.format_units(balance, decimals),
        "value": tokens_exact(bw, value),
        "locked_until": locked_until,
        **tx_info(receipt),
    }
    lines = [
        f"{verb} {tokens(bw, amount)} {symbol} ({units.format_units(shares, decimals)} "
        f"LP shares); you hold {units.format_units(balance, decimals)} shares "
        f"worth {tokens(bw, value)} {symbol}"
    ]
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
    require_wallet_balance(bw, signer, amount)
    ensure_allowance(bw, signer, bw.fund.address, amount)
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
            f"staked {tokens(bw, amount)} {symbol} for {units.format_units(shares, decimals)} "
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
            **tx_info(receipt),
        },
        [
            f"unstake request #{req['requestId']}: {units.format_units(shares, decimals)} "
            f"shares worth {tokens(bw, int(req['assets']))} {symbol} now",
            f"  claim from {when(int(req['readyAt']), now)}: "
            f"`bulwark fund claim {req['requestId']}`; it pays the lower of that value and the "
            "value then",
        ],
    )
    return EXIT_OK


def cmd_fund_claim(ctx: Context) -> int:
    bw = ctx.bulwark()
    text = ctx.args.request_id.strip()
    try:
        if not (text.isascii() and text.isdigit()):
            raise ValueError
        request_id = int(text)
        if request_id > MAX_UINT:
            raise ValueError
    except ValueError:
        raise UsageError(
            f"bulwark fund claim: ID must be a request number, got {ctx.args.request_id!r}"
        ) from None
    signer = ctx.signer()
    owner, ready_at, _shares, _assets = bw.call(bw.fund.functions.unstakeRequest(request_id))
    if int(str(owner), 16) == 0:
        raise BulwarkError(
            f"no open unstake request #{request_id} (never made, or already claimed)"
        )
    now = chain_now(bw)
    if ready_at > now:
        raise BulwarkError(
            f"request #{request_id} is in its cooldown until {when(int(ready_at), now)}"
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
        "window_ends_at": v.window_ends_at,
        "window_cap_ratio": wad_exact(v.window_cap_ratio),
        "cap": tokens_exact(bw, v.cap_tokens),
        "cooldown_seconds": v.cooldown,
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
        f"  unstaking cooldown {duration(v.cooldown)}; "
        f"shares {units.format_units(v.total_shares, sd)}",
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
                    "ready": r.ready_at <= now,
                }
                for r in v.requests
            ],
        }
        lines.append(
            f"  {holder}: {units.format_units(v.holder_shares, sd)} shares worth "
            f"{tokens(bw, v.holder_value_tokens)} {symbol}"
        )
        for r in v.requests:
            ready = "claimable now" if r.ready_at <= now else f"claimable {when(r.ready_at, now)}"
            lines.append(
                f"    request #{r.request_id}: {tokens(bw, r.claimable)} {symbol} ({ready})"
            )
    ctx.report(data, lines)
    return EXIT_OK


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
    answer = units.parse_units(ctx.args.price, decimals, "PRICE")
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


class Progress:
    """One line rewritten in place on a terminal; a line per tenth otherwise."""

    def __init__(self, stream: Any, total: int, label: str) -> None:
        self.stream, self.total, self.label = stream, total, label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._tenth = -1

    def update(self, done: int, detail: str) -> None:
        if self.tty:
            width = 30
            filled = width * done // self.total
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {detail}\x1b[K")
            self.stream.flush()
            return
        tenth = 10 * done // self.total
        if tenth != self._tenth:
            self._tenth = tenth
            print(f"{self.label} {done}/{self.total} {detail}", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


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
    progress = Progress(ctx.err, len(rows), "replay")
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
        progress.finish()
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
    bw = ctx.bulwark()
    signer = ctx.signer(default_dev=0)
    run_from_cli = _import_entry("keeper.daemon", "the keeper daemon")
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


def _import_entry(module: str, what: str) -> Callable[..., Any]:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BulwarkError(f"{what} ({module}) is not part of this installation") from None
        raise
    entry: Callable[..., Any] = mod.run_from_cli
    return entry


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


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.ConnectionError, requests.Timeout, ConnectionError)):
            return True
        current = current.__cause__ or current.__context__
    return False


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


if __name__ == "__main__":
    sys.exit(main())
