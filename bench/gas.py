"""Gas per operation on a real Anvil node running the real deployment (bulwark.devnet.deploy.deploy_all).

One base state is built once: a seeded pool, a staked insurance fund, a few background traders in
both markets (so market sums are non-zero, as on a live market), 50 accounts at 10 ETH long on
1,600 USDC for the batch liquidations, and ten "actors" holding collateral with every approval
given. Each scenario starts from an EVM snapshot of that state, so scenarios are independent, and
each measured transaction lands alone in a fresh block 12 seconds after the previous one (funding
accrues, as it would on a live chain). Every scenario checks that it measured what it says (a partial
liquidation left a position, a bankrupt one settled a shortfall, a batch skipped nobody, ...).

Gas is deterministic, so the runs agree exactly; they are repeated anyway and the median reported.
With ``profile=True`` the node records steps and the operations above target are traced and their
gas attributed (see bench.profile).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from bench import profile as gas_profile
from bench.common import BenchError, Row, fmt_gas, median
from bulwark.chain.contracts import WAD, dev_account
from bulwark.core.progress import Progress
from bulwark.devnet.world import MAX_UINT, USDC, World, bench_account, wad, world

BLOCK_GAP_SECONDS = 12
BATCH_SIZES = (1, 10, 50)
TX_GAS_LIMIT = 15_000_000
BATCH_MARGINAL_TARGET = 40_000  # issue 15's targets: about half of GMX v1's

# Published GMX v1 Vault figures, quoted as given in the benchmark brief (not measured here).
GMX_V1_QUOTED = {"open": 319_000, "close": 193_000, "liquidate_full": 198_000}


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    target: int | None = None


OPS: tuple[Op, ...] = (
    Op("deposit", "deposit (first, empty account)"),
    Op("deposit_topup", "deposit (top-up)"),
    Op("withdraw", "withdraw (flat account)"),
    Op("withdraw_with_positions", "withdraw (positions in 2 markets)"),
    Op("open", "open position (first in account)", 120_000),
    Op("increase", "increase position"),
    Op("open_second_market", "open in a second market"),
    Op("decrease", "decrease position"),
    Op("close", "close position", 110_000),
    Op("liquidate_partial", "partial liquidation"),
    Op("liquidate_full", "full liquidation", 100_000),
    Op("liquidate_shortfall", "liquidation with shortfall (fund covers)"),
    Op("liquidate_bad_debt", "liquidation with shortfall (partly bad debt)"),
    Op("batch_1", "liquidateBatch, 1 account"),
    Op("batch_10", "liquidateBatch, 10 accounts"),
    Op("batch_50", "liquidateBatch, 50 accounts"),
    Op("adl_1", "autoDeleverage, 1 target", 120_000),
    Op("adl_3", "autoDeleverage, 3 targets"),
    Op("stake", "stake (fund deposit)"),
    Op("request_unstake", "request unstake"),
    Op("claim", "claim unstake"),
    Op("lp_deposit", "LP deposit"),
    Op("lp_withdraw", "LP withdraw"),
)
OPS_BY_KEY = {op.key: op for op in OPS}
PROFILED = (
    "open",
    "increase",
    "close",
    "liquidate_full",
    "liquidate_shortfall",
    "batch_10",
    "adl_1",
)


@dataclass
class GasBench:
    w: World
    profile: bool = False
    batch_count: int = max(BATCH_SIZES)
    runs: dict[str, list[int]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    base: str = ""

    def __post_init__(self) -> None:
        self.bw = self.w.bw
        self.lp = dev_account(1)
        self.staker = dev_account(2)
        self.keeper = dev_account(3)
        self.background = [bench_account(i, "background") for i in range(3)]
        self.batch_accounts = [bench_account(i, "batch") for i in range(self.batch_count)]
        self.actors = [bench_account(i, "actor") for i in range(8)]
        self.labels = {self.keeper.address: "keeper", self.lp.address: "lp"}
        self.labels.update({a.address: f"actor{i}" for i, a in enumerate(self.actors)})
        self.labels.update({a.address: f"batch{i}" for i, a in enumerate(self.batch_accounts)})
        self.labels[self.actors[0].address] = "trader"

    # ------------------------------------------------------------------ base state

    def build_base(self) -> None:
        w = self.w
        # Every block one second after the last (plus any warp), whatever the wall clock does: otherwise
        # two setup transactions may share a timestamp, accrue no funding between them, and leave a zero
        # funding index or basis that a measured transaction then writes from zero (20,000 instead of
        # 2,900): the figures changed from one invocation to the next by 17,100 per such slot. (The
        # interval overrides evm_increaseTime, so it is removed before the first warp.)
        w.rpc("anvil_setBlockTimestampInterval", 1)
        w.seed_pool(3_000_000, self.lp)
        w.stake(100_000, self.staker)
        w.fund_accounts(self.background, [100_000] * len(self.background))
        w.fund_accounts(self.batch_accounts, [1_600] * len(self.batch_accounts))
        w.give_ether([*self.actors, self.keeper])
        # The keeper has been paid before, as any working keeper has: its first reward ever would
        # also create its margin slot (17,100 more gas, once).
        w.fund_accounts([self.keeper], [100])
        w.mint(w.admin.address, 10_000_000)
        for a in self.actors:
            w.sender.send(
                w.admin, self.bw.token.functions.transfer(a.address, 1_000_000 * USDC), gas=80_000
            )
        w.sender.wait()
        for a in self.actors:
            for spender in (self.bw.ch, self.bw.pool, self.bw.fund):
                w.sender.send(
                    a, self.bw.token.functions.approve(spender.address, MAX_UINT), gas=80_000
                )
        w.sender.wait()
        bg = self.background
        w.open_positions(
            [(bg[0], "ETH-USD", wad(5)), (bg[0], "BTC-USD", wad("0.1")),
             (bg[1], "ETH-USD", wad(-20)), (bg[2], "BTC-USD", wad(-1))]
        )  # fmt: skip
        w.open_positions([(a, "ETH-USD", wad(10)) for a in self.batch_accounts])
        w.rpc("anvil_removeBlockTimestampInterval")
        w.warp(600)  # funding accrues on a skewed market
        w.refresh_prices()
        self.base = w.snapshot()

    def fresh(self) -> None:
        self.w.revert(self.base)
        self.base = self.w.snapshot()

    # ------------------------------------------------------------------ measuring

    def send(self, key: str | None, fn: Any, signer: LocalAccount) -> Any:
        """Sends alone in a block 12 s after the last; records gas under `key` (None: not measured)."""
        self.w.next_block_after(BLOCK_GAP_SECONDS)
        # An explicit limit: eth_estimateGas on liquidateBatch finds a limit at which the batch succeeds
        # with its entries skipped for want of gas (the try/catch swallows the inner out-of-gas).
        receipt = self.bw.send(fn, signer, gas=TX_GAS_LIMIT)
        if key is not None:
            self.runs.setdefault(key, []).append(int(receipt["gasUsed"]))
            if self.profile and key in PROFILED and key not in self.profiles:
                self.profiles[key] = self._profile(receipt)
        return receipt

    def _profile(self, receipt: Any) -> dict[str, Any]:
        w3 = self.w.w3
        tx_hash = receipt["transactionHash"].to_0x_hex()
        trace = gas_profile.trace_transaction(w3, tx_hash)
        tx = w3.eth.get_transaction(tx_hash)
        selectors = gas_profile.selectors_from_artifacts(self.bw.artifacts)
        names = self.w.code_names()
        result = gas_profile.analyze(
            trace, tx, int(receipt["gasUsed"]), names, selectors, self.labels
        )
        return result.as_dict()

    def check(self, key: str, ok: bool, what: str) -> None:
        if not ok:
            raise BenchError(f"scenario {key}: {what}")
        self.checks[key] = what

    def trade(self, key: str | None, who: LocalAccount, market: str, size: int) -> Any:
        price = self.w.price_wad(market)
        limit = price * 105 // 100 if size > 0 else price * 95 // 100
        return self.send(
            key, self.bw.ch.functions.trade(self.bw.market_id(market), size, limit), who
        )

    def deposit(self, key: str | None, who: LocalAccount, usdc: int) -> Any:
        return self.send(key, self.bw.ch.functions.deposit(who.address, usdc * USDC), who)

    def events(self, receipt: Any, name: str) -> list[Any]:
        from web3.logs import DISCARD

        return list(getattr(self.bw.ch.events, name)().process_receipt(receipt, errors=DISCARD))

    def size_of(self, who: LocalAccount, market: str = "ETH-USD") -> int:
        return int(
            self.bw.ch.functions.positionOf(who.address, self.bw.market_id(market)).call()[0]
        )

    # ------------------------------------------------------------------ scenarios

    def vault(self) -> None:
        a = self.actors[0]
        self.deposit("deposit", a, 10_000)
        self.deposit("deposit_topup", a, 1_000)
        self.send("withdraw", self.bw.ch.functions.withdraw(1_000 * USDC, a.address), a)
        margin = self.bw.ch.functions.marginOf(a.address).call()
        self.check(
            "vault", margin == 10_000 * WAD, "10,000 margin left after deposits and a withdrawal"
        )

    def trading(self) -> None:
        a = self.actors[0]
        self.deposit(None, a, 10_000)
        self.trade("open", a, "ETH-USD", wad(1))
        self.trade("increase", a, "ETH-USD", wad(1))
        self.trade("open_second_market", a, "BTC-USD", wad("0.05"))
        ch = self.bw.ch.functions
        self.send("withdraw_with_positions", ch.withdraw(1_000 * USDC, a.address), a)
        self.trade("decrease", a, "ETH-USD", wad(-1))
        self.trade("close", a, "ETH-USD", wad(-1))
        self.check("trading", self.size_of(a) == 0, "the ETH position is flat after the close")

    def _liquidation(self, key: str | None, price: float, margin: int, size: float) -> Any:
        a = self.actors[0]
        self.deposit(None, a, margin)
        self.trade(None, a, "ETH-USD", wad(size))
        self.w.set_price("ETH-USD", price)
        return self.send(key, self.bw.ch.functions.liquidate(a.address, 0), self.keeper)

    def liquidate_partial(self) -> None:
        r = self._liquidation("liquidate_partial", 2900, 1_600, 10)
        (ev,) = self.events(r, "Liquidated")
        left = self.size_of(self.actors[0])
        self.check(
            "liquidate_partial",
            0 < left < wad(10) and not ev.args.bankrupt,
            "half closed, not bankrupt",
        )

    def liquidate_full(self) -> None:
        r = self._liquidation("liquidate_full", 2860, 1_600, 10)
        (ev,) = self.events(r, "Liquidated")
        ok = self.size_of(self.actors[0]) == 0 and not ev.args.bankrupt
        self.check("liquidate_full", ok, "closed in full, not bankrupt")

    def liquidate_shortfall(self) -> None:
        r = self._liquidation("liquidate_shortfall", 2830, 1_600, 10)
        (ev,) = self.events(r, "Liquidated")
        (settled,) = self.events(r, "ShortfallSettled")
        ok = ev.args.bankrupt and settled.args.shortfallWad > 0 and settled.args.badDebtWad == 0
        self.check("liquidate_shortfall", ok, "bankrupt, shortfall covered in full by the fund")

    def _bad_debt_state(self, key: str | None) -> Any:
        """actor0 300 ETH long on 46k goes bankrupt at 2,400: the fund pays its window cap, the rest
        becomes bad debt on the long side; actors 1-3 hold profitable 50 ETH shorts to deleverage."""
        for s in self.actors[1:4]:
            self.deposit(None, s, 20_000)
            self.trade(None, s, "ETH-USD", wad(-50))
        return self._liquidation(key, 2400, 46_000, 300)

    def liquidate_bad_debt(self) -> None:
        r = self._bad_debt_state("liquidate_bad_debt")
        (settled,) = self.events(r, "ShortfallSettled")
        available = self.bw.fund.functions.availableWad().call()
        ok = settled.args.badDebtWad > 0 and available == 0
        self.check(
            "liquidate_bad_debt",
            ok,
            "fund paid its window cap, the rest is bad debt; fund exhausted",
        )

    def adl(self) -> None:
        self._bad_debt_state(None)
        shorts = [a.address for a in self.actors[1:4]] + [self.background[1].address]
        scores = dict(zip(shorts, self.bw.ch.functions.adlScoresOf(0, shorts).call(), strict=True))
        ranked = sorted((a for a in shorts if scores[a] > 0), key=lambda a: -scores[a])
        snap = self.w.snapshot()
        r = self.send("adl_1", self.bw.ch.functions.autoDeleverage(0, ranked[:1]), self.keeper)
        steps = self.events(r, "AutoDeleveraged")
        self.check(
            "adl_1",
            len(steps) == 1 and steps[0].args.haircutWad > 0,
            "one target closed, haircut taken",
        )
        self.w.revert(snap)
        r = self.send("adl_3", self.bw.ch.functions.autoDeleverage(0, ranked[:3]), self.keeper)
        self.check(
            "adl_3", len(self.events(r, "AutoDeleveraged")) == 3, "three targets deleveraged"
        )

    def batch(self, n: int) -> None:
        self.w.set_price("ETH-USD", 2860)
        accounts = [a.address for a in self.batch_accounts[:n]]
        key = f"batch_{n}"
        r = self.send(key, self.bw.ch.functions.liquidateBatch(accounts, [0] * n), self.keeper)
        liquidated = self.events(r, "Liquidated")
        skipped = self.events(r, "LiquidationSkipped")
        ok = len(liquidated) == n and not skipped and not any(e.args.bankrupt for e in liquidated)
        self.check(key, ok, f"{n} full liquidations, none skipped")

    def fund(self) -> None:
        a = self.actors[4]
        f = self.bw.fund.functions
        self.send("stake", f.deposit(10_000 * USDC, a.address), a)
        shares = f.balanceOf(a.address).call()
        self.send("request_unstake", f.requestUnstake(shares // 2), a)
        request_id = f.nextRequestId().call() - 1
        self.w.warp(7 * 24 * 3600 + 1)
        r = self.send("claim", f.claim(request_id), a)
        self.check("fund", r["status"] == 1 and f.balanceOf(a.address).call() == shares - shares // 2,
                   "half the shares claimed after the cooldown")  # fmt: skip

    def pool(self) -> None:
        a = self.actors[5]
        p = self.bw.pool.functions
        self.send("lp_deposit", p.deposit(10_000 * USDC, a.address), a)
        self.w.warp(4 * 24 * 3600 + 1)
        self.w.refresh_prices()
        shares = p.balanceOf(a.address).call()
        self.send("lp_withdraw", p.redeem(shares // 2, a.address, a.address), a)
        self.check(
            "pool",
            p.balanceOf(a.address).call() == shares - shares // 2,
            "half the shares redeemed",
        )

    def scenarios(self, only: Sequence[str] | None = None) -> list[tuple[str, Callable[[], None]]]:
        every: list[tuple[str, Callable[[], None]]] = [
            ("vault", self.vault),
            ("trading", self.trading),
            ("liquidate_partial", self.liquidate_partial),
            ("liquidate_full", self.liquidate_full),
            ("liquidate_shortfall", self.liquidate_shortfall),
            ("liquidate_bad_debt", self.liquidate_bad_debt),
            ("adl", self.adl),
            *[(f"batch_{n}", lambda n=n: self.batch(n)) for n in BATCH_SIZES],
            ("fund", self.fund),
            ("pool", self.pool),
        ]
        return [s for s in every if only is None or s[0] in only]


# ---------------------------------------------------------------------------- running and reporting


def run(
    runs: int = 3, *, profile: bool = True, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """Measures every operation `runs` times; returns the JSON-ready results."""
    if runs < 1:
        raise BenchError("runs must be at least 1")
    with world(steps_tracing=profile) as w:
        sizes = [n for n in BATCH_SIZES if only is None or f"batch_{n}" in only]
        bench = GasBench(w, profile=profile, batch_count=max(sizes, default=1))
        bench.build_base()
        chosen = bench.scenarios(only)
        with Progress(runs * len(chosen), label="gas bench") as progress:
            for run_no in range(1, runs + 1):
                for name, scenario in chosen:
                    bench.fresh()
                    scenario()
                    progress.advance(f"run {run_no}: {name}")
    return summarize(bench, runs)


def summarize(bench: GasBench, runs: int) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for op in OPS:
        values = bench.runs.get(op.key)
        if not values:
            continue
        gas = int(median(values))
        ops[op.key] = {
            "label": op.label,
            "gas_median": gas,
            "gas_runs": values,
            "target": op.target,
            "met": None if op.target is None else gas <= op.target,
            "gmx_v1_quoted": GMX_V1_QUOTED.get(op.key),
        }
    return {
        "runs": runs,
        "ops": ops,
        "batch": batch_figures(ops),
        "adl_marginal_per_target": _marginal(ops, "adl_1", "adl_3", 2),
        "checks": bench.checks,
        "profiles": bench.profiles,
        "notes": [
            "Each measured transaction is alone in a block 12 s after the previous one.",
            "The keeper already holds margin (its first reward ever costs 17,100 more, once).",
            "Setup blocks are one second apart (anvil_setBlockTimestampInterval), so every position, "
            "batch accounts included, opened at a non-zero funding index, as on a live market.",
            "GMX v1 Vault figures are quoted as published (open 319k, close 193k, liquidation 198k), "
            "not measured here.",
        ],
    }


def _marginal(ops: dict[str, Any], small: str, large: str, extra: int) -> int | None:
    if small not in ops or large not in ops:
        return None
    return int((ops[large]["gas_median"] - ops[small]["gas_median"]) / extra)


def batch_figures(ops: dict[str, Any]) -> dict[str, Any]:
    """Per-account average and marginal cost between consecutive batch sizes."""
    out: dict[str, Any] = {}
    measured = [n for n in BATCH_SIZES if f"batch_{n}" in ops]
    for n in measured:
        out[f"per_account_{n}"] = int(ops[f"batch_{n}"]["gas_median"] / n)
    for lo, hi in itertools.pairwise(measured):
        out[f"marginal_{lo}_to_{hi}"] = _marginal(ops, f"batch_{lo}", f"batch_{hi}", hi - lo)
    marginals = [v for k, v in out.items() if k.startswith("marginal_")]
    if marginals:
        out["marginal"] = marginals[-1]
        out["marginal_target"] = BATCH_MARGINAL_TARGET
        out["marginal_met"] = marginals[-1] <= BATCH_MARGINAL_TARGET
    return out


def rows(result: dict[str, Any]) -> list[Row]:
    section = "Gas per operation (Anvil, real deployment)"
    out: list[Row] = []
    for op in result["ops"].values():
        quoted = (
            f" (GMX v1 quoted: {op['gmx_v1_quoted'] // 1000}k)" if op.get("gmx_v1_quoted") else ""
        )
        target = f"<= {fmt_gas(op['target'])}" if op["target"] else ""
        out.append(Row(section, op["label"] + quoted, fmt_gas(op["gas_median"]), target, op["met"]))
    batch = result.get("batch", {})
    if "marginal" in batch:
        out.append(Row(section, "liquidateBatch, marginal per account", fmt_gas(batch["marginal"]),
                       f"<= {BATCH_MARGINAL_TARGET:,}", batch["marginal_met"]))  # fmt: skip
    adl = result.get("adl_marginal_per_target")
    if adl is not None:
        out.append(Row(section, "autoDeleverage, marginal per target", fmt_gas(adl)))
    return out
