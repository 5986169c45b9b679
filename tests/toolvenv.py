"""Tools that cannot share the project's environment (they pin web3 7), each in its own virtualenv
under .venv/, created from PyPI on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bulwark.core import paths


def tool(name: str, requirement: str, executable: str, override_env: str) -> Path:
    """The path of `executable` from `requirement`, installed into .venv/<name> if missing;
    the environment variable `override_env` may name an existing executable instead."""
    override = os.environ.get(override_env)
    if override:
        return Path(override)
    venv = paths.project_root() / ".venv" / name
    exe = venv / "bin" / executable
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-qq",
                "--disable-pip-version-check",
                requirement,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if pip.returncode != 0 or not exe.exists():
            pytest.fail(f"could not install {requirement} from PyPI:\n{pip.stderr[-3_000:]}")
    return exe


def brownie_cannot_run_scripts_here() -> str | None:
    """Why `brownie run` cannot import the project's scripts from this checkout, or None.

    Brownie imports a script under a module name made of every folder of its absolute path joined
    by dots, so a folder name with a dot in it (a `mktemp -d` folder, `/tmp/tmp.x1`) breaks the import
    (docs/brownie.md, known problems).
    """
    dotted = [part for part in paths.project_root().parts[1:] if "." in part]
    if dotted:
        return f"brownie run cannot import scripts from a path with a dot in {dotted[0]!r}"
    return None
