"""Shared by the scripts: run one ``bulwark`` command, here or through the project's CLI.

With the project's interpreter (``.venv/bin/python scripts/deploy.py``) the command runs in this
process through ``bulwark.cli.main``. Under Brownie, which lives in its own virtualenv with web3 7,
the bulwark package (web3 8) cannot be imported, so the command runs through the project's
``.venv/bin/bulwark``, pointed at the node Brownie is connected to.

A signer for Brownie runs comes from the environment: ``BULWARK_PRIVATE_KEY``,
``BULWARK_DEV_ACCOUNT=N`` for Anvil dev account N on a local chain, or ``BULWARK_ACCOUNT_INDEX=I``
for key I of the keystore folder ``bulwark accounts create`` wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def brownie_rpc() -> str | None:
    """The endpoint of the network Brownie is connected to, if this runs under Brownie."""
    brownie = sys.modules.get("brownie")
    if brownie is None:
        return None
    try:
        if brownie.network.is_connected():
            return str(brownie.web3.provider.endpoint_uri)
    except AttributeError:
        return None
    return None


def _keeper_cli() -> ModuleType | None:
    try:
        import web3

        if int(web3.__version__.split(".")[0]) < 8:
            return None
        from bulwark import cli
    except ImportError:
        return None
    return cli


def _with_context(argv: list[str]) -> list[str]:
    rpc = brownie_rpc()
    if rpc and not any(a == "--rpc" or a.startswith("--rpc=") for a in argv):
        argv = [*argv, "--rpc", rpc]
    signer_given = any(
        a.startswith(("--dev-account", "--keystore", "--account-index")) for a in argv
    )
    dev = os.environ.get("BULWARK_DEV_ACCOUNT")
    index = os.environ.get("BULWARK_ACCOUNT_INDEX")
    if index and not signer_given:
        argv = [*argv, "--account-index", index]
    elif dev and not signer_given:
        argv = [*argv, "--dev-account", dev]
    return argv


def bulwark(*args: object) -> int:
    """Runs ``bulwark ARGS...``; returns its exit code, or ends a Brownie run that failed."""
    argv = _with_context([str(a) for a in args])
    cli = _keeper_cli()
    if cli is not None:
        code = int(cli.main(argv))
    else:
        local = ROOT / ".venv" / "bin" / "bulwark"
        command = str(local) if local.exists() else shutil.which("bulwark")
        if command is None:
            print(f"bulwark is not installed: run `make` in {ROOT}", file=sys.stderr)
            code = 1
        else:
            code = subprocess.run([command, *argv], cwd=ROOT, check=False).returncode
    if code and "brownie" in sys.modules:
        raise SystemExit(code)  # not an Exception: Brownie exits with it instead of a traceback
    return code
