"""Provide liquidity: deposit into the pool that takes the other side of every trade, withdraw.

.venv/bin/python scripts/pool.py deposit 100000 --dev-account 1
BULWARK_DEV_ACCOUNT=1 brownie run scripts/pool.py deposit 100000 --network anvil-local
BULWARK_DEV_ACCOUNT=1 brownie run scripts/pool.py withdraw max --network anvil-local
"""

from __future__ import annotations

import sys

try:
    from scripts._bulwark import bulwark
except ImportError:  # run as a file: scripts/ itself is on sys.path
    from _bulwark import bulwark  # type: ignore[no-redef]


def deposit(amount: str) -> int:
    """Deposits AMOUNT of collateral for LP shares (locked for the pool's cooldown)."""
    return bulwark("pool", "deposit", amount)


def withdraw(amount: str) -> int:
    """Withdraws AMOUNT of collateral (or ``max``) once the shares are unlocked."""
    return bulwark("pool", "withdraw", amount)


def main(*args: str) -> int:
    """``bulwark pool ARGS...``; with no arguments, the protocol's status (pool equity included)."""
    return bulwark("pool", *args) if args else bulwark("status")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
