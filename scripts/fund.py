"""Stake in the insurance fund, request to unstake, claim after the cooldown, see its status.

.venv/bin/python scripts/fund.py stake 50000 --dev-account 2
BULWARK_DEV_ACCOUNT=2 brownie run scripts/fund.py stake 50000 --network anvil-local
BULWARK_DEV_ACCOUNT=2 brownie run scripts/fund.py status --network anvil-local
BULWARK_DEV_ACCOUNT=2 brownie run scripts/fund.py unstake all --network anvil-local
"""

from __future__ import annotations

import sys

try:
    from scripts._bulwark import bulwark
except ImportError:  # run as a file: scripts/ itself is on sys.path
    from _bulwark import bulwark  # type: ignore[no-redef]


def stake(amount: str) -> int:
    """Stakes AMOUNT of collateral for fund shares."""
    return bulwark("fund", "stake", amount)


def unstake(shares: str) -> int:
    """Requests to unstake SHARES (or ``all``); claim after the cooldown."""
    return bulwark("fund", "unstake", shares)


def claim(request_id: str) -> int:
    """Claims unstake request ID after its cooldown."""
    return bulwark("fund", "claim", str(request_id))


def status(*address: str) -> int:
    """The fund's assets, payout window and cap, and the signer's (or ADDRESS's) shares."""
    return bulwark("fund", "status", *address)


def main(*args: str) -> int:
    """``bulwark fund ARGS...``; with no arguments, the fund's status."""
    return bulwark("fund", *args) if args else status()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
