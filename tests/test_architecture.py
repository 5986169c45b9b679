"""The layers of docs/architecture.md, enforced: every module's imports (parsed, not run) go down or
sideways only, only the command line reads argv and the environment, and every error the package
defines derives from bulwark.core.errors.BulwarkError. Known departures are listed with their reason; a new
one fails, and so does a listed one that has gone (the list must shrink with the code)."""

from __future__ import annotations

import ast
import inspect
import pkgutil
import re
from importlib import import_module
from pathlib import Path

import bulwark
from bulwark.core.errors import BulwarkError

ROOT = Path(bulwark.__file__).parent

# The layers are the subpackages of bulwark/; which layers each may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "chain": {"core"},
    "keeper": {"core", "chain"},
    "devnet": {"core", "chain"},
    "sim": {"core", "chain", "keeper", "devnet"},
    "cli": {"core", "chain", "keeper", "devnet", "sim"},
}
KNOWN_EDGES: dict[tuple[str, str], str] = {}
ENV_READERS: dict[str, str] = {
    "keeper.config": "the settings loaders read BULWARK_* (BulwarkSettings() and KeeperSettings() "
    "alone read nothing)",
    "core.paths": "where tools and state live: BULWARK_HOME and XDG_STATE_HOME",
    "devnet.compiler": "`python -m bulwark.devnet.compiler` (make build) parses its own argv",
    "sim.scenarios": "`python -m bulwark.sim.scenarios` parses its own argv",
}
KNOWN_ERRORS: dict[str, str] = {
    "CompileError": "a RuntimeError the build tooling catches by that name",
    "ToolchainMissingError": "a FileNotFoundError: the toolchain's binary is missing",
    "ScenarioError": "a ValueError raised while parsing a scenario file",
    "Simulation": "control flow inside the sender: a simulation reverted, never shown as is",
}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name under ``bulwark`` (``keeper.daemon``); the
    command line's modules all count as ``cli``."""
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("").parts
        if len(rel) < 2:
            assert rel == ("__init__",), f"bulwark/{p.name} is in no layer: put it in a subpackage"
            continue
        out[".".join(rel)] = p
    return out


def unit(name: str) -> str:
    """The unit a module belongs to for the layer rule: its dotted name, or ``cli`` for
    bulwark/cli/*; a subpackage's ``__init__`` is the subpackage."""
    if name == "cli" or name.startswith("cli."):
        return "cli"
    return name.removesuffix(".__init__")


def layer_of(name: str) -> str:
    layer = name.split(".")[0]
    assert layer in ALLOWED, f"bulwark/{layer} is not a layer of docs/architecture.md"
    return layer


def resolve(name: str) -> str | None:
    """The unit a dotted import names: a module, a subpackage, or None outside the package."""
    parts = name.split(".")
    if parts[0] != "bulwark" or len(parts) < 2:
        return None
    if parts[1] == "cli":
        return "cli"
    if len(parts) >= 3 and (ROOT / parts[1] / f"{parts[2]}.py").is_file():
        return f"{parts[1]}.{parts[2]}"
    return parts[1] if (ROOT / parts[1] / "__init__.py").is_file() else None


def imported(path: Path) -> set[str]:
    """The package modules a file imports (at any depth: imports inside functions count too);
    ``from bulwark.core import units`` imports ``core.units``, not the subpackage."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [resolve(a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = resolve(node.module)
            found = [
                full if (full := resolve(f"{node.module}.{a.name}")) != base else base
                for a in node.names
            ]
        else:
            continue
        out.update(u for u in found if u is not None)
    return out


def edges() -> set[tuple[str, str]]:
    found = set()
    for name, path in modules().items():
        for target in imported(path):
            if unit(name) != target:
                found.add((unit(name), target))
    return found


def test_every_module_is_in_a_layer() -> None:
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
    seen, todo = set(), ["keeper.daemon"]
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
    assert not new, f"modules reading argv or the environment outside bulwark/cli: {new}"
    gone = sorted(set(ENV_READERS) - readers)
    assert not gone, f"listed as reading the environment but no longer do (remove them): {gone}"


# Signing and sending a transaction, and a JSON-RPC batch, each have one home in the chain layer.
SENDING = re.compile(r"\.sign_transaction\(|\.send_raw_transaction\(|eth_sendRawTransaction")
BATCHING = re.compile(r"\.make_batch_request\(|\.batch_requests\(")


def test_one_sender_and_one_batching_transport() -> None:
    """Every transaction of the package goes through bulwark.chain.sender (send and wait,
    replace until mined, pipelined) and every JSON-RPC batch through bulwark.chain.rpc."""
    senders = {n for n, p in modules().items() if SENDING.search(p.read_text())}
    batchers = {n for n, p in modules().items() if BATCHING.search(p.read_text())}
    assert senders == {"chain.sender"}, sorted(senders)
    assert batchers == {"chain.rpc"}, sorted(batchers)


def test_the_package_errors_share_one_root() -> None:
    from bulwark.chain import contracts as chain

    assert chain.BulwarkError is BulwarkError
    outside = set()
    for info in pkgutil.walk_packages(bulwark.__path__, "bulwark."):
        if info.name in ("bulwark.sim.report", "bulwark.sim.demo", "bulwark.cli.__main__"):
            continue  # matplotlib at import; __main__ runs the CLI
        module = import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            own = cls.__module__ == info.name and issubclass(cls, BaseException)
            if own and not issubclass(cls, BulwarkError):
                outside.add(name)
    assert outside - set(KNOWN_ERRORS) == set(), "errors outside BulwarkError"
    assert set(KNOWN_ERRORS) <= outside, "listed as outside BulwarkError but no longer are"
