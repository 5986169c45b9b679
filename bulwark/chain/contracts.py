"""Talking to a Bulwark deployment: bindings from the ABIs, signers, error decoding; transactions
go through the one sender (:mod:`bulwark.chain.sender`).

Every revert that reaches a person or a log line goes through :class:`ErrorDecoder`, which knows every
custom error of every artifact, so ``0x5f1c…`` is shown as
``TradeMarginInsufficient(account=0xab…, equityWad=…, initialMarginWad=…)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.types import TxReceipt

from bulwark.chain.rpc import abi_type
from bulwark.core import abis, paths
from bulwark.core.errors import (
    BulwarkError as BulwarkError,  # the root, importable from here as before
)

if TYPE_CHECKING:
    from bulwark.chain.sender import TxSender

WAD = 10**18
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
LOCAL_CHAIN_IDS = frozenset({31337, 1337})

Account.enable_unaudited_hdwallet_features()


class TxReverted(BulwarkError):
    """A call or transaction reverted; ``error`` is the decoded custom error."""

    def __init__(self, action: str, error: DecodedError) -> None:
        super().__init__(f"{action} reverted: {error}")
        self.action = action
        self.error = error


# ---------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class DecodedError:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    raw: str = ""

    def __str__(self) -> str:
        if not self.args:
            return (
                f"{self.name}()"
                if self.name != "unknown"
                else f"unknown error {self.raw or '(no data)'}"
            )
        inner = ", ".join(f"{k}={_fmt_arg(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def _fmt_arg(value: Any) -> str:
    if isinstance(value, bytes):
        text = value.rstrip(b"\0")
        if text and all(32 <= b < 127 for b in text):
            return text.decode()
        return "0x" + value.hex()
    return str(value)


# Solidity's panic codes in plain words; bulwark/core/errors.json holds them for the CLI and the page alike.
_PANIC_CODES: dict[int, str] = {
    int(code, 16): words
    for code, words in json.loads(
        resources.files("bulwark.core").joinpath("errors.json").read_text()
    )["panic_codes"].items()
}


class ErrorDecoder:
    """Decodes revert data against the custom errors of every artifact (plus Error and Panic)."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {
            function_signature_to_4byte_selector("Error(string)"): (
                "Error",
                ["string"],
                ["message"],
            ),
            function_signature_to_4byte_selector("Panic(uint256)"): (
                "Panic",
                ["uint256"],
                ["code"],
            ),
        }
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [abi_type(i) for i in item["inputs"]]
                names = [i["name"] or f"arg{n}" for n, i in enumerate(item["inputs"])]
                selector = function_signature_to_4byte_selector(
                    f"{item['name']}({','.join(types)})"
                )
                self._errors[selector] = (item["name"], types, names)

    @classmethod
    def from_artifacts(cls, artifacts: Mapping[str, Mapping[str, Any]]) -> ErrorDecoder:
        return cls(a["abi"] for a in artifacts.values())

    def decode(self, data: str | bytes | None) -> DecodedError:
        raw = _as_bytes(data)
        if len(raw) < 4:
            return DecodedError("unknown", raw="0x" + raw.hex())
        known = self._errors.get(raw[:4])
        if known is None:
            return DecodedError("unknown", raw="0x" + raw.hex())
        name, types, names = known
        try:
            values = abi_decode(types, raw[4:])
        except Exception:  # malformed data: show it rather than fail
            return DecodedError(name, raw="0x" + raw.hex())
        if name == "Panic":
            code = int(values[0])
            return DecodedError("Panic", {"code": hex(code), "reason": _PANIC_CODES.get(code, "?")})
        return DecodedError(name, dict(zip(names, values, strict=True)), "0x" + raw.hex())

    def from_exception(self, exc: BaseException) -> DecodedError | None:
        """The decoded revert of a web3 exception, or None if it was not a revert."""
        if isinstance(exc, (ContractCustomError, ContractLogicError, ContractPanicError)):
            data = exc.data
            if isinstance(data, dict):
                data = data.get("data")
            if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
                return self.decode(data)
            message = str(exc.message or exc)
            return DecodedError("Error", {"message": message})
        return None


def _as_bytes(data: str | bytes | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    text = data[2:] if data.startswith("0x") else data
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


# ---------------------------------------------------------------------------- node errors


def rpc_message(exc: BaseException) -> str:
    """The node's own message in a web3 error (``{'code': -32003, 'message': '...'}``)."""
    rpc = getattr(exc, "rpc_response", None)
    if isinstance(rpc, Mapping):
        error = rpc.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, Mapping) and arg.get("message"):
        return str(arg["message"])
    return str(exc)


def node_error_line(
    exc: BaseException, w3: Web3, sender: str, action: str, gas: int | None = None
) -> str | None:
    """One plain line for what a user can cause at the node when sending, or None.

    No ETH for gas (which account, what the transaction needs), nonce too low, replacement
    underpriced, chain id mismatch. ``gas`` is the transaction's gas, if known.
    """
    message = rpc_message(exc)
    text = message.lower()
    if "insufficient funds" in text:
        balance = w3.eth.get_balance(to_checksum_address(sender))
        price = int(w3.eth.gas_price)
        need = ""
        if gas:
            need = (
                f"; it needs up to {_eth(gas * price * 2)} ETH "
                f"({gas:,} gas at up to {_gwei(price * 2)} gwei)"
            )
        return (
            f"{action}: account {sender} has {_eth(balance)} ETH, too little to pay for gas{need}: "
            "send it ETH first (on a local chain: `bulwark accounts fund ADDRESS`)"
        )
    if "nonce too low" in text or "nonce is too low" in text:
        return (
            f"{action}: nonce too low for {sender}: another transaction from this account was "
            "mined meanwhile (a second bulwark or keeper with the same key?); run the command again"
        )
    if "replacement" in text and "underpriced" in text:
        return (
            f"{action}: a transaction from {sender} with the same nonce is still pending and this "
            "one does not pay enough more to replace it; wait for it to be mined, then run again"
        )
    if "chain id" in text or "chainid" in text or "chain_id" in text:
        return (
            f"{action}: the node refused the transaction's chain id ({message}); the signer and "
            f"the node must agree: the node is chain {w3.eth.chain_id}"
        )
    return None


def _eth(wei: int) -> str:
    text = f"{wei / 10**18:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _gwei(wei: int) -> str:
    return f"{wei / 10**9:.3g}"


# ---------------------------------------------------------------------------- signers


def dev_account(index: int) -> LocalAccount:
    """Anvil's dev account `index` (its well-known test mnemonic; never holds real money)."""
    if not 0 <= index < 100:
        raise BulwarkError(f"--dev-account must be between 0 and 99, got {index}")
    acct: LocalAccount = Account.from_mnemonic(
        ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return acct


def account_from_key(key: str) -> LocalAccount:
    try:
        acct: LocalAccount = Account.from_key(key.strip())
    except Exception as exc:  # the key itself must never appear in the message
        raise BulwarkError(f"the private key is not valid ({type(exc).__name__})") from None
    return acct


def account_from_keystore(path: str | os.PathLike[str], password: str | None) -> LocalAccount:
    """Decrypts a keystore file with `password` (the command line reads it from
    BULWARK_KEYSTORE_PASSWORD; None: it is not set)."""
    file = Path(path)
    if not file.is_file():
        raise BulwarkError(f"keystore file not found: {file}")
    if password is None:
        raise BulwarkError("set BULWARK_KEYSTORE_PASSWORD to unlock the keystore")
    try:
        key = Account.decrypt(json.loads(file.read_text()), password)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise BulwarkError(f"cannot unlock keystore {file}: {exc}") from None
    return account_from_key(key.hex())


# ---------------------------------------------------------------------------- deployment file


@dataclass
class MarketInfo:
    id: int
    feed: str


@dataclass
class Deployment:
    chain_id: int
    deploy_block: int
    contracts: dict[str, str]
    markets: dict[str, MarketInfo]
    collateral_decimals: int = 6
    local: bool = True

    @staticmethod
    def default_path(chain_id: int) -> Path:
        return paths.deployment_file(chain_id)

    def save(self, path: str | os.PathLike[str]) -> Path:
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return file

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Deployment:
        file = Path(path)
        if not file.is_file():
            raise BulwarkError(f"no deployment file at {file}: run `bulwark deploy` first")
        try:
            data = json.loads(file.read_text())
            markets = {
                str(name): MarketInfo(int(m["id"]), to_checksum_address(m["feed"]))
                for name, m in dict(data["markets"]).items()
            }
            contracts: dict[str, str] = {
                str(k): to_checksum_address(v) for k, v in dict(data["contracts"]).items()
            }
            for required in (
                "Collateral",
                "OracleAdapter",
                "ClearingHouse",
                "LiquidityPool",
                "InsuranceFund",
            ):
                if required not in contracts:
                    raise KeyError(f"contracts.{required}")
            return cls(
                chain_id=int(data["chain_id"]),
                deploy_block=int(data["deploy_block"]),
                contracts=contracts,
                markets=markets,
                collateral_decimals=int(data.get("collateral_decimals", 6)),
                local=bool(data.get("local", False)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BulwarkError(
                f"deployment file {file} is malformed: {type(exc).__name__} {exc}"
            ) from None


# ---------------------------------------------------------------------------- the client


def connect(rpc_url: str, timeout: float = 10.0) -> Web3:
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018 - the first request tells whether the node is there
    except Exception as exc:
        raise BulwarkError(f"cannot reach the node at {rpc_url}: {type(exc).__name__}") from None
    return w3


class Bulwark:
    """A deployment bound to a node: contract handles, calls and transactions with decoded errors."""

    def __init__(
        self, w3: Web3, deployment: Deployment, artifacts: Mapping[str, Any] | None = None
    ):
        self.w3 = w3
        self.deployment = deployment
        self.artifacts = dict(artifacts if artifacts is not None else abis.load_artifacts())
        self.errors = ErrorDecoder.from_artifacts(self.artifacts)
        c = deployment.contracts
        self.token = self.contract("MockUSDC", c["Collateral"])
        self.oracle = self.contract("OracleAdapter", c["OracleAdapter"])
        self.ch = self.contract("ClearingHouse", c["ClearingHouse"])
        self.pool = self.contract("LiquidityPool", c["LiquidityPool"])
        self.fund = self.contract("InsuranceFund", c["InsuranceFund"])
        self.feeds = {
            name: self.contract("MockAggregator", m.feed) for name, m in deployment.markets.items()
        }
        self.token_scale: int = 10 ** (18 - deployment.collateral_decimals)
        self._senders: dict[str, TxSender] = {}

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=self.artifacts[name]["abi"]
        )

    def market_id(self, name: str) -> int:
        market = self.deployment.markets.get(name.upper())
        if market is None:
            known = ", ".join(sorted(self.deployment.markets)) or "none"
            raise BulwarkError(f"unknown market {name!r} (markets: {known})")
        return market.id

    def market_names(self) -> list[str]:
        return sorted(self.deployment.markets, key=lambda n: self.deployment.markets[n].id)

    def call(
        self,
        fn: Any,
        *,
        block: int | str = "latest",
        action: str | None = None,
        call_params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Calls a function without sending it, turning a revert into :class:`TxReverted` with the
        decoded error; `call_params` may set the sender and gas."""
        try:
            return fn.call(dict(call_params or {}), block_identifier=block)
        except Exception as exc:
            decoded = self.errors.from_exception(exc)
            if decoded is None:
                raise
            raise TxReverted(action or _fn_name(fn), decoded) from None

    def send(self, fn: Any, signer: LocalAccount, *, action: str | None = None, gas: int | None = None,
             value: int = 0) -> TxReceipt:  # fmt: skip
        """Send and wait, through the signer's sender (:meth:`bulwark.chain.sender.TxSender.transact`):
        simulates, signs, sends and waits; a revert raises :class:`TxReverted` with the decoded
        error, a refusal by the node one plain line (:func:`node_error_line`)."""
        return self.sender(signer).transact(fn, action=action or _fn_name(fn), gas=gas, value=value)

    def sender(self, signer: LocalAccount) -> TxSender:
        """The send-and-wait sender of `signer` on this client (one per signer, so one nonce
        manager per signer); the keeper builds its own, with its settings and metrics."""
        from bulwark.chain.sender import TxSender

        found = self._senders.get(signer.address)
        if found is None:
            found = self._senders[signer.address] = TxSender(self, signer, log_sends=False)
        return found

    def replay_revert(self, tx: Mapping[str, Any], block: int) -> DecodedError:
        """Re-runs a failed transaction as a call at its block to recover the revert data."""
        return replay_revert(self.w3, self.errors, tx, block)

    def to_tokens(self, amount_wad: int) -> int:
        return amount_wad // self.token_scale


def replay_revert(
    w3: Web3, errors: ErrorDecoder, tx: Mapping[str, Any], block: int
) -> DecodedError:
    """Re-runs a failed transaction as a call at its block to recover the revert data."""
    call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
    try:
        w3.eth.call(call, block_identifier=block)  # type: ignore[arg-type]
    except Exception as exc:
        return errors.from_exception(exc) or DecodedError("unknown", raw=str(exc))
    return DecodedError("unknown", raw="transaction failed but the replay succeeded (out of gas?)")


def gas_without_funds(fn: Any, params: Mapping[str, Any]) -> int | None:
    """The gas a transaction would use if its sender could pay: an estimate with the sender's
    balance overridden (nodes that take state overrides, as Anvil and Geth do), else None."""
    try:
        override = {params["from"]: {"balance": hex(10**30)}}
        return int(fn.estimate_gas(dict(params), None, override))
    except Exception:
        return None


def _fn_name(fn: Any) -> str:
    return str(getattr(fn, "fn_name", None) or getattr(fn, "abi_element_identifier", "call"))
