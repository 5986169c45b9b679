"""The tests that depend on block time and timing pass while two CPU hogs run beside them.

Two ``yes > /dev/null`` processes take both cores of a small machine (as a busy CI runner would);
a pytest in a subprocess then runs the trading round trip, funding, the sender's replacement and
nonce handling, and the daemon liquidating a crash on one-second blocks. A test among them that
reads the wall clock where it should pin the chain's (a trade landing one second later than
assumed, a deadline too tight for a loaded machine) fails here, and so does this test."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bulwark.core import paths

ROOT = paths.project_root()
HOGS = 2
TIMING_TESTS = (
    "tests/test_smoke_trading.py",
    "tests/test_funding.py",
    "tests/test_keeper_sender.py",
    "tests/test_keeper_daemon.py::test_daemon_liquidates_within_two_blocks_and_reports_metrics",
    "tests/test_keeper_lapse.py",
)


def test_timing_tests_pass_beside_two_cpu_hogs() -> None:
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(HOGS):
            hogs.append(
                subprocess.Popen(
                    ["yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
                )
            )
        time.sleep(0.5)
        assert all(h.poll() is None for h in hogs), "the CPU hogs did not start"
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:xdist",
                "-o",
                "addopts=",
                *TIMING_TESTS,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        seconds = time.monotonic() - started
        assert all(h.poll() is None for h in hogs), "a CPU hog stopped before the tests ended"
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert done.returncode == 0, (
        f"under load ({seconds:.0f} s):\n{done.stdout[-6_000:]}\n{done.stderr[-2_000:]}"
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    print(f"{summary} beside {HOGS} CPU hogs")
