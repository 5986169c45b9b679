"""Slither over contracts/: every finding must be explained in docs/slither-triage.json (and
docs/security.md), or this test fails and names it.

Slither compiles through crytic-compile's Foundry integration, so it uses foundry.toml and with it
tools/solc.js: no native solc, nothing downloaded but the PyPI package. slither-analyzer pins
web3 < 8 while the keeper needs web3 8, so it lives in its own virtualenv, .venv/slither, created
here on first use (pip from PyPI) unless BULWARK_SLITHER names a slither executable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import toolvenv

from bulwark.core import paths

REPO = Path(__file__).resolve().parents[1]
TRIAGE = REPO / "docs" / "slither-triage.json"
SLITHER_VERSION = "0.11.6"
REPORT = REPO / "cache" / "slither" / "report.json"


def _slither() -> Path:
    return toolvenv.tool(
        "slither", f"slither-analyzer=={SLITHER_VERSION}", "slither", "BULWARK_SLITHER"
    )


def _where(description: str) -> str:
    """Slither's element name from the first line of a finding, with parameter lists removed."""
    head = description.split("\n", 1)[0].split(" (", 1)[0]
    for prefix in ("Reentrancy in ", "Event "):
        head = head.removeprefix(prefix)
    out: list[str] = []
    depth = 0
    for ch in head:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip()


def _run_slither() -> list[dict[str, Any]]:
    forge_dir = paths.node_bin("forge").parent
    env = {
        **os.environ,
        "PATH": f"{forge_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # Build apart from `forge test` (out/, cache/) so both can run.
        "FOUNDRY_OUT": "cache/slither/out",
        "FOUNDRY_CACHE_PATH": "cache/slither/cache",
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(_slither()), "contracts", "--json", str(REPORT), "--filter-paths", "node_modules"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if not REPORT.exists():
        pytest.fail(f"slither wrote no report (exit {proc.returncode}):\n{proc.stderr[-5_000:]}")
    report = json.loads(REPORT.read_text())
    if not report.get("success"):
        pytest.fail(f"slither failed: {report.get('error')}\n{proc.stderr[-5_000:]}")
    analyzed = re.search(r"(\d+) contracts with \d+ detectors", proc.stderr + proc.stdout)
    tail = proc.stderr[-3_000:]
    assert analyzed and int(analyzed.group(1)) >= 10, f"slither analysed too little:\n{tail}"
    detectors: list[dict[str, Any]] = report.get("results", {}).get("detectors", [])
    return detectors


def _triaged() -> set[tuple[str, str]]:
    entries = json.loads(TRIAGE.read_text())["findings"]
    return {(e["check"], e["where"]) for e in entries}


def test_triage_file_entries_are_explained() -> None:
    entries = json.loads(TRIAGE.read_text())["findings"]
    keys = [(e["check"], e["where"]) for e in entries]
    assert len(keys) == len(set(keys)), "duplicate triage entries"
    for e in entries:
        assert e["disposition"] and len(e["why"]) > 10, e


def test_slither_finds_nothing_unexplained() -> None:
    findings = _run_slither()
    known = _triaged()
    unexplained = [
        f"{f['check']} [{f['impact']}] {f['description'].splitlines()[0]}"
        for f in findings
        if (f["check"], _where(f["description"])) not in known
    ]
    assert not unexplained, "explain or fix in docs/slither-triage.json:\n" + "\n".join(unexplained)
