"""``bulwark keeper`` (the command line's side of bulwark/keeper): settings from the file, the environment and the flags, then the daemon or
one pass (``--once``), and the one line and exit code for what went wrong."""

from __future__ import annotations

import json
import sys
from typing import Any

from eth_account.signers.local import LocalAccount

from bulwark.chain.contracts import Bulwark, BulwarkError, Deployment
from bulwark.chain.rpc import node_unreachable
from bulwark.core import paths
from bulwark.core.logs import setup_logging
from bulwark.keeper.config import BulwarkSettings, load_root
from bulwark.keeper.daemon import EXIT_CHAIN_RESET, EXIT_ERROR, EXIT_OK, Keeper
from bulwark.keeper.resilience import ChainReset


def settings_from_args(args: Any) -> BulwarkSettings:
    """The settings of ``bulwark keeper``: its ``--config`` file, ``BULWARK_*`` from the
    environment, then the flags (``--rpc``, ``--deployment``, ``--keystore``, ``--metrics-port``,
    ``--log-format``)."""
    return load_root(
        getattr(args, "config", None),
        None,  # the loader reads BULWARK_* from the environment
        {name: getattr(args, name, None) for name in ("rpc", "deployment", "keystore")},
        {
            "metrics_port": getattr(args, "metrics_port", None),
            "log_format": getattr(args, "log_format", None),
        },
    )


def run_from_cli(bw: Bulwark, signer: LocalAccount, args: Any) -> int:
    """``bulwark keeper [--once] [--config FILE] [--metrics-port N] [--log-format plain|json]``.

    The command line keeps the keeper's state (checkpoint, lock) in the user's state directory
    unless the settings say otherwise, and says where at startup."""
    try:
        root = getattr(args, "settings", None)
        settings = (root if isinstance(root, BulwarkSettings) else settings_from_args(args)).keeper
        if settings.state_dir is None:
            settings = settings.replace(state_dir=str(paths.keeper_state_dir()))
        setup_logging(settings.log_format, settings.log_level)
        keeper = Keeper(bw, signer, settings)
        keeper.tune_provider()
        if not getattr(args, "once", False):
            return keeper.run_forever()
        try:
            result = keeper.run_once()
        finally:
            keeper.shutdown()
        if getattr(args, "json", False):
            print(json.dumps(result.to_json()))
        else:
            print(" ".join(f"{k}={v}" for k, v in result.summary().items()))
        return EXIT_OK if not result.errors else EXIT_ERROR
    except ChainReset as exc:
        print(f"bulwark keeper: {exc}", file=sys.stderr)
        return EXIT_CHAIN_RESET
    except BulwarkError as exc:
        print(f"bulwark keeper: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if node_unreachable(exc):
            print(
                f"bulwark keeper: the node stopped answering ({type(exc).__name__})",
                file=sys.stderr,
            )
            return EXIT_ERROR
        raise


def refused_at_startup(ctx: Any, exc: BulwarkError) -> int:
    """The command line could not set the keeper up (``ctx`` is the CLI's context): one line on
    stderr and the keeper's exit code, 4 when the node answers but has no ClearingHouse at the
    deployment's address (the chain was reset), else 2."""
    address = path = None
    try:
        w3 = ctx.web3()
        path = ctx.deployment_path(int(w3.eth.chain_id))
        address = Deployment.load(path).contracts["ClearingHouse"]
        gone = len(w3.eth.get_code(address)) == 0
    except Exception:
        gone = False
    if gone:
        print(
            f"bulwark keeper: chain reset: no ClearingHouse at {address} on the node's chain "
            f"(deployment file {path}): deploy again or pass the right --deployment",
            file=sys.stderr,
        )
        return EXIT_CHAIN_RESET
    print(f"bulwark keeper: {exc}", file=sys.stderr)
    return EXIT_ERROR
