"""The contracts' ABIs: from the checkout's build when there is one, else the copy this package
ships (``bulwark/core/abi.json``, rewritten by ``make abi``), so that an installed keeper or command
line talks to a deployment without the repository, Node or a compiler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bulwark.core import paths

PACKAGED_ABIS = Path(__file__).resolve().parent / "abi.json"

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
    the ABIs shipped with the package (no bytecode: enough to call and decode, not to deploy)."""
    return load_dir(build_dir(root)) or packaged_artifacts()


def packaged_artifacts() -> dict[str, Artifact]:
    """The ABIs shipped in the package, as artifacts without bytecode, keyed by contract name."""
    shipped: dict[str, Any] = json.loads(PACKAGED_ABIS.read_text())
    return {name: {"contractName": name, "abi": abi} for name, abi in shipped.items()}
