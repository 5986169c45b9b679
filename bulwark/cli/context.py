"""What a command runs against: node, deployment and signer resolution, and sending."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.types import TxReceipt

from bulwark.chain import contracts as chain
from bulwark.chain.contracts import LOCAL_CHAIN_IDS, Bulwark, BulwarkError, Deployment
from bulwark.chain.rpc import RpcFailure, node_unreachable, result_error, rpc_batch
from bulwark.cli.args import (
    ENV_DEPLOYMENT,
    ENV_KEYSTORE_PASSWORD,
    ENV_PRIVATE_KEY,
    ENV_RPC,
    UsageError,
)
from bulwark.cli.render import tokens
from bulwark.core import paths, units
from bulwark.devnet import compiler
from bulwark.keeper import status

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
            from bulwark.devnet.node import AnvilNode

            self.node = AnvilNode().start()
            self._w3 = chain.connect(self.node.rpc_url)
        else:
            raise BulwarkError(
                f"`bulwark {self.command}` needs a running node with a deployment: pass --rpc URL "
                f"or set {ENV_RPC} (an embedded Anvil would start empty, with nothing deployed; "
                "start a local chain with `bulwark node --deploy`)"
            )
        return self._w3

    def deployment_given(self) -> str | None:
        """The deployment file named by --deployment or BULWARK_DEPLOYMENT, if any."""
        return getattr(self.args, "deployment", None) or os.environ.get(ENV_DEPLOYMENT) or None

    def deployment_path(self, chain_id: int) -> Path:
        given = self.deployment_given()
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
            or getattr(a, "account_index", None) is not None
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
        index = getattr(self.args, "account_index", None)
        if sum(1 for given in (keystore, dev, index) if given is not None) > 1:
            raise UsageError(
                "bulwark: give one of --keystore, --dev-account and --account-index, not several"
            )
        if index is not None:
            from bulwark.cli.accounts import account_at

            self._signer = account_at(self, index)
        elif keystore:
            self._signer = chain.account_from_keystore(
                keystore, os.environ.get(ENV_KEYSTORE_PASSWORD)
            )
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
    codes = rpc_batch(bw.w3, [("eth_getCode", [a, "latest"]) for a in named.values()])
    for code in codes:
        if isinstance(code, RpcFailure):
            raise result_error(code)
    missing = [
        f"{n} at {a}"
        for (n, a), code in zip(named.items(), codes, strict=True)
        if not code or code == "0x"
    ]
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
    """Build artifacts, compiling first when the sources changed (a cached build costs ~1 ms); with
    no sources to compile (an installed package run outside a checkout), the ABIs it ships."""
    if not compiler.has_sources():
        return compiler.packaged_artifacts()
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


def send(bw: Bulwark, fn: Any, signer: LocalAccount, *, action: str) -> TxReceipt:
    """Send and wait (``bw.send``: the one sender, whose gas limit leaves room for what the
    estimate cannot see, a later block taking a costlier path)."""
    return bw.send(fn, signer, action=action)


def prepare_payment(bw: Bulwark, signer: LocalAccount, spender: str, amount: int) -> None:
    """Checks that the signer's wallet holds `amount` (one readable line when it does not), then
    approves `spender` for it unless its allowance already covers it."""
    balance = int(bw.call(bw.token.functions.balanceOf(signer.address)))
    if balance < amount:
        _, symbol = token_info(bw)
        raise BulwarkError(
            f"wallet {signer.address} holds {tokens(bw, balance)} {symbol}, less than the "
            f"{tokens(bw, amount)} asked for"
        )
    allowance = int(bw.call(bw.token.functions.allowance(signer.address, spender)))
    if allowance < amount:
        send(bw, bw.token.functions.approve(spender, amount), signer, action="approve")


def chain_now(bw: Bulwark) -> int:
    return status.latest_timestamp(bw)


_is_connection_error = node_unreachable  # the one test, in the transport
