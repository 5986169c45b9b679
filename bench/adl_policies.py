"""``python -m bench.adl_policies``: queue against pro-rata ADL on one shipped crash, side by side.

The fund sweep's comparison (bulwark/sim/sweep.py, ``--compare-policies``) at the fund sizes asked for: one
setup on a fresh local chain, one snapshot, and per fund size a replay under the queue and one under
pro rata (the risk admin's ``setAdlPolicy`` on every market after the revert, before the crash), with
the real keeper daemon. It prints each policy's accounts hit, Gini and largest share of the haircuts,
overshoot, gas and transactions to clear, and writes the sweep's JSON (``comparison``) to ``--out``.
Unlike ``bulwark stress --fund-sweep``, it also takes the population's largest leverage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR
from bulwark.chain.contracts import Bulwark, connect, dev_account
from bulwark.devnet.deploy import deploy_all
from bulwark.devnet.node import AnvilNode
from bulwark.sim import report, sweep
from bulwark.sim.stress import StressConfig, StressRun
from bulwark.sim.sweep import FundSweep, SweepConfig

gini = report.gini  # the coefficient the comparison reports (tests/test_adl_prorata.py pins it)


def compare(
    scenario: str,
    accounts: int,
    seed: int,
    fund_pcts: tuple[float, ...],
    window_cap_pct: float,
    max_leverage: float,
) -> dict[str, Any]:
    """The sweep's comparison on a fresh embedded Anvil; its JSON."""
    admin = dev_account(0)
    with AnvilNode() as node:
        w3 = connect(node.rpc_url, timeout=120)
        bw = Bulwark(w3, deploy_all(w3, admin))
        cfg = StressConfig(
            scenario, accounts=accounts, seed=seed, fund_ratio=0.0, max_leverage=max_leverage
        )
        run = StressRun(bw, cfg, admin)
        result = FundSweep(
            run, SweepConfig(fund_pcts, (window_cap_pct,), compare_policies=True)
        ).execute()
    data = sweep.to_json(result)
    data["run"]["max_leverage"] = max_leverage
    return data


ROWS = (
    ("fund, % of open interest", None, "{:.2f}"),
    ("ADL calls", "adl_transactions", "{:,}"),
    ("accounts hit", "accounts_hit", "{:,}"),
    ("total haircut (USD)", "haircut_total_usd", "{:,.2f}"),
    ("largest share of the haircuts", "largest_share", "{:.1%}"),
    ("Gini of the haircuts (accounts hit under either policy)", "gini_union", "{:.3f}"),
    ("overshoot (USD)", "overshoot_wad", "wad"),
    ("gas, all ADL calls", "adl_gas", "{:,}"),
    ("gas, largest ADL call", "adl_gas_largest_call", "{:,}"),
    ("transactions until the debt was cleared", "txs_to_clear_max", "{:,}"),
    ("socialised to the pool (USD)", "socialized_usd", "{:,.2f}"),
    ("bad debt at the end (USD)", "bad_debt_end_usd", "{:,.2f}"),
)


def table(data: dict[str, Any]) -> str:
    """A markdown table per fund size, the two policies as columns."""
    out = []
    for row in data["comparison"]:
        names = list(row["policies"])
        out += ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for label, key, fmt in ROWS:
            if key is None:
                cells = [fmt.format(row["fund_pct_oi"])] * len(names)
            else:
                values = [row["policies"][n][key] for n in names]
                cells = [
                    "-"
                    if v is None
                    else f"{int(v) / 10**18:,.2f}"
                    if fmt == "wad"
                    else fmt.format(v)
                    for v in values
                ]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adl_policies", description=__doc__)
    p.add_argument("--scenario", default="gap")
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--fund-pcts", default="0", help="fund sizes, %% of open interest, comma-separated"
    )
    p.add_argument("--window-cap", type=float, default=50.0, help="the fund's window cap, %%")
    p.add_argument("--max-leverage", type=float, default=19.0, help="largest trader leverage")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "adl_policies.json")
    args = p.parse_args(argv)
    pcts = sweep.parse_pcts(args.fund_pcts, (0.0,), "--fund-pcts")
    data = compare(
        args.scenario, args.accounts, args.seed, pcts, args.window_cap, args.max_leverage
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
