"""What every benchmark shares: the machine it ran on, medians, result files and the printed table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bulwark.core import paths
from bulwark.devnet import compiler
from bulwark.devnet.world import WorldError

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


class BenchError(WorldError):
    """A benchmark could not set up or check what it measures."""


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_mb() -> int:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
    return int(pages * size // 2**20)


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _npm_version(package: str) -> str:
    try:
        manifest = paths.toolchain_file(f"node_modules/{package}/package.json")
    except paths.ToolchainMissingError:
        return "missing"
    return str(json.loads(manifest.read_text())["version"])


@cache
def machine() -> dict[str, Any]:
    """The machine and toolchain a figure was measured on."""
    try:
        anvil = _first_line([str(paths.node_bin("anvil")), "--version"])
        anvil = anvil.removeprefix("anvil").strip().removeprefix("Version:").strip()
    except paths.ToolchainMissingError:
        anvil = "missing"
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_mb": _memory_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": _first_line(["node", "--version"]),
        "anvil": anvil,
        "solc": _npm_version("solc"),
        "web3": _package_version("web3"),
        "numpy": _package_version("numpy"),
    }


def machine_line(m: dict[str, Any] | None = None) -> str:
    m = m or machine()
    return (
        f"{m['cpu_model']}, {m['cores']} cores, {m['memory_mb'] // 1024} GiB; Python {m['python']}, "
        f"node {m['node']}, anvil {str(m['anvil']).removeprefix('Version: ')}, solc {m['solc']}, "
        f"numpy {m['numpy']}"
    )


def _git_commit() -> str:
    root = paths.project_root()
    commit = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    return commit if len(commit) < 20 else "unknown"


def provenance() -> dict[str, Any]:
    """Date, commit and contract-source hash, so a figure can be tied to what was measured."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": _git_commit(),
        "contracts_source_hash": compiler.source_hash()[:16],
        "machine": machine(),
    }


def median(values: Iterable[float]) -> float:
    data = list(values)
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    VmHWM from /proc, not getrusage's ru_maxrss: Linux carries ru_maxrss across execve, so a child
    started from a large parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Writes results/<name>.json with the provenance beside the figures."""
    directory = out_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    data = {"bench": name, **provenance(), **payload}
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def read_result(name: str, out_dir: Path | None = None) -> dict[str, Any] | None:
    path = (out_dir or RESULTS_DIR) / f"{name}.json"
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@dataclass(frozen=True)
class Row:
    """One line of the printed table: what, the figure, its target, and whether it is met."""

    section: str
    item: str
    value: str
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")


def markdown_table(
    rows: Sequence[Row], headers: Sequence[str] = ("", "measured", "target", "")
) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for r in rows:
        lines.append(f"| {r.item} | {r.value} | {r.target} | {r.verdict} |")
    return "\n".join(lines)


def text_table(rows: Sequence[Row]) -> str:
    """A plain table for the terminal, grouped by section."""
    width_item = max((len(r.item) for r in rows), default=10)
    width_value = max((len(r.value) for r in rows), default=10)
    width_target = max((len(r.target) for r in rows), default=6)
    out: list[str] = []
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            out.append(f"\n== {section}")
        out.append(
            f"  {r.item:<{width_item}}  {r.value:>{width_value}}  {r.target:<{width_target}}  {r.verdict}"
        )
    return "\n".join(out).lstrip("\n")


def fmt_gas(gas: float) -> str:
    return f"{gas:,.0f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.2f} ms" if ms < 10 else f"{ms:,.1f} ms"


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.2f} s"
