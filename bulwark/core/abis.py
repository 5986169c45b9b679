"""The contracts' ABIs and bytecode: from the checkout's build when there is one, else the copies this
package ships (``bulwark/core/abi.json`` and ``bulwark/core/bytecode.json``, rewritten by ``make abi``),
so that an installed keeper or command line talks to a deployment, and deploys one, without the
repository, Node or a compiler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bulwark.core import paths

PACKAGED_ABIS = Path(__file__).resolve().parent / "abi.json"
PACKAGED_BYTECODE = Path(__file__).resolve().parent / "bytecode.json"

Artifact = dict[str, Any]


def build_dir(root: Path | None = None) -> Path:
    """``<root>/build/contracts`` (root: the project root)."""
    base = paths.project_root() if root is None else Path(root).resolve()
    return base / "build" / "contracts"


def load_dir(build: Path) -> dict[str, Artifact]:
    """Every artifact in a build folder, keyed by contract name (none: an empty dict)."""
    artifacts: dict[str, Artifact] = {}
    for path in sorted(build.glob("*.json")):
        artifact = json.loads(path.read_text())
        artifacts[artifact["contractName"]] = artifact
    return artifacts


def load_artifacts(*, root: Path | None = None) -> dict[str, Artifact]:
    """Every artifact in build/contracts, keyed by contract name; outside a project with a build,
    the ABIs and bytecode shipped with the package."""
    return load_dir(build_dir(root)) or packaged_artifacts()


def packaged_artifacts() -> dict[str, Artifact]:
    """The ABIs and creation bytecode shipped in the package, as artifacts keyed by contract name
    (a contract without bytecode, an interface, has its ABI alone)."""
    shipped: dict[str, Any] = json.loads(PACKAGED_ABIS.read_text())
    code: dict[str, Any] = json.loads(PACKAGED_BYTECODE.read_text())
    names = sorted(shipped.keys() | code.keys())
    return {
        name: {"contractName": name, "abi": shipped.get(name, []), **code.get(name, {})}
        for name in names
    }
