"""Push prices to the mock feeds of a local or test network.

.venv/bin/python scripts/feed.py set ETH-USD 2875.5
.venv/bin/python scripts/feed.py replay scenarios/gap.csv --speed 60
brownie run scripts/feed.py set ETH-USD 2875.5 --network anvil-local
"""

from __future__ import annotations

import sys

try:
    from scripts._bulwark import bulwark
except ImportError:  # run as a file: scripts/ itself is on sys.path
    from _bulwark import bulwark  # type: ignore[no-redef]


def set(market: str, price: str) -> int:  # the command's own name, shadowing the builtin
    return bulwark("feed", "set", market, price)


def replay(path: str, speed: str = "1", *options: str) -> int:
    return bulwark("feed", "replay", path, "--speed", speed, *options)


def main(*args: str) -> int:
    """``bulwark feed ARGS...``; with no arguments, the protocol's status."""
    return bulwark("feed", *args) if args else bulwark("status")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
