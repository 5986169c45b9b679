"""The JSON-RPC layer: raw requests, batches that return a result or a typed failure per call, one
ABI encoder/decoder for batched calls, and the one test of whether the node is unreachable. Every
batched request of the package goes through :func:`rpc_batch`: the index, screening, the sender,
status, the invariant checker, the command line and the stress run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3 import Web3

from bulwark.core.errors import BulwarkError

# ---------------------------------------------------------------------------- JSON-RPC batches

_NODE_DOWN = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


def node_unreachable(exc: BaseException) -> bool:
    """True for connection refused, resets and timeouts, however deeply web3 wrapped them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _NODE_DOWN):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class RpcFailure:
    """One request of a batch that the node answered with an error (a revert, usually)."""

    code: int
    message: str
    data: str | None = None


class NodeError(BulwarkError):
    """The node answered something unusable (not a revert: a missing block, a malformed reply)."""


def rpc_batch(w3: Web3, requests: Sequence[tuple[str, list[Any]]], chunk: int = 300) -> list[Any]:
    """Sends requests as JSON-RPC batches; each answer is its result or an :class:`RpcFailure`."""
    out: list[Any] = []
    for start in range(0, len(requests), chunk):
        part = list(requests[start : start + chunk])
        replies = cast(Any, w3.provider).make_batch_request(part)
        if not isinstance(replies, list) or len(replies) != len(part):
            raise NodeError(f"the node answered a batch of {len(part)} with {replies!r:.200}")
        replies = sorted(replies, key=lambda r: int(r.get("id", 0)))
        for reply in replies:
            error = reply.get("error")
            if error:
                data = error.get("data")
                out.append(
                    RpcFailure(
                        int(error.get("code", 0)),
                        str(error.get("message")),
                        data if isinstance(data, str) else None,
                    )
                )
            else:
                out.append(reply.get("result"))
    return out


def abi_type(item: Mapping[str, Any]) -> str:
    """The canonical type of an ABI input or output (tuples spelled out), as eth_abi wants it."""
    kind = str(item["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in item["components"]) + ")" + kind[5:]
    return kind


def call_data(selector: bytes, types: Sequence[str], args: Sequence[Any]) -> str:
    """Calldata of one call: the 4-byte selector and the arguments, ABI-encoded by eth_abi."""
    return "0x" + selector.hex() + abi_encode(list(types), list(args)).hex()


def eth_call(to: str, data: str, block: int | str) -> tuple[str, list[Any]]:
    """An ``eth_call`` request for :func:`rpc_batch`."""
    tag = hex(block) if isinstance(block, int) else block
    return "eth_call", [{"to": to, "data": data}, tag]


@dataclass(frozen=True)
class _Coder:
    selector: bytes
    inputs: list[str]
    outputs: list[str]


class Calls:
    """Encodes calls of one contract for :func:`rpc_batch` and decodes their answers.

    Selector and argument types are worked out once per function and the arguments encoded by
    eth_abi directly: web3's ``encode_abi`` looks the function up in the contract's whole ABI and
    validates it on every call (about a millisecond each), which would dominate a batch of a few
    thousand calls. The one encoder behind every batched read and the keeper's own transactions."""

    def __init__(self, contract: Any) -> None:
        self.contract = contract
        self.address = str(contract.address)
        self._abi: dict[str, list[Mapping[str, Any]]] = {}
        for item in contract.abi:
            if item.get("type") == "function":
                self._abi.setdefault(str(item["name"]), []).append(item)
        self._coders: dict[str, _Coder] = {}

    def _coder(self, fn: str) -> _Coder:
        coder = self._coders.get(fn)
        if coder is None:
            items = self._abi.get(fn)
            if not items:
                raise BulwarkError(f"{fn} is not a function of the contract at {self.address}")
            if len(items) > 1:
                raise BulwarkError(f"{fn} is overloaded; Calls needs a unique name")
            item = items[0]
            coder = _Coder(
                bytes(function_abi_to_4byte_selector(cast(Any, item))),
                [abi_type(i) for i in item["inputs"]],
                [abi_type(o) for o in item.get("outputs", [])],
            )
            self._coders[fn] = coder
        return coder

    def data(self, fn: str, args: Sequence[Any]) -> str:
        """Calldata of `fn(*args)` (for an eth_call, an eth_estimateGas or a transaction)."""
        coder = self._coder(fn)
        return call_data(coder.selector, coder.inputs, args)

    def request(self, fn: str, args: Sequence[Any], block: int | str) -> tuple[str, list[Any]]:
        return eth_call(self.address, self.data(fn, args), block)

    def decode(self, fn: str, result: Any) -> Any:
        if isinstance(result, RpcFailure):
            raise result_error(result)
        values = abi_decode(self._coder(fn).outputs, bytes.fromhex(str(result)[2:]))
        return values[0] if len(values) == 1 else values


def function_call(
    address: str, fn_abi: Mapping[str, Any], args: Sequence[Any], block: int | str
) -> tuple[str, list[Any]]:
    """An ``eth_call`` request of one function given by its ABI item, for :func:`rpc_batch`."""
    selector = bytes(function_abi_to_4byte_selector(cast(Any, fn_abi)))
    return eth_call(
        address, call_data(selector, [abi_type(i) for i in fn_abi["inputs"]], args), block
    )


def _checksummed(item: Mapping[str, Any], value: Any) -> Any:
    kind = str(item["type"])
    if kind.endswith("]"):
        inner = {**item, "type": kind[: kind.rindex("[")]}
        return [_checksummed(inner, v) for v in value]
    if kind == "tuple":
        return tuple(_checksummed(c, v) for c, v in zip(item["components"], value, strict=True))
    return to_checksum_address(value) if kind == "address" else value


def decode_output(fn_abi: Mapping[str, Any], result: str) -> Any:
    """A function's return data decoded as web3 returns it: addresses checksummed, one output as
    itself and several as a list."""
    outputs = list(fn_abi.get("outputs", []))
    values = abi_decode([abi_type(o) for o in outputs], bytes.fromhex(result[2:]))
    decoded = [_checksummed(o, v) for o, v in zip(outputs, values, strict=True)]
    return decoded[0] if len(decoded) == 1 else decoded


class CallFailed(BulwarkError):
    def __init__(self, failure: RpcFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def result_error(failure: RpcFailure) -> CallFailed:
    return CallFailed(failure)


# ---------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    timestamp: int
    base_fee: int
    gas_limit: int = 30_000_000

    @classmethod
    def from_rpc(cls, block: Any) -> BlockRef:
        if not block:
            raise NodeError("block not found")
        return cls(
            number=int(block["number"], 16),
            hash=str(block["hash"]),
            timestamp=int(block["timestamp"], 16),
            base_fee=int(block.get("baseFeePerGas") or "0x0", 16),
            gas_limit=int(block.get("gasLimit") or hex(30_000_000), 16),
        )


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """One raw JSON-RPC request; its result (None when the node has none)."""
    return cast(Any, w3.provider).make_request(method, params).get("result")


def get_block(w3: Web3, which: int | str = "latest") -> BlockRef:
    tag = hex(which) if isinstance(which, int) else which
    return BlockRef.from_rpc(rpc(w3, "eth_getBlockByNumber", [tag, False]))
