"""Compile contracts/ into build/contracts/<Name>.json, offline, through tools/solc.js.

Artifacts are rebuilt only when the sources, the OpenZeppelin or solc version, or the settings
change: a hash of all of them sits in ``build/contracts/.source-hash``, and when it matches, the
artifacts are loaded as they are (a few milliseconds, no compiler started).

Only contracts defined in files under ``contracts/`` get an artifact; what they import from
OpenZeppelin is compiled in but not written out. Artifacts are keyed by contract name, so two
contracts with the same name in different files are an error.

Run ``python -m bulwark.devnet.compiler [--force]`` to compile and print the deployed sizes.

The package also ships every contract's ABI and creation bytecode (``bulwark/core/abi.json``,
``bulwark/core/bytecode.json``), so that an installed keeper or CLI talks to a deployment, and
deploys one, without the repository, Node or a compiler. ``python -m bulwark.devnet.compiler --abis``
rewrites both from a fresh build; a test fails when either differs from the build.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import solcx
from solcx.exceptions import SolcError

from bulwark.core import paths
from bulwark.core.abis import PACKAGED_ABIS as PACKAGED_ABIS  # the loader lives in core
from bulwark.core.abis import PACKAGED_BYTECODE as PACKAGED_BYTECODE
from bulwark.core.abis import Artifact as Artifact
from bulwark.core.abis import load_artifacts as load_artifacts
from bulwark.core.abis import load_dir as _load_dir
from bulwark.core.abis import packaged_artifacts as packaged_artifacts

EVM_VERSION = "cancun"
OPTIMIZER_ENABLED = True
OPTIMIZER_RUNS = 200
VIA_IR = False
REMAPPINGS = ("@openzeppelin/=node_modules/@openzeppelin/",)
OUTPUT_SELECTION = (
    "abi",
    "evm.bytecode.object",
    "evm.bytecode.linkReferences",
    "evm.deployedBytecode.object",
    "evm.deployedBytecode.linkReferences",
    "evm.methodIdentifiers",
)
# EIP-170: the largest deployed code a contract may have.
CODE_SIZE_LIMIT = 24_576

HASH_FILE = ".source-hash"
_LOCK_FILE = ".lock"


class CompileError(RuntimeError):
    """The compiler reported errors (the message holds solc's formatted messages)."""


def compiler_settings() -> dict[str, Any]:
    """Standard-JSON settings used for every build (without the output selection)."""
    return {
        "evmVersion": EVM_VERSION,
        "optimizer": {"enabled": OPTIMIZER_ENABLED, "runs": OPTIMIZER_RUNS},
        "viaIR": VIA_IR,
        "remappings": list(REMAPPINGS),
    }


def _root(root: Path | None) -> Path:
    return paths.project_root() if root is None else Path(root).resolve()


def _build_dir(root: Path) -> Path:
    return root / "build" / "contracts"


def source_files(root: Path | None = None) -> dict[str, Path]:
    """Every ``contracts/**/*.sol``, keyed by source unit name (``contracts/X.sol``)."""
    base = _root(root)
    contracts = base / "contracts"
    files = sorted(p for p in contracts.rglob("*.sol") if p.is_file())
    return {p.relative_to(base).as_posix(): p for p in files}


def _package_version(root: Path, package: str) -> str:
    try:
        manifest = paths.toolchain_file(f"node_modules/{package}/package.json", root)
    except paths.ToolchainMissingError:
        return "missing"
    return str(json.loads(manifest.read_text())["version"])


def source_hash(root: Path | None = None) -> str:
    """Hash of every source, the OpenZeppelin and solc versions, and the settings."""
    base = _root(root)
    digest = hashlib.sha256()
    header = {
        "settings": compiler_settings(),
        "outputSelection": list(OUTPUT_SELECTION),
        "openzeppelin": _package_version(base, "@openzeppelin/contracts"),
        "solc": _package_version(base, "solc"),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name, path in source_files(base).items():
        content = path.read_bytes()
        digest.update(f"\0{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _compiler_version(solc_binary: str) -> str:
    return solcx.wrapper.get_version_str_from_solc_binary(solc_binary)


@contextmanager
def _build_lock(build: Path) -> Iterator[None]:
    build.mkdir(parents=True, exist_ok=True)
    with open(build / _LOCK_FILE, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_hash(build: Path) -> str | None:
    try:
        return (build / HASH_FILE).read_text().strip()
    except FileNotFoundError:
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _format_errors(errors: list[dict[str, Any]]) -> str:
    return "\n".join(
        str(e.get("formattedMessage") or e.get("message", "")).rstrip()
        for e in errors
        if e.get("severity") == "error"
    )


def _run_solc(root: Path, sources: dict[str, Path]) -> dict[str, Any]:
    solc = paths.toolchain_file("tools/solc.js", root)
    settings = compiler_settings()
    settings["outputSelection"] = {name: {"*": list(OUTPUT_SELECTION)} for name in sources}
    standard_input = {
        "language": "Solidity",
        "sources": {name: {"content": path.read_text()} for name, path in sources.items()},
        "settings": settings,
    }
    allow = [root]
    with contextlib.suppress(paths.ToolchainMissingError):
        allow.append(paths.toolchain_file("node_modules", root))
    try:
        output: dict[str, Any] = solcx.compile_standard(
            standard_input, base_path=root, allow_paths=allow, solc_binary=solc
        )
    except SolcError as exc:
        if exc.error_dict:
            # py-solc-x annotates error_dict as a dict; it holds solc's list of errors.
            errors = cast(list[dict[str, Any]], exc.error_dict)
            raise CompileError(_format_errors(errors)) from None
        raise CompileError(str(exc)) from None
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(_format_errors(errors))
    return output


def _artifacts_from(
    output: dict[str, Any], sources: dict[str, Path], digest: str, version: str
) -> dict[str, Artifact]:
    artifacts: dict[str, Artifact] = {}
    settings = compiler_settings()
    for source_name in sources:
        for name, contract in output.get("contracts", {}).get(source_name, {}).items():
            if name in artifacts:
                raise CompileError(
                    f"contract name {name!r} is defined in both "
                    f"{artifacts[name]['sourceName']} and {source_name}; artifacts are keyed by "
                    "name, so rename one of them"
                )
            evm = contract.get("evm", {})
            bytecode = evm.get("bytecode", {})
            deployed = evm.get("deployedBytecode", {})
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "abi": contract.get("abi", []),
                "bytecode": "0x" + bytecode.get("object", ""),
                "deployedBytecode": "0x" + deployed.get("object", ""),
                "linkReferences": bytecode.get("linkReferences", {}),
                "deployedLinkReferences": deployed.get("linkReferences", {}),
                "methodIdentifiers": evm.get("methodIdentifiers", {}),
                "sourceHash": digest,
                "compiler": {"version": version, "settings": settings},
            }
    return artifacts


def compile_contracts(force: bool = False, *, root: Path | None = None) -> dict[str, Artifact]:
    """Compile every ``contracts/**/*.sol`` and write ``build/contracts/<Name>.json``.

    Skips the compiler when nothing that affects the output changed, unless ``force``.

    Returns:
        The artifacts, keyed by contract name.

    Raises:
        CompileError: solc reported errors, two contracts share a name, or there are no sources.
    """
    base = _root(root)
    build = _build_dir(base)
    sources = source_files(base)
    if not sources:
        raise CompileError(f"no Solidity sources under {base / 'contracts'}")
    digest = source_hash(base)

    def up_to_date() -> dict[str, Artifact] | None:
        if force or _read_hash(build) != digest:
            return None
        artifacts = _load_dir(build)
        if artifacts and all(a.get("sourceHash") == digest for a in artifacts.values()):
            return artifacts
        return None

    cached = up_to_date()
    if cached is not None:
        return cached
    with _build_lock(build):
        cached = up_to_date()  # another process may have built it while we waited
        if cached is not None:
            return cached
        (build / HASH_FILE).unlink(missing_ok=True)
        output = _run_solc(base, sources)
        version = _compiler_version(str(paths.toolchain_file("tools/solc.js", base)))
        artifacts = _artifacts_from(output, sources, digest, version)
        for stale in build.glob("*.json"):
            if stale.stem not in artifacts:
                stale.unlink()
        for name, artifact in artifacts.items():
            _write_json(build / f"{name}.json", artifact)
        (build / HASH_FILE).write_text(digest + "\n")
    return artifacts


def load_artifact(name: str, *, root: Path | None = None) -> Artifact:
    """The artifact of one contract from build/contracts (compile first)."""
    path = _build_dir(_root(root)) / f"{name}.json"
    try:
        artifact: Artifact = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no build artifact for contract {name!r} at {path}; run `bulwark compile`"
        ) from None
    return artifact


def has_sources(root: Path | None = None) -> bool:
    """Whether ``root`` (default: the project root) holds Solidity sources to compile."""
    base = _root(root)
    return (base / "contracts").is_dir() and bool(source_files(base))


def abis_of(artifacts: dict[str, Artifact]) -> dict[str, Any]:
    """Name -> ABI for every artifact that has one (libraries without external functions have none)."""
    return {name: a["abi"] for name, a in sorted(artifacts.items()) if a["abi"]}


def bytecodes_of(artifacts: dict[str, Artifact]) -> dict[str, Any]:
    """Name -> creation bytecode and library link references, for every artifact that can be
    deployed (interfaces and abstract contracts have no bytecode)."""
    return {
        name: {"bytecode": a["bytecode"], "linkReferences": a.get("linkReferences") or {}}
        for name, a in sorted(artifacts.items())
        if len(a.get("bytecode", "")) > 2
    }


def _write_lines(target: Path, entries: dict[str, Any]) -> Path:
    """``{name: value}`` as JSON, one contract a line so that a diff names it; replaced whole."""
    lines = [f"{json.dumps(name)}: {json.dumps(v, sort_keys=True)}" for name, v in entries.items()]
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    os.replace(tmp, target)
    return target


def write_packaged_artifacts(artifacts: dict[str, Artifact]) -> list[Path]:
    """Writes ``bulwark/core/abi.json`` and ``bulwark/core/bytecode.json`` from ``artifacts``."""
    return [
        _write_lines(PACKAGED_ABIS, abis_of(artifacts)),
        _write_lines(PACKAGED_BYTECODE, bytecodes_of(artifacts)),
    ]


def deployable_artifacts() -> dict[str, Artifact]:
    """What a deployment needs: in a checkout with sources, the build (compiled first when the
    sources changed); in an installed package run elsewhere, the bytecode it ships."""
    return compile_contracts() if has_sources() else packaged_artifacts()


def deployed_size(artifact: Artifact) -> int:
    """Deployed code size in bytes (library placeholders count as the 20 bytes they fill)."""
    return (len(artifact["deployedBytecode"]) - 2) // 2


def contract_sizes(*, root: Path | None = None) -> dict[str, int]:
    """Deployed bytecode size of every contract, in bytes (compiling if needed)."""
    return {name: deployed_size(a) for name, a in sorted(compile_contracts(root=root).items())}


def main(argv: list[str] | None = None) -> int:
    """Compile (``--force`` to ignore the cache) and print deployed sizes against the limit;
    ``--abis`` also rewrites the ABIs shipped with the package."""
    args = sys.argv[1:] if argv is None else argv
    try:
        artifacts = compile_contracts(force="--force" in args)
    except CompileError as exc:
        print(exc, file=sys.stderr)
        return 1
    if "--abis" in args:
        for written in write_packaged_artifacts(artifacts):
            print(f"wrote {written}")
    too_big = 0
    for name, artifact in sorted(artifacts.items()):
        size = deployed_size(artifact)
        if size == 0:
            continue
        flag = "  OVER THE LIMIT" if size > CODE_SIZE_LIMIT else ""
        too_big += size > CODE_SIZE_LIMIT
        print(f"{name:<40} {size:>6} bytes  ({CODE_SIZE_LIMIT - size:>6} to spare){flag}")
    print(f"{len(artifacts)} artifacts in {_build_dir(paths.project_root())}")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
