"""The layers of docs/architecture.md, enforced: every module's imports (parsed, not run) go down or
sideways only, only the command line reads argv and the environment, and every error the package
defines derives from keeper.errors.BulwarkError. Known departures are listed with their reason; a new
one fails, and so does a listed one that has gone (the list must shrink with the code)."""

from __future__ import annotations

import ast
import inspect
import pkgutil
from importlib import import_module
from pathlib import Path

import keeper
from keeper.errors import BulwarkError

ROOT = Path(keeper.__file__).parent

LAYERS: dict[str, set[str]] = {
    "core": {"errors", "units", "riskmath", "paths", "logs"},
    "chain": {"rpc", "chain", "sender"},
    "keeper": {
        "daemon",
        "decisions",
        "prorata",
        "screening",
        "metrics",
        "config",
        "index",
        "status",
    },
    "devnet": {"node", "compiler", "deploy"},
    "sim": {"stress", "sweep", "report", "scenarios", "demo", "invariants"},
    "cli": {"cli"},
}
# which layers a layer may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "chain": {"core"},
    "keeper": {"core", "chain"},
    "devnet": {"core", "chain"},
    "sim": {"core", "chain", "keeper", "devnet"},
    "cli": {"core", "chain", "keeper", "devnet", "sim"},
}
KNOWN_EDGES: dict[tuple[str, str], str] = {
    ("chain", "compiler"): "Bulwark() loads the ABIs from build/ when there is one, else the "
    "packaged keeper/abi.json; the loader lives in the compiler",
    ("sender", "index"): "the sender takes the pending block from keeper.index's names "
    "(BlockRef, rpc_batch); they live in keeper.rpc and the import can move there",
    ("sender", "metrics"): "the sender counts replacements and outcomes on the keeper's metrics",
    ("status", "invariants"): "status shows the solvency identities the invariant checker computes",
}
ENV_READERS: dict[str, str] = {
    "config": "the settings loader reads BULWARK_KEEPER_* (KeeperSettings() alone reads nothing)",
    "paths": "where tools and state live: BULWARK_HOME and XDG_STATE_HOME",
    "chain": "account_from_keystore reads BULWARK_KEYSTORE_PASSWORD where the keystore is opened",
    "compiler": "`python -m keeper.compiler` (make build) parses its own argv",
    "scenarios": "`python -m keeper.scenarios` parses its own argv",
    "stress": "the stress run resolves its signer, node and deployment from BULWARK_PRIVATE_KEY, "
    "BULWARK_RPC and BULWARK_DEPLOYMENT itself",
}
KNOWN_ERRORS: dict[str, str] = {
    "CompileError": "a RuntimeError the build tooling catches by that name",
    "ToolchainMissingError": "a FileNotFoundError: the toolchain's binary is missing",
    "ScenarioError": "a ValueError raised while parsing a scenario file",
    "Simulation": "control flow inside the sender: a simulation reverted, never shown as is",
}


def modules() -> dict[str, Path]:
    """Every module of the package by its name under ``keeper`` (cli modules as ``cli``)."""
    return {
        p.relative_to(ROOT).with_suffix("").as_posix(): p
        for p in sorted(ROOT.rglob("*.py"))
        if p.name != "__init__.py" or p.parent != ROOT
    }


def unit(name: str) -> str:
    """The unit a module belongs to for the layer rule: its file name, or ``cli`` for keeper/cli/*."""
    return "cli" if name == "cli" or name.startswith("cli/") or name.startswith("cli.") else name


def layer_of(name: str) -> str:
    u = unit(name)
    found = [layer for layer, members in LAYERS.items() if u in members]
    assert len(found) == 1, f"keeper/{name}.py is in no layer (or in several): {found}"
    return found[0]


def imported(path: Path) -> set[str]:
    """The keeper modules a file imports (at any depth: imports inside functions count too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "keeper" or len(parts) < 2:
                continue
            if parts[1] == "cli":
                out.add("cli")
            elif (ROOT / f"{parts[1]}.py").is_file():
                out.add(parts[1])
    return out


def edges() -> set[tuple[str, str]]:
    found = set()
    for name, path in modules().items():
        for target in imported(path):
            if unit(name) != target:
                found.add((unit(name), target))
    return found


def test_every_module_is_in_exactly_one_layer() -> None:
    for name in modules():
        layer_of(name)


def test_imports_go_down_the_layers() -> None:
    forbidden = {
        (a, b)
        for a, b in edges()
        if layer_of(b) != layer_of(a) and layer_of(b) not in ALLOWED[layer_of(a)]
    }
    new = sorted(forbidden - set(KNOWN_EDGES))
    assert not new, f"imports against the layers (docs/architecture.md): {new}"
    gone = sorted(set(KNOWN_EDGES) - forbidden)
    assert not gone, f"listed as known exceptions but no longer there (remove them): {gone}"


def test_the_keeper_runs_without_devnet_or_sim() -> None:
    """What an operator installs: the daemon's imports, transitively, reach no compiler, node,
    deployer or simulator except through the listed edges."""
    graph: dict[str, set[str]] = {}
    for a, b in edges():
        graph.setdefault(a, set()).add(b)
    seen, todo = set(), ["daemon"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [t for t in graph.get(m, ()) if (m, t) not in KNOWN_EDGES]
    assert not {m for m in seen if layer_of(m) in ("devnet", "sim", "cli")}, sorted(seen)


def reads_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in {("os", "environ"), ("sys", "argv"), ("os", "getenv")}
        ):
            return True
    return False


def test_only_the_command_line_reads_argv_and_the_environment() -> None:
    readers = {unit(n) for n, p in modules().items() if reads_environment(p)} - {"cli"}
    new = sorted(readers - set(ENV_READERS))
    assert not new, f"modules reading argv or the environment outside keeper/cli: {new}"
    gone = sorted(set(ENV_READERS) - readers)
    assert not gone, f"listed as reading the environment but no longer do (remove them): {gone}"


def test_the_package_errors_share_one_root() -> None:
    from keeper import chain

    assert chain.BulwarkError is BulwarkError
    outside = set()
    for info in pkgutil.walk_packages(keeper.__path__, "keeper."):
        if info.name in ("keeper.report", "keeper.demo", "keeper.cli.__main__"):
            continue  # matplotlib at import; __main__ runs the CLI
        module = import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            own = cls.__module__ == info.name and issubclass(cls, BaseException)
            if own and not issubclass(cls, BulwarkError):
                outside.add(name)
    assert outside - set(KNOWN_ERRORS) == set(), "errors outside BulwarkError"
    assert set(KNOWN_ERRORS) <= outside, "listed as outside BulwarkError but no longer are"
