"""``python -m bench.adl_policies``: queue against pro-rata ADL on one shipped crash, side by side.

Replays the same scenario over the same population (same seed) twice on fresh local chains, once with
every market under the queue policy and once under pro rata (set by the risk admin after the
population is in place and before the crash), with the real keeper daemon, and reads from the chain:
accounts hit, Gini and largest share of the haircuts, overshoot, gas and blocks to clear.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from bench.common import RESULTS_DIR
from bulwark.chain.contracts import Bulwark, connect, dev_account
from bulwark.devnet.deploy import deploy_all, role
from bulwark.devnet.node import AnvilNode
from bulwark.keeper.prorata import POLICY_NAMES, PRO_RATA, QUEUE
from bulwark.sim.stress import Driver, RunResult, StressConfig, StressRun, make_keeper

WAD = 10**18


def gini(values: list[int]) -> float:
    """Gini coefficient of non-negative amounts (0: all equal, towards 1: one pays everything)."""
    xs = sorted(values)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


def run_policy(
    policy: int, scenario: str, accounts: int, seed: int, fund_ratio: float, max_leverage: float
) -> dict[str, Any]:
    """One replay under `policy`; the ADL figures read from its events and receipts."""
    admin = dev_account(0)
    with AnvilNode() as node:
        w3 = connect(node.rpc_url, timeout=120)
        bw = Bulwark(w3, deploy_all(w3, admin))
        # a risk admin of its own: the replay keeps the admin's nonces to itself
        risk_admin = dev_account(7)
        bw.send(bw.ch.functions.grantRole(role("RISK_ADMIN_ROLE"), risk_admin.address), admin)

        def factory(b: Bulwark, keeper: LocalAccount) -> Driver:
            for market in range(int(b.ch.functions.marketCount().call())):
                b.send(b.ch.functions.setAdlPolicy(market, policy), risk_admin, gas=200_000)
            return make_keeper(b, keeper)

        result = StressRun(
            bw,
            StressConfig(
                scenario,
                accounts=accounts,
                seed=seed,
                fund_ratio=fund_ratio,
                max_leverage=max_leverage,
            ),
            admin,
        ).run(factory)
        return figures(bw, result, policy)


def figures(bw: Bulwark, result: RunResult, policy: int) -> dict[str, Any]:
    start, end = result.setup_block, result.end_block
    steps = bw.ch.events.AutoDeleveraged().get_logs(from_block=start, to_block=end)
    recorded = bw.ch.events.BadDebtRecorded().get_logs(from_block=start, to_block=end)
    per_account: dict[str, int] = defaultdict(int)
    per_tx: dict[str, list[Any]] = defaultdict(list)
    for s in steps:
        per_account[s["args"]["account"]] += int(s["args"]["haircutWad"])
        per_tx[s["transactionHash"].hex()].append(s)
    overshoot = 0
    gas: list[int] = []
    for tx_hash, tx_steps in per_tx.items():
        receipt = bw.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        gas.append(int(receipt["gasUsed"]))
        before = int(receipt["blockNumber"]) - 1
        market = int(tx_steps[0]["args"]["marketId"])
        owed = 0
        for side in (0, 1):
            debt = int(bw.ch.functions.badDebtOf(market, side).call(block_identifier=before))
            owed = max(owed, debt)
        available = int(bw.fund.functions.availableWad().call(block_identifier=before))
        taken = sum(int(s["args"]["haircutWad"]) for s in tx_steps)
        overshoot += max(0, taken - max(0, owed - available))
    hit = {a: v for a, v in per_account.items() if v > 0}
    total = sum(hit.values())
    first_debt = min((int(r["blockNumber"]) for r in recorded), default=None)
    last_adl = max((int(s["blockNumber"]) for s in steps), default=None)
    return {
        "policy": POLICY_NAMES[policy],
        "adl_calls": len(per_tx),
        "accounts_hit": len(hit),
        "haircuts": hit,
        "total_haircut_usd": total / WAD,
        "largest_share": (max(hit.values()) / total) if total else 0.0,
        "overshoot_usd": overshoot / WAD,
        "gas_total": sum(gas),
        "gas_largest_call": max(gas, default=0),
        "blocks_to_clear": (last_adl - first_debt) if first_debt is not None and last_adl else 0,
        "bad_debt_recorded_usd": sum(int(r["args"]["amountWad"]) for r in recorded) / WAD,
        "bad_debt_at_end_usd": int(bw.ch.functions.totalBadDebtWad().call()) / WAD,
    }


def compare(
    scenario: str, accounts: int, seed: int, fund_ratio: float, max_leverage: float
) -> dict[str, Any]:
    runs = [
        run_policy(p, scenario, accounts, seed, fund_ratio, max_leverage) for p in (QUEUE, PRO_RATA)
    ]
    # the Gini is over the same accounts in both runs: every account hit under either policy
    everyone = sorted({a for r in runs for a in r["haircuts"]})
    for r in runs:
        r["gini"] = gini([r["haircuts"].get(a, 0) for a in everyone])
        r["haircuts"] = {a: str(v) for a, v in r["haircuts"].items()}
    return {
        "scenario": scenario,
        "accounts": accounts,
        "seed": seed,
        "fund_ratio": fund_ratio,
        "max_leverage": max_leverage,
        "runs": runs,
    }


def table(data: dict[str, Any]) -> str:
    rows = [
        ("ADL calls", "adl_calls", "{:,}"),
        ("accounts hit", "accounts_hit", "{:,}"),
        ("total haircut (USD)", "total_haircut_usd", "{:,.2f}"),
        ("largest share of the haircuts", "largest_share", "{:.1%}"),
        ("Gini of the haircuts (accounts hit under either policy)", "gini", "{:.3f}"),
        ("overshoot (USD)", "overshoot_usd", "{:,.2f}"),
        ("gas, all ADL calls", "gas_total", "{:,}"),
        ("gas, largest ADL call", "gas_largest_call", "{:,}"),
        ("blocks from the first bad debt to the last ADL call", "blocks_to_clear", "{:,}"),
        ("bad debt recorded (USD)", "bad_debt_recorded_usd", "{:,.2f}"),
        ("bad debt at the end (USD)", "bad_debt_at_end_usd", "{:,.2f}"),
    ]
    runs = data["runs"]
    out = ["| | " + " | ".join(r["policy"] for r in runs) + " |", "| --- |" + " --- |" * len(runs)]
    for label, key, fmt in rows:
        out.append(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in runs) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adl_policies", description=__doc__)
    p.add_argument("--scenario", default="gap")
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--fund-ratio", type=float, default=0.04, help="fund seed as a share of traders' collateral"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "adl_policies.json")
    p.add_argument("--max-leverage", type=float, default=19.0, help="largest trader leverage")
    args = p.parse_args(argv)
    data = compare(args.scenario, args.accounts, args.seed, args.fund_ratio, args.max_leverage)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
