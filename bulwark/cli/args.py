"""Global options taken out before argparse, the argument parser class and argparse types."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from decimal import Decimal, DecimalException
from typing import Any, NoReturn

from bulwark.chain.contracts import BulwarkError
from bulwark.core import units

ENV_RPC = "BULWARK_RPC"


ENV_DEPLOYMENT = "BULWARK_DEPLOYMENT"


ENV_PRIVATE_KEY = "BULWARK_PRIVATE_KEY"


ENV_DEBUG = "BULWARK_DEBUG"


ENV_KEYSTORE_DIR = "BULWARK_KEYSTORE_DIR"
ENV_KEYSTORE_PASSWORD = "BULWARK_KEYSTORE_PASSWORD"


DEFAULT_KEYSTORE_DIR = "keys"  # in the project, made by `bulwark accounts create`


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
    "--account-index": "account_index",
    "--keystore-dir": "keystore_dir",
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
        "--account-index",
        metavar="I",
        default=argparse.SUPPRESS,
        help="sign with key I of the keystore folder `bulwark accounts create` wrote",
    )
    group.add_argument(
        "--keystore-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"that folder (default: ${ENV_KEYSTORE_DIR}, else {DEFAULT_KEYSTORE_DIR}/ in the "
        "project)",
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
