"""The codebase's own checks: ruff (rules and formatting, line length 100) and mypy --strict on the
bulwark package, with the settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bulwark.core import paths

ROOT = paths.project_root()
BIN = Path(sys.executable).parent
TARGETS = ["bulwark", "tests", "bench", "scripts"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    "argv",
    [
        ("ruff", "check", *TARGETS),
        ("ruff", "format", "--check", *TARGETS),
        ("mypy",),
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_codebase_passes(argv: tuple[str, ...]) -> None:
    done = _run(str(BIN / argv[0]), *argv[1:])
    assert done.returncode == 0, done.stdout[-5_000:] + done.stderr[-2_000:]
