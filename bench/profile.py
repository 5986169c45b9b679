"""Where a transaction's gas goes, from Anvil's geth-style step trace (``debug_traceTransaction``).

Every step's own cost is the drop in remaining gas to the next step of the same frame; a call's
overhead (account access, memory, value) is its inclusive cost minus what the callee used. Costs are
attributed to:

- the contract whose code ran (a library reached by DELEGATECALL counts as itself),
- the Solidity function the instruction came from (through the compiler's source maps, when the
  deployed bytecode matches a fresh compile of the sources),
- the opcode class (SLOAD cold/warm, SSTORE set/reset/no-op, LOG, KECCAK256, call overhead, the rest),
- the storage slot touched, named through the compiler's storage layout by replaying the KECCAK256
  preimages seen in the trace (``_s.positions[trader][0].sizeWad|openNotionalWad``).

Anvil records steps only when started with ``--steps-tracing``.
"""

from __future__ import annotations

import bisect
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import solcx

from bulwark.core import paths
from bulwark.devnet import compiler

CALL_OPS = frozenset({"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"})
_LINK_PLACEHOLDER = re.compile(r"__\$[0-9a-fA-F]{34}\$__")
CALL_OVERHEAD = "CALL overhead (account access, memory)"
ACCOUNT_OPS = frozenset({"EXTCODESIZE", "EXTCODEHASH", "EXTCODECOPY", "BALANCE"})

# ---------------------------------------------------------------------------- compiler side data


@dataclass
class CodeInfo:
    """What a fresh compile knows about one contract: storage layout and pc -> function."""

    name: str
    storage: list[dict[str, Any]]
    types: dict[str, Any]
    pc_function: dict[int, str] = field(default_factory=dict)


def _compile_with_maps() -> dict[str, Any]:
    """The sources compiled with storage layouts, source maps and ASTs (cached on disk by hash)."""
    digest = compiler.source_hash()
    cache_file = Path(tempfile.gettempdir()) / f"bulwark-bench-layout-{digest[:24]}.json"
    if cache_file.is_file():
        loaded: dict[str, Any] = json.loads(cache_file.read_text())
        return loaded
    root = paths.project_root()
    sources = compiler.source_files()
    settings = compiler.compiler_settings()
    outputs = ["storageLayout", "evm.deployedBytecode.object", "evm.deployedBytecode.sourceMap"]
    settings["outputSelection"] = {n: {"*": outputs, "": ["ast"]} for n in sources}
    standard = {
        "language": "Solidity",
        "sources": {n: {"content": p.read_text()} for n, p in sources.items()},
        "settings": settings,
    }
    allow = [root, paths.toolchain_file("node_modules")]
    solc = paths.toolchain_file("tools/solc.js")
    out: dict[str, Any] = solcx.compile_standard(
        standard, base_path=root, allow_paths=allow, solc_binary=solc
    )
    slim = {"contracts": out["contracts"], "sources": out["sources"]}
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(slim))
    tmp.replace(cache_file)
    return slim


def _instruction_offsets(code_hex: str) -> list[int]:
    """The pc of each instruction (PUSH data skipped)."""
    code = bytes.fromhex(_LINK_PLACEHOLDER.sub("0" * 40, code_hex))
    pcs: list[int] = []
    pc = 0
    while pc < len(code):
        pcs.append(pc)
        op = code[pc]
        pc += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return pcs


def _functions_by_file(out: Mapping[str, Any]) -> dict[int, list[tuple[int, int, str]]]:
    """Per source id, (start, end, Contract.function) of every function and modifier, sorted."""
    found: dict[int, list[tuple[int, int, str]]] = defaultdict(list)

    def walk(node: Any, contract: str) -> None:
        if isinstance(node, dict):
            kind = node.get("nodeType")
            if kind == "ContractDefinition":
                contract = str(node.get("name"))
            if kind in ("FunctionDefinition", "ModifierDefinition") and "src" in node:
                start, length, file_id = (int(x) for x in str(node["src"]).split(":"))
                name = node.get("name") or node.get("kind") or "?"
                found[file_id].append((start, start + length, f"{contract}.{name}"))
            for value in node.values():
                walk(value, contract)
        elif isinstance(node, list):
            for value in node:
                walk(value, contract)

    for source in out["sources"].values():
        walk(source.get("ast"), "")
    return {k: sorted(v) for k, v in found.items()}


def _innermost(funcs: Sequence[tuple[int, int, str]], start: int, end: int) -> str | None:
    best: tuple[int, str] | None = None
    for f_start, f_end, name in funcs:
        if f_start > start:
            break
        if f_end >= end and (best is None or f_end - f_start < best[0]):
            best = (f_end - f_start, name)
    return best[1] if best else None


def _pc_functions(
    code_hex: str, source_map: str, funcs: Mapping[int, Sequence[Any]]
) -> dict[int, str]:
    pcs = _instruction_offsets(code_hex)
    result: dict[int, str] = {}
    s = length = file_id = -1
    for i, entry in enumerate(source_map.split(";")):
        if i >= len(pcs):
            break
        parts = entry.split(":")
        if len(parts) > 0 and parts[0]:
            s = int(parts[0])
        if len(parts) > 1 and parts[1]:
            length = int(parts[1])
        if len(parts) > 2 and parts[2]:
            file_id = int(parts[2])
        name = _innermost(funcs.get(file_id, ()), s, s + length) if file_id >= 0 else None
        result[pcs[i]] = name or "(compiler-generated: dispatch, ABI coding, checks)"
    return result


@cache
def code_infos() -> dict[str, CodeInfo]:
    """Per contract name: storage layout and, when the bytecode matches the build, pc -> function."""
    out = _compile_with_maps()
    funcs = _functions_by_file(out)
    artifacts = compiler.load_artifacts()
    infos: dict[str, CodeInfo] = {}
    for contracts in out["contracts"].values():
        for name, c in contracts.items():
            layout = c.get("storageLayout") or {}
            info = CodeInfo(name, layout.get("storage", []), layout.get("types") or {})
            deployed = c.get("evm", {}).get("deployedBytecode", {})
            built = artifacts.get(name, {}).get("deployedBytecode", "")[2:]
            if deployed.get("object") and deployed.get("object") == built:
                info.pc_function = _pc_functions(
                    deployed["object"], deployed.get("sourceMap", ""), funcs
                )
            infos[name] = info
    return infos


# ---------------------------------------------------------------------------- storage slot names


@dataclass(frozen=True)
class _Derived:
    kind: str  # "root", "map", "array"
    base: Any  # int slot for root; _Derived (+offset) for map/array
    key: bytes = b""


class SlotNamer:
    """Names storage slots of one contract from its layout and the KECCAK256 preimages of a trace."""

    def __init__(
        self, info: CodeInfo | None, preimages: Mapping[int, bytes], names: Mapping[str, str]
    ):
        self.info = info
        self.preimages = preimages
        self.sorted_hashes = sorted(preimages)
        self.names = names

    def name(self, slot: int) -> str:
        node, offset = self._decompose(slot, 0)
        if node is None or self.info is None:
            return hex(slot)
        try:
            return self._label(node, offset)
        except (KeyError, ValueError, IndexError):
            return hex(slot)

    def _decompose(self, slot: int, depth: int) -> tuple[_Derived | None, int]:
        if depth > 8:
            return None, 0
        if slot < 2**32:
            return _Derived("root", slot), 0
        if slot in self.preimages:
            return self._from_preimage(self.preimages[slot], depth), 0
        i = bisect.bisect_right(self.sorted_hashes, slot) - 1
        if i >= 0 and slot - self.sorted_hashes[i] < 2**16:
            h = self.sorted_hashes[i]
            return self._from_preimage(self.preimages[h], depth), slot - h
        return None, 0

    def _from_preimage(self, pre: bytes, depth: int) -> _Derived | None:
        if len(pre) == 64:
            parent, off = self._decompose(int.from_bytes(pre[32:], "big"), depth + 1)
            return _Derived("map", (parent, off), pre[:32]) if parent else None
        if len(pre) == 32:
            parent, off = self._decompose(int.from_bytes(pre, "big"), depth + 1)
            return _Derived("array", (parent, off)) if parent else None
        return None

    def _entity(self, node: _Derived) -> tuple[str, str]:
        """Label and type id of the entity whose storage starts at `node`."""
        assert self.info is not None
        if node.kind == "root":
            return self._descend("", None, int(node.base))
        parent, off = node.base
        if node.kind == "map":
            label, type_id = (
                self._entity(parent) if off == 0 else self._descend(*self._entity(parent), off)
            )
            mapping = self.info.types[type_id]
            return f"{label}[{self._key(node.key, mapping.get('key', ''))}]", mapping["value"]
        label, type_id = (
            self._entity(parent) if off == 0 else self._descend(*self._entity(parent), off)
        )
        return label, type_id  # the array itself; elements are resolved by the offset in _label

    def _label(self, node: _Derived, offset: int) -> str:
        label, type_id = self._entity(node)
        if node.kind == "array":
            t = self.info.types[type_id] if self.info else {}
            base = t.get("base", "")
            per = max(1, int(self.info.types[base]["numberOfBytes"]) // 32) if self.info else 1
            return self._descend(f"{label}[{offset // per}]", base, offset % per)[0]
        return self._descend(label, type_id, offset)[0]

    def _descend(self, label: str, type_id: str | None, offset: int) -> tuple[str, str]:
        """Walks `offset` slots into the entity (top-level variables when type_id is None)."""
        assert self.info is not None
        if type_id is None:
            members = self.info.storage
        else:
            t = self.info.types[type_id]
            if t.get("encoding") != "inplace" or "members" not in t:
                return (label if offset == 0 else f"{label}+{offset}"), type_id
            members = t["members"]
        here = [m for m in members if int(m["slot"]) == offset]
        if len(here) == 1 and here[0]["type"] in self.info.types:
            m = here[0]
            inner = self.info.types[m["type"]]
            if "members" in inner and inner.get("encoding") == "inplace":
                return self._descend(_join(label, m["label"]), m["type"], 0)
            return _join(label, m["label"]), m["type"]
        if here:
            return _join(label, "|".join(m["label"] for m in here)), here[0]["type"]
        before = [m for m in members if int(m["slot"]) < offset]
        if not before:
            return f"{label}+{offset}", type_id or ""
        m = max(before, key=lambda x: int(x["slot"]))
        return self._descend(_join(label, m["label"]), m["type"], offset - int(m["slot"]))

    def _key(self, key: bytes, key_type: str) -> str:
        value = int.from_bytes(key, "big")
        if "address" in key_type or "contract" in key_type:
            address = "0x" + key[12:].hex()
            return self.names.get(address.lower(), address[:10] + "…")
        if value < 2**32:
            return str(value)
        return "0x" + key.hex()[:8] + "…"


def _join(label: str, member: str) -> str:
    return f"{label}.{member}" if label else member


# ---------------------------------------------------------------------------- the trace


@dataclass
class _Frame:
    code: str  # address whose code runs
    storage: str  # address whose storage it uses
    total: int = 0
    call_step: dict[str, Any] | None = None
    call_key: str = ""


def _word(stack: Sequence[str], depth: int) -> int:
    return int(stack[-1 - depth], 16)


def _memory_bytes(memory: Sequence[str], offset: int, size: int) -> bytes:
    blob = bytes.fromhex("".join(w.removeprefix("0x") for w in memory))
    return blob[offset : offset + size].ljust(size, b"\0")


def _sstore_kind(cost: int) -> str:
    if cost >= 20_000:
        return "SSTORE set (zero to non-zero)"
    if cost >= 2_900:
        return "SSTORE reset (non-zero to other)"
    return "SSTORE no-op / warm rewrite"


def _op_class(op: str, cost: int) -> str:
    if op == "SLOAD":
        return "SLOAD cold" if cost >= 2_100 else "SLOAD warm"
    if op == "SSTORE":
        return _sstore_kind(cost)
    if op.startswith("LOG"):
        return "LOG (events)"
    if op == "KECCAK256":
        return "KECCAK256"
    if op in ("TLOAD", "TSTORE"):
        return "TLOAD/TSTORE (reentrancy guard)"
    if op in ACCOUNT_OPS and cost >= 2_600:
        # A library's code is first touched by the EXTCODESIZE check before its DELEGATECALL.
        return "account access, cold (EXTCODESIZE and the like)"
    return "other (stack, memory, arithmetic, jumps)"


def _intrinsic(data: bytes) -> int:
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


@dataclass
class Profile:
    gas_used: int
    intrinsic: int
    refund: int
    by_contract: dict[str, int]
    by_function: dict[str, int]
    by_class: dict[str, int]
    class_counts: dict[str, int]
    calls: dict[str, dict[str, int]]
    storage: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "gas_used": self.gas_used,
            "intrinsic": self.intrinsic,
            "refund": self.refund,
            "by_contract": _sorted(self.by_contract),
            "by_function": _sorted(self.by_function),
            "by_class": _sorted(self.by_class),
            "class_counts": self.class_counts,
            "calls": self.calls,
            "storage": self.storage,
        }


def _sorted(d: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(d.items(), key=lambda kv: -kv[1]))


class _Analyzer:
    def __init__(self, names: Mapping[str, str], selectors: Mapping[str, Mapping[bytes, str]]):
        self.names = {k.lower(): v for k, v in names.items()}
        self.selectors = selectors
        self.by_contract: dict[str, int] = defaultdict(int)
        self.by_function: dict[str, int] = defaultdict(int)
        self.by_class: dict[str, int] = defaultdict(int)
        self.class_counts: dict[str, int] = defaultdict(int)
        self.calls: dict[str, dict[str, int]] = {}
        self.storage_ops: list[tuple[str, str, int, int]] = []  # (storage addr, op, slot, cost)
        self.preimages: dict[int, bytes] = {}

    def contract(self, address: str) -> str:
        return self.names.get(address.lower(), address[:10])

    def attribute(self, frame: _Frame, step: Mapping[str, Any], cost: int, kind: str = "") -> None:
        name = self.contract(frame.code)
        self.by_contract[name] += cost
        info = code_infos().get(name)
        fn = info.pc_function.get(int(step["pc"])) if info and info.pc_function else None
        self.by_function[fn or f"{name} (no source map)"] += cost
        kind = kind or _op_class(str(step["op"]), cost)
        self.by_class[kind] += cost
        self.class_counts[kind] += 1
        frame.total += cost

    def call_key(self, step: Mapping[str, Any]) -> tuple[str, str]:
        op = str(step["op"])
        stack = step["stack"]
        target = "0x" + f"{_word(stack, 1):040x}"[-40:]
        args = 3 if op in ("CALL", "CALLCODE") else 2
        offset, size = _word(stack, args), _word(stack, args + 1)
        selector = (
            _memory_bytes(step.get("memory") or [], offset, min(size, 4)) if size >= 4 else b""
        )
        callee = self.contract(target)
        fn = self.selectors.get(callee, {}).get(
            selector, "0x" + selector.hex() if selector else "()"
        )
        return target, f"{op} {callee}.{fn}"

    def record_call(
        self, frame: _Frame, step: Mapping[str, Any], key: str, inclusive: int, overhead: int
    ) -> None:
        entry = self.calls.setdefault(key, {"count": 0, "inclusive_gas": 0, "call_overhead_gas": 0})
        entry["count"] += 1
        entry["inclusive_gas"] += inclusive
        entry["call_overhead_gas"] += overhead
        self.attribute(frame, step, overhead, CALL_OVERHEAD)


def analyze(
    trace: Mapping[str, Any],
    tx: Mapping[str, Any],
    gas_used: int,
    names: Mapping[str, str],
    selectors: Mapping[str, Mapping[bytes, str]],
    labels: Mapping[str, str] | None = None,
) -> Profile:
    """Attributes the gas of one traced transaction (see the module docstring)."""
    logs: list[dict[str, Any]] = trace["structLogs"]
    a = _Analyzer(names, selectors)
    to = str(tx["to"]).lower()
    frames = [_Frame(code=to, storage=to)]
    for i, step in enumerate(logs):
        frame = frames[-1]
        nxt = logs[i + 1] if i + 1 < len(logs) else None
        op = str(step["op"])
        if op == "KECCAK256" and nxt is not None:
            stack, memory = step["stack"], step.get("memory") or []
            data = _memory_bytes(memory, _word(stack, 0), _word(stack, 1))
            a.preimages[int(nxt["stack"][-1], 16)] = data
        if nxt is not None and nxt["depth"] > step["depth"]:
            target, key = a.call_key(step) if op in CALL_OPS else (to, op)
            storage = frame.storage if op in ("DELEGATECALL", "CALLCODE") else target
            frames.append(_Frame(code=target, storage=storage, call_step=step, call_key=key))
            continue
        same_frame = nxt is not None and nxt["depth"] == step["depth"]
        cost = int(step["gas"]) - int(nxt["gas"]) if same_frame and nxt else int(step["gasCost"])
        if op in ("SLOAD", "SSTORE"):
            a.storage_ops.append((frame.storage, op, _word(step["stack"], 0), cost))
        if op in CALL_OPS and same_frame:  # a call that ran no code (precompile, empty account)
            a.record_call(frame, step, a.call_key(step)[1], cost, cost)
            continue
        a.attribute(frame, step, cost)
        if nxt is not None and nxt["depth"] < step["depth"] and len(frames) > 1:
            done = frames.pop()
            assert done.call_step is not None
            inclusive = int(done.call_step["gas"]) - int(nxt["gas"])
            a.record_call(
                frames[-1], done.call_step, done.call_key, inclusive, inclusive - done.total
            )
            frames[-1].total += done.total
    data = tx.get("input", b"")
    intrinsic = _intrinsic(bytes(data) if not isinstance(data, str) else bytes.fromhex(data[2:]))
    execution = frames[0].total
    refund = intrinsic + execution - gas_used
    storage = _storage_summary(a, labels or {})
    return Profile(
        gas_used, intrinsic, refund, dict(a.by_contract), dict(a.by_function), dict(a.by_class),
        dict(a.class_counts), a.calls, storage,
    )  # fmt: skip


def _storage_summary(a: _Analyzer, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    namers: dict[str, SlotNamer] = {}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for storage, op, slot, cost in a.storage_ops:
        contract = a.contract(storage)
        namer = namers.get(storage)
        if namer is None:
            key_names = {k.lower(): v for k, v in {**a.names, **labels}.items()}
            namer = SlotNamer(code_infos().get(contract), a.preimages, key_names)
            namers[storage] = namer
        label = namer.name(slot)
        row = rows.setdefault(
            (contract, label),
            {"contract": contract, "slot": label, "sload": 0, "sstore": 0, "gas": 0},
        )
        row["sload" if op == "SLOAD" else "sstore"] += 1
        row["gas"] += cost
    return sorted(rows.values(), key=lambda r: -int(r["gas"]))


def selectors_from_artifacts(
    artifacts: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[bytes, str]]:
    out: dict[str, dict[bytes, str]] = {}
    for name, art in artifacts.items():
        ids = art.get("methodIdentifiers") or {}
        out[name] = {bytes.fromhex(sel): sig.split("(")[0] for sig, sel in ids.items()}
    return out


def trace_transaction(w3: Any, tx_hash: str) -> dict[str, Any]:
    reply = w3.provider.make_request(
        "debug_traceTransaction", [tx_hash, {"enableMemory": True, "disableStorage": True}]
    )
    if "error" in reply:
        raise RuntimeError(f"debug_traceTransaction failed: {reply['error']}")
    result: dict[str, Any] = reply["result"]
    if not result.get("structLogs"):
        raise RuntimeError("the node returned no steps: start Anvil with --steps-tracing")
    return result
