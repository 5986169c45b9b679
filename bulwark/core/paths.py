"""Where Bulwark's files live, wherever a command is run from.

The project root is, in order:

1. the ``BULWARK_HOME`` environment variable, if set;
2. the nearest directory at or above the working directory holding both ``contracts/`` and
   ``package.json``;
3. the repository this package was installed from (two levels above this file), which is
   right for an editable install.

Toolchain files (``tools/solc.js``, ``node_modules/...``) are looked up in the project root first
and then in the repository this package came from, so a scratch project (a temp dir with only
``contracts/``) can still use the installed compiler and Anvil.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

HOME_ENV = "BULWARK_HOME"

# bulwark/core/paths.py: the checkout is three folders up (in an installed package, site-packages).
_PACKAGE_REPO = Path(__file__).resolve().parents[2]


class ToolchainMissingError(FileNotFoundError):
    """A file of the offline toolchain (solc.js, node_modules, a Foundry binary) is missing."""


def _is_project_root(directory: Path) -> bool:
    return (directory / "contracts").is_dir() and (directory / "package.json").is_file()


def project_root() -> Path:
    """The Bulwark project directory (see the module docstring for how it is found)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for directory in (cwd, *cwd.parents):
        if _is_project_root(directory):
            return directory
    return _PACKAGE_REPO


def contracts_dir() -> Path:
    """``<root>/contracts``: the Solidity sources."""
    return project_root() / "contracts"


def build_dir() -> Path:
    """``<root>/build/contracts``: one JSON artifact per contract."""
    return project_root() / "build" / "contracts"


def toolchain_file(relative: str, root: Path | None = None) -> Path:
    """A toolchain file, from the project root (or ``root``) or else from this package's repository.

    Raises:
        ToolchainMissingError: when neither has it; the message says how to install it.
    """
    root = project_root() if root is None else root
    for base in dict.fromkeys((root, _PACKAGE_REPO)):
        candidate = base / relative
        if candidate.exists():
            return candidate
    raise ToolchainMissingError(
        f"{relative} not found in {root}"
        + (f" or {_PACKAGE_REPO}" if root != _PACKAGE_REPO else "")
        + f": run `make` (or `npm ci`) in {_PACKAGE_REPO} to install the toolchain"
    )


def _platform_suffix() -> str:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(
        platform.system(), platform.system().lower()
    )
    machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    return f"{system}-{machine}"


def node_bin(name: str) -> Path:
    """Path of a Foundry binary (``anvil``, ``forge``, ``cast``) from its npm platform package.

    This is the native executable itself, not the npm wrapper script, so that signals sent to
    it reach the real process.
    """
    return toolchain_file(f"node_modules/@foundry-rs/{name}-{_platform_suffix()}/bin/{name}")


def solc_script() -> Path:
    """``tools/solc.js``: solc-js behind native solc's command line."""
    return toolchain_file("tools/solc.js")


def node_modules() -> Path:
    """The ``node_modules`` directory the toolchain uses."""
    return toolchain_file("node_modules")


STATE_ENV = "XDG_STATE_HOME"


def state_dir() -> Path:
    """The user's state directory for Bulwark: ``$XDG_STATE_HOME/bulwark``, else
    ``~/.local/state/bulwark`` (the XDG base directory default). Nothing in the checkout."""
    base = os.environ.get(STATE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".local" / "state"
    return root / "bulwark"


def keeper_state_dir() -> Path:
    """``<state dir>/keeper``: the keeper's checkpoints and locks."""
    return state_dir() / "keeper"


LOCAL_CHAIN_IDS = frozenset({31337, 1337})


def deployment_file(chain_id: int) -> Path:
    """Where a deployment file goes when ``--deployment`` (or ``BULWARK_DEPLOYMENT``) does not say.

    A local development chain (31337, 1337) keeps ``deployments/<chainId>.json`` in the project,
    where the wallet page, Brownie and the demo read it; it dies with the chain. Any other chain's
    deployment is state worth keeping and goes to ``<state dir>/deployments/<chainId>.json``,
    unless a file from before already sits in the project (then that one is used)."""
    project = project_root() / "deployments" / f"{chain_id}.json"
    if chain_id in LOCAL_CHAIN_IDS:
        return project
    state = state_dir() / "deployments" / f"{chain_id}.json"
    return project if project.is_file() and not state.is_file() else state
