"""``python -m bench [gas|screening|e2e|compile ...]``: run benchmarks, write results, print the table.

With no name, all four run (a few minutes). Results go to bench/results/<name>.json (``--out`` for
elsewhere) and the tables into bench/RESULTS.md (unless ``--no-markdown``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import buildtime, e2e, gas, report, screening
from bench.common import RESULTS_DIR, Row, machine_line, text_table, write_result

BENCHES = ("gas", "screening", "e2e", "compile")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHES)} (default: all)"
    )
    p.add_argument("--runs", type=int, default=3, help="repetitions per figure (default 3)")
    p.add_argument(
        "--e2e-runs", type=int, default=1, help="end-to-end replays per driver (default 1)"
    )
    p.add_argument(
        "--e2e-accounts", type=int, default=e2e.ACCOUNTS, help="accounts in the end-to-end run"
    )
    p.add_argument("--suite", action="store_true", help="also time the full test suite (slow)")
    p.add_argument("--no-profile", action="store_true", help="skip the gas profile (step traces)")
    p.add_argument(
        "--out", type=Path, default=None, help="results directory (default bench/results)"
    )
    p.add_argument("--no-markdown", action="store_true", help="do not rewrite bench/RESULTS.md")
    return p


def _runner(name: str, args: argparse.Namespace) -> tuple[Callable[[], dict[str, Any]], Any]:
    if name == "gas":
        return (lambda: gas.run(args.runs, profile=not args.no_profile)), gas.rows
    if name == "screening":
        return (lambda: screening.run(args.runs)), screening.rows
    if name == "e2e":
        return (lambda: e2e.run(args.e2e_runs, args.e2e_accounts)), e2e.rows
    return (lambda: buildtime.run(args.runs, suite=args.suite)), buildtime.rows


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = args.names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"python -m bench: unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHES)})",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.runs < 1 or args.e2e_runs < 1 or args.e2e_accounts < 1:
        print(
            "python -m bench: --runs, --e2e-runs and --e2e-accounts must be at least 1",
            file=sys.stderr,
        )
        return 2
    rows: list[Row] = []
    for name in names:
        run, to_rows = _runner(name, args)
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        result = run()
        result["wall_seconds"] = time.monotonic() - started
        path = write_result(name, result, args.out)
        print(
            f"bench: {name} done in {result['wall_seconds']:.0f} s -> {path}",
            file=sys.stderr,
            flush=True,
        )
        rows += to_rows(result)
    if not args.no_markdown and (args.out is None or args.out == RESULTS_DIR):
        report.write(args.out)
    print(f"\nMachine: {machine_line()}\n")
    print(text_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
