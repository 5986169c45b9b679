"""Run a stress scenario and write its report.

.venv/bin/python scripts/stress.py cascade-2025-10-10 --accounts 200
brownie run scripts/stress.py main gap --network anvil-local
"""

from __future__ import annotations

import sys

try:
    from scripts._bulwark import bulwark
except ImportError:  # run as a file: scripts/ itself is on sys.path
    from _bulwark import bulwark  # type: ignore[no-redef]


def main(scenario: str = "gap", *args: str) -> int:
    """``bulwark stress SCENARIO ARGS...`` (``--accounts N``, ``--out DIR``, ``--speed X``, ...)."""
    return bulwark("stress", scenario, *args)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
