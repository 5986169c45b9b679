"""Deploy Bulwark and write the deployment file.

.venv/bin/python scripts/deploy.py --rpc http://127.0.0.1:8545
brownie run scripts/deploy.py --network anvil-local
"""

from __future__ import annotations

import sys

try:
    from scripts._bulwark import bulwark
except ImportError:  # run as a file: scripts/ itself is on sys.path
    from _bulwark import bulwark  # type: ignore[no-redef]


def main(*args: str) -> int:
    """``bulwark deploy ARGS...`` (e.g. ``--collateral ADDRESS``, ``--feed ETH-USD=ADDRESS``)."""
    return bulwark("deploy", *args)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
