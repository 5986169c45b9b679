"""Compile and test-suite times, so that they stay small.

- Cold compile: every contract compiled into a temporary copy of contracts/ (``compile_contracts(
  force=True, root=copy)``) in a fresh interpreter, so the wasm compiler is loaded from scratch; the
  project's own build/ is not touched.
- Cached compile: ``compile_contracts()`` when build/ matches the sources (hash check, no compiler),
  in this process and in a fresh interpreter (Python start-up included).
- Tests: ``pytest --collect-only -q`` (how many tests, how long collection takes) always; the full
  ``pytest -q`` wall time only when asked (``python -m bench compile --suite``): it is slow.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row, fmt_ms, fmt_s, median
from bulwark.core import paths
from bulwark.devnet import compiler

_COLD = (
    "import json, sys, time; from pathlib import Path; from bulwark.devnet import compiler; "
    "t = time.perf_counter(); a = compiler.compile_contracts(force=True, root=Path(sys.argv[1])); "
    "print(json.dumps({'seconds': time.perf_counter() - t, 'artifacts': len(a)}))"
)
_CACHED = "from bulwark.devnet import compiler; compiler.compile_contracts()"


def _python(code: str, *args: str, timeout: float = 600) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=timeout, check=False, cwd=paths.project_root())  # fmt: skip
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr.strip()[-1500:]}")
    return wall, out.stdout


def cold_compile() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bulwark-bench-build-") as tmp:
        shutil.copytree(paths.project_root() / "contracts", Path(tmp) / "contracts")
        wall, stdout = _python(_COLD, tmp)
    inner = json.loads(stdout.strip().splitlines()[-1])
    return {"seconds": inner["seconds"], "process_seconds": wall, "artifacts": inner["artifacts"]}


def cached_compile(repeats: int = 20) -> dict[str, Any]:
    compiler.compile_contracts()  # make sure build/ is current
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compiler.compile_contracts()
        times.append(time.perf_counter() - start)
    fresh = [_python(_CACHED)[0] for _ in range(3)]
    return {"seconds": median(times), "fresh_interpreter_seconds": median(fresh)}


def collect_tests() -> dict[str, Any]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, check=False, cwd=paths.project_root())  # fmt: skip
    wall = time.perf_counter() - start
    found = re.search(r"(\d+) tests? collected", out.stdout) or re.search(
        r"collected (\d+) item", out.stdout
    )
    count = (
        int(found.group(1)) if found else sum(1 for line in out.stdout.splitlines() if "::" in line)
    )
    return {"tests": count, "seconds": wall, "exit_code": out.returncode}


def run_suite() -> dict[str, Any]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, check=False, cwd=paths.project_root())  # fmt: skip
    wall = time.perf_counter() - start
    tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return {"seconds": wall, "exit_code": out.returncode, "summary": tail}


def run(runs: int = 3, suite: bool = False) -> dict[str, Any]:
    colds = [cold_compile() for _ in range(runs)]
    result: dict[str, Any] = {
        "runs": runs,
        "cold_compile": {
            "seconds": median(c["seconds"] for c in colds),
            "process_seconds": median(c["process_seconds"] for c in colds),
            "seconds_runs": [c["seconds"] for c in colds],
            "artifacts": colds[0]["artifacts"],
        },
        "cached_compile": cached_compile(),
        "contract_sizes": compiler.contract_sizes(),
        "code_size_limit": compiler.CODE_SIZE_LIMIT,
        "tests_collected": collect_tests(),
        "suite": run_suite() if suite else None,
    }
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    section = "Build and test times"
    cold, cached, tests = (
        result["cold_compile"],
        result["cached_compile"],
        result["tests_collected"],
    )
    out = [
        Row(section, f"cold compile, {cold['artifacts']} artifacts (fresh interpreter)",
            f"{fmt_s(cold['seconds'])} ({fmt_s(cold['process_seconds'])} with start-up)"),
        Row(section, "cached compile (hash matches)",
            f"{fmt_ms(cached['seconds'])} ({fmt_s(cached['fresh_interpreter_seconds'])} fresh interpreter)"),
        Row(section, "pytest --collect-only", f"{tests['tests']} tests in {fmt_s(tests['seconds'])}"),
    ]  # fmt: skip
    sizes = result.get("contract_sizes") or {}
    if "ClearingHouse" in sizes:
        limit = result["code_size_limit"]
        size = sizes["ClearingHouse"]
        out.append(
            Row(
                section,
                "ClearingHouse deployed size",
                f"{size:,} bytes",
                f"<= {limit:,}",
                size <= limit,
            )
        )
    suite = result.get("suite")
    if suite:
        out.append(
            Row(section, "pytest -q (full suite)", f"{fmt_s(suite['seconds'])}: {suite['summary']}")
        )
    else:
        out.append(Row(section, "pytest -q (full suite)", "not run (pass --suite)"))
    return out
