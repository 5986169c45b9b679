"""The Foundry suite under test/foundry, run by the test command: the conservation invariants over a
random sequence of every entry point (fixed seed) and the attack tests.

The default profile runs 50 x 200 = 10,000 handler calls. `BULWARK_DEEP=1` also runs the deep
profile (FOUNDRY_PROFILE=deep, 200 x 500 = 100,000 calls). A failure shows Forge's own output: the
broken law, the shrunk call sequence and the seed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bulwark.core import paths

REPO = Path(__file__).resolve().parents[1]
PATHS_LOG = "out/invariant-paths.jsonl"
CI_MIN_CALLS = 2_000
DEEP_CALLS = 100_000
# Paths the invariant campaign must actually reach, or its checks on them would prove nothing.
MUST_REACH = (
    "trade",
    "hedgedPair",
    "adlAnyCaller",
    "withdraw",
    "liquidate",
    "liquidateBatch",
    "partial",
    "bankrupt",
    "adl",
    "adlStep",
    "coverBadDebt",
    "socialize",
    "claim",
    "lpWithdraw",
    "stake",
    "gap",
    "lapse",
    "lpExitAtMax",
    "adlPolicy",
    "adlProRata",
)
_CALLS = re.compile(r"\[PASS\] invariant_\w+\(\) \(runs: (\d+), calls: (\d+), reverts: (\d+)\)")


def _forge(
    profile: str, *args: str, timeout: int, paths_log: str = ""
) -> subprocess.CompletedProcess[str]:
    forge = paths.node_bin("forge")
    env = {**os.environ, "FOUNDRY_PROFILE": profile, "BULWARK_INVARIANT_LOG": paths_log}
    if paths_log:
        (REPO / paths_log).unlink(missing_ok=True)
    # Forge resolves `solc = "tools/solc.js"` against the working directory: run from the root.
    return subprocess.run(
        [str(forge), "test", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _require_success(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = output[-20_000:]
        pytest.fail(f"forge test failed (exit {proc.returncode}):\n{tail}", pytrace=False)
    return output


def _invariant_calls(output: str) -> int:
    found = _CALLS.findall(output)
    assert found, f"no invariant campaign in forge's output:\n{output[-5_000:]}"
    return sum(int(calls) for _runs, calls, _reverts in found)


def _paths_reached(paths_log: str) -> Counter[str]:
    totals: Counter[str] = Counter()
    for line in (REPO / paths_log).read_text().splitlines():
        totals.update(json.loads(line))
    return totals


def test_forge_suite_passes_with_invariants_over_every_entry_point() -> None:
    proc = _forge("default", timeout=900, paths_log=PATHS_LOG)
    output = _require_success(proc)
    assert _invariant_calls(output) >= CI_MIN_CALLS
    assert re.search(r"\d+ tests passed, 0 failed", output), output[-3_000:]
    reached = _paths_reached(PATHS_LOG)
    missing = [name for name in MUST_REACH if reached[name] == 0]
    assert not missing, f"the invariant campaign never reached {missing}: {dict(reached)}"


@pytest.mark.skipif(os.environ.get("BULWARK_DEEP") != "1", reason="deep run: set BULWARK_DEEP=1")
def test_forge_deep_invariants_100k_calls() -> None:
    log = "out/invariant-paths-deep.jsonl"
    contract = "ConservationInvariantTest"
    proc = _forge("deep", "--match-contract", contract, timeout=3_600, paths_log=log)
    output = _require_success(proc)
    assert _invariant_calls(output) >= DEEP_CALLS
    reached = _paths_reached(log)
    assert all(reached[name] > 0 for name in MUST_REACH), dict(reached)
