"""bench/RESULTS.md from the JSON results: the tables (with date and machine) and the gas profiles.

Only the parts between the ``<!-- bench:... -->`` markers are rewritten; the analysis written around
them stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, fmt_gas, fmt_ms, machine_line, read_result

RESULTS_MD = BENCH_DIR / "RESULTS.md"
SECTIONS = ("tables", "profile")

_SKELETON = """# Benchmarks

Produced by `make bench` (`python -m bench`); the raw figures are in bench/results/*.json. The tables
between the markers are rewritten by every run.

<!-- bench:tables:begin -->
<!-- bench:tables:end -->

## Where the gas goes

<!-- bench:profile:begin -->
<!-- bench:profile:end -->
"""


def _status(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "**missed**")


def _measured(r: Mapping[str, Any]) -> str:
    return (f"_Measured {r['date']} at commit `{r['git_commit']}` (contracts `{r['contracts_source_hash']}`) on "
            f"{machine_line(r['machine'])}._")  # fmt: skip


def gas_md(r: Mapping[str, Any]) -> str:
    lines = [
        "### Gas per operation",
        "",
        _measured(r),
        f"_Median of {r['runs']} runs on Anvil with the real deployment (gas is deterministic: the runs "
        "agree). " + " ".join(r.get("notes", [])) + "_",
        "",
        "| operation | gas | target | | GMX v1 (quoted) |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for op in r["ops"].values():
        target = fmt_gas(op["target"]) if op["target"] else ""
        gmx = fmt_gas(op["gmx_v1_quoted"]) if op.get("gmx_v1_quoted") else ""
        lines.append(
            f"| {op['label']} | {fmt_gas(op['gas_median'])} | {target} | {_status(op['met'])} | {gmx} |"
        )
    b = r.get("batch", {})
    if "marginal" in b:
        lines.append(f"| liquidateBatch, marginal per account (10 to 50) | {fmt_gas(b['marginal'])} | "
                     f"{fmt_gas(b['marginal_target'])} | {_status(b['marginal_met'])} | |")  # fmt: skip
    for n in (1, 10, 50):
        if f"per_account_{n}" in b:
            lines.append(
                f"| liquidateBatch of {n}, per account | {fmt_gas(b[f'per_account_{n}'])} | | | |"
            )
    if r.get("adl_marginal_per_target") is not None:
        lines.append(
            f"| autoDeleverage, marginal per target | {fmt_gas(r['adl_marginal_per_target'])} | | | |"
        )
    return "\n".join(lines)


def screening_md(r: Mapping[str, Any]) -> str:
    lines = [
        "### Keeper screening per price tick",
        "",
        _measured(r),
        f"_Median over ticks, median of {r['runs']} runs, each case in a fresh interpreter (its peak RSS "
        f"includes Python and its imports: {r['baseline_rss_mb']:.0f} MB for numpy alone)._",
        "",
        "| kernel | accounts x markets | per tick | p95 | peak RSS | target | |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    names = {"keeper": "`bulwark.keeper.screening.screen`", "core": "numpy core, arrays resident"}
    for c in r["cases"]:
        target = "< 50 ms, < 300 MB" if c["target_seconds"] else ""
        lines.append(
            f"| {names.get(c['kernel'], c['kernel'])} | {c['accounts']:,} x {c['markets']} | "
            f"{fmt_ms(c['seconds_median'])} | {fmt_ms(c['seconds_p95'])} | "
            f"{c['peak_rss_mb']:,.0f} MB | {target} | {_status(c['met'])} |"
        )
    lines += ["", *(f"- {names.get(k, k)}: {v}" for k, v in r.get("kernels", {}).items())]
    return "\n".join(lines)


def e2e_md(r: Mapping[str, Any]) -> str:
    lines = [
        "### End to end: 1,000 accounts, a -20% update, liquidated",
        "",
        _measured(r),
        f"_`{r['node']}`; {r['runs']} replay(s) per driver from one setup, the median shown "
        f"({r['runs_note']}). Blocks count from the block with the update to the block with the last "
        "liquidation; the floor is ceil(gas used by all liquidations / 30M); gas limit use is gas used / "
        "gas limit of the liquidation transactions._",
        "",
        "| driver | liquidated | txs | gas used | gas limit use | floor + 1 | blocks | chain s | wall s | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    short = {"default": "keeper, default settings", "tuned": "keeper, larger batches",
             "reference": "reference driver (not the keeper)"}  # fmt: skip
    for kind, c in r["configs"].items():
        use = f"{c['gas_used_over_limit']:.0%}" if "gas_used_over_limit" in c else ""
        lines.append(
            f"| {short.get(kind, kind)} | {c['liquidations_mined']:,} | {c['transactions']} | "
            f"{fmt_gas(c['liquidation_gas_total'])} | {use} | {c['blocks_target']} | {c['blocks']} | "
            f"{c['chain_seconds']} | {c['wall_seconds']:.1f} | {_status(c['met'])} |"
        )
    lines.append("")
    lines += [f"- {short.get(kind, kind)}: {c['driver']}" for kind, c in r["configs"].items()]
    return "\n".join(lines)


def build_md(r: Mapping[str, Any]) -> str:
    cold, cached, tests = r["cold_compile"], r["cached_compile"], r["tests_collected"]
    suite = r.get("suite")
    sizes = r.get("contract_sizes") or {}
    big = ", ".join(f"{k} {v:,}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:4])
    lines = [
        "### Build and test times",
        "",
        _measured(r),
        "",
        "| what | time |",
        "| --- | ---: |",
        f"| cold compile of contracts/ ({cold['artifacts']} artifacts), median of {r['runs']} | "
        f"{cold['seconds']:.2f} s ({cold['process_seconds']:.2f} s with interpreter start-up) |",
        f"| cached compile (source hash matches) | {cached['seconds'] * 1000:.1f} ms "
        f"({cached['fresh_interpreter_seconds']:.2f} s in a fresh interpreter) |",
        f"| `pytest --collect-only` | {tests['tests']} tests, {tests['seconds']:.2f} s |",
        "| `pytest -q` (full suite) | "
        + (
            f"{suite['seconds']:.1f} s ({suite['summary']}) |"
            if suite
            else "not measured (`--suite`) |"
        ),
        "",
        f"Deployed sizes (bytes, limit {r['code_size_limit']:,}): {big}.",
    ]
    return "\n".join(lines)


def profile_md(r: Mapping[str, Any]) -> str:
    profiles = r.get("profiles") or {}
    if not profiles:
        return (
            "_No profile in the last gas run (run `python -m bench gas` without `--no-profile`)._"
        )
    lines = [
        "Attributed from Anvil's step trace (`debug_traceTransaction`, `--steps-tracing`) by bench/profile.py:"
        " each step's cost goes to the contract whose code ran, the Solidity function of the instruction "
        "(from the compiler's source maps; the optimizer shares code between functions, so function "
        "figures are approximate), the opcode class, and the storage slot, named through the storage "
        "layout.",
    ]
    for key, p in profiles.items():
        label = r["ops"].get(key, {}).get("label", key)
        lines += ["", f"#### {label}: {fmt_gas(p['gas_used'])} gas", ""]
        lines.append(
            f"Intrinsic (21,000 + calldata) {fmt_gas(p['intrinsic'])}; refund {fmt_gas(p['refund'])}."
        )
        lines += ["", "| by opcode class | gas | count |", "| --- | ---: | ---: |"]
        lines += [
            f"| {k} | {fmt_gas(v)} | {p['class_counts'].get(k, '')} |"
            for k, v in p["by_class"].items()
        ]
        lines += ["", "| by contract (own code) | gas |", "| --- | ---: |"]
        lines += [f"| {k} | {fmt_gas(v)} |" for k, v in p["by_contract"].items() if v]
        lines += [
            "",
            "| external calls | count | gas incl. callee | call overhead |",
            "| --- | ---: | ---: | ---: |",
        ]
        for k, v in sorted(p["calls"].items(), key=lambda kv: -kv[1]["inclusive_gas"]):
            lines.append(
                f"| {k} | {v['count']} | {fmt_gas(v['inclusive_gas'])} | {fmt_gas(v['call_overhead_gas'])} |"
            )
        top = list(p["by_function"].items())[:10]
        lines += ["", "| by function (top 10) | gas |", "| --- | ---: |"]
        lines += [f"| {k} | {fmt_gas(v)} |" for k, v in top]
        lines += [
            "",
            "| storage slot (top 12) | SLOAD | SSTORE | gas |",
            "| --- | ---: | ---: | ---: |",
        ]
        for s in p["storage"][:12]:
            lines.append(
                f"| {s['contract']}: `{s['slot']}` | {s['sload']} | {s['sstore']} | {fmt_gas(s['gas'])} |"
            )
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "gas": gas_md,
    "screening": screening_md,
    "e2e": e2e_md,
    "compile": build_md,
}


def _replace(text: str, section: str, body: str) -> str:
    begin, end = f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body.strip()}\n{end}{tail}"


def write(results_dir: Path | None = None, path: Path = RESULTS_MD) -> Path:
    """Rewrites the generated parts of RESULTS.md from whatever results exist."""
    text = path.read_text() if path.is_file() else _SKELETON
    parts = []
    for name, render in RENDERERS.items():
        result = read_result(name, results_dir)
        if result is not None:
            parts.append(render(result))
    text = _replace(text, "tables", "\n\n".join(parts) or "_No results yet: run `make bench`._")
    gas = read_result("gas", results_dir)
    text = _replace(text, "profile", profile_md(gas) if gas else "_No gas results yet._")
    path.write_text(text)
    return path
