"""Trade on Bulwark: margin, positions, the account view.

.venv/bin/python scripts/trade.py deposit 1000 --dev-account 4
.venv/bin/python scripts/trade.py open ETH-USD -2.5 --dev-account 4
BULWARK_DEV_ACCOUNT=4 brownie run scripts/trade.py deposit 1000 --network anvil-local
BULWARK_DEV_ACCOUNT=4 brownie run scripts/trade.py short ETH-USD 2.5 --network anvil-local
"""

from __future__ import annotations

import sys

try:
    from scripts._bulwark import bulwark
except ImportError:  # run as a file: scripts/ itself is on sys.path
    from _bulwark import bulwark  # type: ignore[no-redef]


def deposit(amount: str) -> int:
    return bulwark("trade", "deposit", amount)


def withdraw(amount: str) -> int:
    return bulwark("trade", "withdraw", amount)


def long(market: str, size: str, *options: str) -> int:
    """Buys SIZE of MARKET (options such as ``--max-price P`` pass through)."""
    return bulwark("trade", "open", market, size.lstrip("+"), *options)


def short(market: str, size: str, *options: str) -> int:
    """Sells SIZE of MARKET (a positive number; Brownie takes ``-2.5`` for an option)."""
    return bulwark("trade", "open", market, "-" + size.lstrip("+-"), *options)


def close(market: str) -> int:
    return bulwark("trade", "close", market)


def account(*address: str) -> int:
    return bulwark("account", *address)


def main(*args: str) -> int:
    """``bulwark trade ARGS...``; with no arguments, the signer's account."""
    return bulwark("trade", *args) if args else account()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
