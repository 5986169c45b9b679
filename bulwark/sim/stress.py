"""`bulwark stress SCENARIO`: many accounts through a price path with the keeper running; a report.

The run, on a local chain (an embedded Anvil unless `--rpc` is given):

1. Population: N trader accounts (keys derived from the seed) with spread-out leverage on the two
   markets, one LP, one insurance-fund staker and the keeper's account. The admin mints their
   collateral (it owns the mock token) and gives them gas money with `anvil_setBalance`.
2. Opening prices: every feed is set to the scenario's first price for its market.
3. Setup in bulk: the LP seeds the pool, the staker seeds the fund, the admin deposits each trader's
   collateral, each trader opens its positions, through the sender's pipelined mode
   (:class:`bulwark.chain.sender.Pipeline`): signed locally with known nonces, sent in JSON-RPC
   batches, then every receipt checked at once (a failure is decoded).
4. Replay: for each step, chain time moves on by the step's gap (divided by `--speed`), every feed
   is published (markets without a new print re-publish their last price, so heartbeats hold), and
   the keeper makes one full pass: liquidations, fund cover of bad debt, ADL, socialisation.
5. Report (bulwark/sim/report.py): the views sampled after every step and the events of the whole run.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak
from web3 import Web3

from bulwark.chain.contracts import (
    LOCAL_CHAIN_IDS,
    WAD,
    Bulwark,
    BulwarkError,
    Deployment,
    connect,
    dev_account,
)
from bulwark.chain.rpc import RpcFailure, call_data, eth_call, rpc_batch
from bulwark.chain.sender import Pipeline
from bulwark.core.progress import Progress
from bulwark.sim import scenarios
from bulwark.sim.scenarios import PricePath

if TYPE_CHECKING:
    from bulwark.sim.sweep import SweepConfig

MAX_UINT = 2**256 - 1
GAS_MONEY_WEI = 10_000 * 10**18
SEND_CHUNK = 200
TRADE_GAS = 900_000
SIMPLE_GAS = 300_000


class StressError(BulwarkError):
    """The stress run cannot go on; the message says why in one line."""


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class StressConfig:
    """What to run. Amounts are in human units of the collateral (USDC)."""

    scenario: str
    accounts: int = 500
    seed: int = 1
    speed: float = 1.0  # chain time advances by the scenario's gaps divided by this
    step_seconds: int | None = None  # resampling bucket; None: the scenario's default
    max_steps: int | None = None
    min_collateral: int = 500
    max_collateral: int = 50_000
    min_leverage: float = 1.5
    max_leverage: float = 19.0
    long_share: float = 0.55  # crowds lean long before a crash
    fund_ratio: float = 0.04  # fund seed as a share of the traders' collateral; 0: no stake
    pool_ratio: float = 1.0  # pool seed as a share of the traders' collateral (at least)

    def validate(self) -> None:
        if not 2 <= self.accounts <= 5_000:
            raise StressError(f"--accounts must be between 2 and 5000, got {self.accounts}")
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise StressError(f"--speed must be a positive number, got {self.speed}")
        if self.step_seconds is not None and self.step_seconds < 0:
            raise StressError(
                f"--step must be zero or a positive number of seconds, got {self.step_seconds}"
            )
        if self.max_steps is not None and self.max_steps < 2:
            raise StressError(f"--max-steps must be at least 2, got {self.max_steps}")


# ---------------------------------------------------------------------------- population


@dataclass(frozen=True)
class Leg:
    market: str
    size_wad: int  # long > 0


@dataclass(frozen=True)
class TraderPlan:
    account: LocalAccount
    collateral_tokens: int
    leverage: float
    legs: tuple[Leg, ...]


@dataclass(frozen=True)
class Population:
    admin: LocalAccount
    keeper: LocalAccount
    lp: LocalAccount
    staker: LocalAccount
    traders: list[TraderPlan]
    pool_seed_tokens: int
    fund_seed_tokens: int

    @property
    def addresses(self) -> list[str]:
        return [t.account.address for t in self.traders]

    @classmethod
    def seeded(
        cls,
        seed: int,
        admin: LocalAccount,
        traders: list[TraderPlan],
        pool_seed_tokens: int,
        fund_seed_tokens: int,
    ) -> Population:
        """A population whose keeper, LP and staker are derived from `seed`, as its traders are."""
        return cls(
            admin=admin,
            keeper=derived_account(seed, "keeper"),
            lp=derived_account(seed, "lp"),
            staker=derived_account(seed, "staker"),
            traders=traders,
            pool_seed_tokens=pool_seed_tokens,
            fund_seed_tokens=fund_seed_tokens,
        )


Planner = Callable[[StressConfig, LocalAccount, Mapping[str, int], int], Population]
"""Builds the population from the config, the admin, the opening prices (WAD) and token decimals."""


def derived_account(seed: int, label: str) -> LocalAccount:
    """A deterministic throwaway key for the stress run (local chains only)."""
    key = keccak(text=f"bulwark-stress:{seed}:{label}")
    acct: LocalAccount = Account.from_key(key)
    return acct


def plan_population(
    cfg: StressConfig, admin: LocalAccount, prices_wad: Mapping[str, int], decimals: int
) -> Population:
    """Traders with log-uniform collateral and leverage; 40% trade the first market only, 30% the
    second only, 30% both (cross margin, notional split 60/40); each leg long with `long_share`."""
    rng = random.Random(cfg.seed)
    markets = list(prices_wad)
    unit = 10**decimals
    traders: list[TraderPlan] = []
    side_notional = {(m, long): 0 for m in markets for long in (True, False)}
    for i in range(cfg.accounts):
        usd = int(math.exp(rng.uniform(math.log(cfg.min_collateral), math.log(cfg.max_collateral))))
        leverage = math.exp(rng.uniform(math.log(cfg.min_leverage), math.log(cfg.max_leverage)))
        pick = rng.random()
        if len(markets) == 1 or pick < 0.4:
            shares = {markets[0]: 1.0}
        elif pick < 0.7:
            shares = {markets[1]: 1.0}
        else:
            shares = {markets[0]: 0.6, markets[1]: 0.4}
        legs = []
        for market, share in shares.items():
            notional_wad = int(usd * leverage * share * 1e6) * 10**12
            size = notional_wad * WAD // prices_wad[market]
            long = rng.random() < cfg.long_share
            legs.append(Leg(market, size if long else -size))
            side_notional[(market, long)] += notional_wad
        account = derived_account(cfg.seed, f"trader-{i}")
        traders.append(TraderPlan(account, usd * unit, round(leverage, 3), tuple(legs)))
    total_collateral = sum(t.collateral_tokens for t in traders)
    # The pool must carry each market's larger side within its exposure cap (3 x equity) while
    # trades arrive.
    skew_need = max(side_notional.values()) // WAD * unit // 2
    pool_seed = max(int(total_collateral * cfg.pool_ratio), skew_need, 100_000 * unit)
    fund_seed = max(int(total_collateral * cfg.fund_ratio), 1_000 * unit) if cfg.fund_ratio else 0
    return Population.seeded(cfg.seed, admin, traders, pool_seed, fund_seed)


# ---------------------------------------------------------------------------- bulk sending


def pipeline(bw: Bulwark) -> Pipeline:
    """The sender's pipelined mode as the run uses it: gas limits given (simple calls get
    ``SIMPLE_GAS``), and on an automining node each batch mined together when waited for, so which
    block a transaction lands in depends on the transactions alone."""
    return Pipeline(bw, default_gas=SIMPLE_GAS, mine_together=True)


def set_balances(w3: Web3, addresses: Sequence[str], wei: int) -> None:
    """Gives each address `wei` of ether (Anvil's ``anvil_setBalance``), in JSON-RPC batches."""
    replies = rpc_batch(w3, [("anvil_setBalance", [a, hex(wei)]) for a in addresses])
    failed = next((r for r in replies if isinstance(r, RpcFailure)), None)
    if failed is not None:
        raise StressError(f"anvil_setBalance failed: {failed.message} (stress needs Anvil)")


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    reply = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in reply:
        raise StressError(f"{method} failed: {reply['error'].get('message')} (stress needs Anvil)")
    return reply.get("result")


# ---------------------------------------------------------------------------- the keeper


class Driver(Protocol):
    def run_once(self) -> Any: ...


def make_keeper(bw: Bulwark, signer: LocalAccount) -> Driver:
    """The keeper daemon, driven one full pass at a time: liquidations, fund cover, ADL,
    socialisation."""
    from bulwark.keeper.config import KeeperSettings
    from bulwark.keeper.daemon import Keeper

    return Keeper(bw, signer, KeeperSettings())


# ---------------------------------------------------------------------------- the run


@dataclass
class Sample:
    """The views read after one step (all integers from the chain)."""

    step: int
    block: int
    chain_time: int
    scenario_time: int
    prices_wad: dict[str, int]
    fund_assets_wad: int
    fund_available_wad: int
    window_remaining_wad: int
    bad_debt_wad: int
    pool_equity_wad: int
    liquidatable_left: int
    keeper_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "block": self.block,
            "chain_time": self.chain_time,
            "scenario_time": self.scenario_time,
            "prices_wad": {k: str(v) for k, v in self.prices_wad.items()},
            "fund_assets_wad": str(self.fund_assets_wad),
            "fund_available_wad": str(self.fund_available_wad),
            "window_remaining_wad": str(self.window_remaining_wad),
            "bad_debt_wad": str(self.bad_debt_wad),
            "pool_equity_wad": str(self.pool_equity_wad),
            "liquidatable_left": self.liquidatable_left,
            "keeper_seconds": round(self.keeper_seconds, 4),
        }


@dataclass
class RunResult:
    config: StressConfig
    path: PricePath
    population: Population
    start_block: int  # first block of the replay (after setup)
    setup_block: int  # first block of the setup
    end_block: int
    samples: list[Sample]
    wall_seconds: dict[str, float] = field(default_factory=dict)
    scenario_title: str = ""
    keeper_kind: str = ""
    tx_count: int = 0
    step_seconds: int | None = None
    synthetic: bool = False
    keeper_log: KeeperLogTally | None = None


@dataclass(frozen=True)
class Prepared:
    """The chain after setup, before the first step: what a replay (or many) starts from."""

    population: Population
    setup_block: int
    opening_answers: dict[str, int]  # each feed's opening answer (8 decimals)
    setup_seconds: float
    tx_count: int


# ---------------------------------------------------------------------------- the keeper's log


@dataclass
class KeeperLogTally:
    """What the keeper logged during a replay: the file it went to, and the warnings and errors
    counted by message, so the summary can say what happened without printing each line."""

    file: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)  # message ("error: ..." ) -> count

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class _Tally(logging.Handler):
    def __init__(self, tally: KeeperLogTally) -> None:
        super().__init__(logging.WARNING)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno == logging.WARNING else f"{record.levelname.lower()}: "
        key = level + record.getMessage()
        self.tally.counts[key] = self.tally.counts.get(key, 0) + 1


@contextmanager
def keeper_log(file: Path | None) -> Iterator[KeeperLogTally]:
    """Routes the keeper's log to `file` (appended; none: nowhere) instead of the terminal, where its
    warnings used to land in the middle of the progress bar, and counts its warnings and errors."""
    from bulwark.core.logs import LOGGER_NAME, PlainFormatter

    tally = KeeperLogTally(file)
    logger = logging.getLogger(LOGGER_NAME)
    handlers: list[logging.Handler] = [_Tally(tally)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(PlainFormatter())
        handlers.append(to_file)
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # Only these handlers while the run lasts: one installed before (the terminal's) stays detached.
    for h in saved[2]:
        logger.removeHandler(h)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield tally
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        for h in saved[2]:
            logger.addHandler(h)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class StressRun:
    """One stress run against a deployment on a local chain."""

    def __init__(
        self,
        bw: Bulwark,
        cfg: StressConfig,
        admin: LocalAccount,
        progress_stream: TextIO | None = None,
        planner: Planner | None = None,
        keeper_log_file: Path | None = None,
    ) -> None:
        cfg.validate()
        self.keeper_log_file = keeper_log_file
        # called after each replay step instead of drawing this run's own progress (a sweep's)
        self.on_step: Callable[[int, str], None] | None = None
        self.bw = bw
        self.w3 = bw.w3
        self.cfg = cfg
        self.admin = admin
        self.progress_stream = progress_stream
        self.planner = planner or plan_population
        scenario, path = scenarios.load(cfg.scenario)
        self.scenario = scenario
        step = (
            cfg.step_seconds
            if cfg.step_seconds is not None
            else (scenario.default_step if scenario else None)
        )
        self.step_seconds = step
        self.path = path.resample(step).limit(cfg.max_steps)
        unknown = [m for m in self.path.markets if m not in bw.deployment.markets]
        if unknown:
            known = ", ".join(bw.market_names())
            raise StressError(f"scenario market {unknown[0]} is not deployed (markets: {known})")
        self.markets = bw.market_names()
        self.last_answer: dict[str, int] = {}

    # ------------------------------------------------------------------ phases

    def run(
        self, driver_factory: Callable[[Bulwark, LocalAccount], Driver] = make_keeper
    ) -> RunResult:
        """Setup, then the replay, on a steady clock (see :meth:`steady_clock`)."""
        with self.steady_clock():
            prepared = self.prepare()
            return self.replay(prepared, driver_factory)

    @contextmanager
    def steady_clock(self) -> Iterator[None]:
        """Chain time moves only when the replay pins a step's time: every other block has the
        timestamp of the one before (the keeper acts at the price's time), so chain time never
        depends on how fast this machine is or on how transactions were packed into blocks, and
        the same seed gives the same run to the wei. The node's own clock is restored afterwards."""
        rpc(self.w3, "anvil_setBlockTimestampInterval", 0)
        try:
            yield
        finally:
            rpc(self.w3, "anvil_removeBlockTimestampInterval")

    def prepare(self) -> Prepared:
        """Opening prices, the population, and its collateral and positions on the chain."""
        t0 = time.monotonic()
        self._check_chain()
        setup_block = self.w3.eth.block_number + 1
        self._set_opening_prices()
        population = self.planner(
            self.cfg, self.admin, self._prices_wad(), self.bw.deployment.collateral_decimals
        )
        pipe = pipeline(self.bw)
        self._setup(population, pipe)
        return Prepared(
            population=population,
            setup_block=setup_block,
            opening_answers=dict(self.last_answer),
            setup_seconds=time.monotonic() - t0,
            tx_count=pipe.mined,
        )

    def replay(
        self,
        prepared: Prepared,
        driver_factory: Callable[[Bulwark, LocalAccount], Driver] = make_keeper,
    ) -> RunResult:
        """The price path from the chain's current state, with a new keeper: a sweep calls it once
        per point, each time from the same snapshot of the prepared chain."""
        population = prepared.population
        self.last_answer = dict(prepared.opening_answers)
        pipe = pipeline(self.bw)
        with keeper_log(self.keeper_log_file) as tally:
            driver = driver_factory(self.bw, population.keeper)
            start_block = self.w3.eth.block_number + 1
            t1 = time.monotonic()
            samples = self._replay(population, driver, pipe)
        return RunResult(
            config=self.cfg,
            path=self.path,
            population=population,
            start_block=start_block,
            setup_block=prepared.setup_block,
            end_block=self.w3.eth.block_number,
            samples=samples,
            wall_seconds={"setup": prepared.setup_seconds, "replay": time.monotonic() - t1},
            scenario_title=self.scenario.title if self.scenario else self.path.name,
            keeper_kind=type(driver).__module__ + "." + type(driver).__name__,
            tx_count=prepared.tx_count + pipe.mined,
            step_seconds=self.step_seconds,
            synthetic=bool(self.scenario and self.scenario.synthetic),
            keeper_log=tally,
        )

    def _check_chain(self) -> None:
        if self.w3.eth.chain_id not in LOCAL_CHAIN_IDS:
            raise StressError(
                f"stress runs on a local chain only (chain id {self.w3.eth.chain_id})"
            )
        owner = self.bw.token.functions.owner().call()
        if owner != self.admin.address:
            raise StressError(
                f"the signer {self.admin.address} does not own the mock token (owner {owner})"
            )

    def _prices_wad(self) -> dict[str, int]:
        return {
            m: int(self.bw.oracle.functions.priceWad(self.bw.market_id(m)).call())
            for m in self.markets
        }

    def _set_opening_prices(self) -> None:
        pipe = pipeline(self.bw)
        opening = self.path.opening_prices()
        for market in self.markets:
            feed = self.bw.feeds[market]
            answer = (
                scenarios.feed_answer(opening[market])
                if market in opening
                else int(feed.functions.latestAnswer().call())
            )
            self.last_answer[market] = answer
            pipe.add(
                self.admin,
                feed.functions.updateAnswer(answer),
                f"set {market} to its opening price",
            )
        pipe.wait()

    def _setup(self, pop: Population, pipe: Pipeline) -> None:
        bw, admin = self.bw, self.admin
        legs = sum(len(t.legs) for t in pop.traders)
        label = f"setup: {len(pop.traders)} accounts"
        total = 7 + (1 if pop.fund_seed_tokens else 0) + len(pop.traders) + legs
        progress = Progress(total, self.progress_stream, label=label)
        pipe.on_sent = lambda: progress.update(pipe.accepted, "transactions")
        helpers = (pop.keeper, pop.lp, pop.staker)
        set_balances(self.w3, [a.address for a in helpers], GAS_MONEY_WEI)
        set_balances(self.w3, [t.account.address for t in pop.traders], GAS_MONEY_WEI)
        trader_total = sum(t.collateral_tokens for t in pop.traders)
        token = bw.token.functions
        pipe.add(admin, token.mint(pop.lp.address, pop.pool_seed_tokens), "mint the LP's deposit")
        pipe.add(
            admin, token.mint(pop.staker.address, pop.fund_seed_tokens), "mint the staker's deposit"
        )
        pipe.add(admin, token.mint(admin.address, trader_total), "mint the traders' collateral")
        pipe.add(admin, token.approve(bw.ch.address, MAX_UINT), "approve the clearing house")
        pipe.add(
            admin,
            bw.ch.functions.grantRole(keccak(text="ADL_KEEPER_ROLE"), pop.keeper.address),
            "let the keeper run ADL",
        )
        pipe.add(pop.lp, token.approve(bw.pool.address, MAX_UINT), "LP approves the pool")
        pipe.add(pop.staker, token.approve(bw.fund.address, MAX_UINT), "staker approves the fund")
        pipe.wait()
        pipe.add(
            pop.lp,
            bw.pool.functions.deposit(pop.pool_seed_tokens, pop.lp.address),
            "seed the pool",
            gas=600_000,
        )
        if pop.fund_seed_tokens:
            pipe.add(
                pop.staker,
                bw.fund.functions.deposit(pop.fund_seed_tokens, pop.staker.address),
                "seed the fund",
                gas=600_000,
            )
        for t in pop.traders:
            pipe.add(
                admin,
                bw.ch.functions.deposit(t.account.address, t.collateral_tokens),
                f"deposit for {t.account.address}",
            )
        pipe.wait()
        prices = self._prices_wad()
        for t in pop.traders:
            for leg in t.legs:
                pipe.add(
                    t.account,
                    self._trade_fn(leg, prices[leg.market]),
                    f"open {leg.market} for {t.account.address}",
                    gas=TRADE_GAS,
                )
        pipe.wait()
        pipe.on_sent = None
        progress.close()

    def _trade_fn(self, leg: Leg, price_wad: int) -> Any:
        limit = price_wad * 105 // 100 if leg.size_wad > 0 else price_wad * 95 // 100
        return self.bw.ch.functions.trade(self.bw.market_id(leg.market), leg.size_wad, limit)

    def _replay(self, pop: Population, driver: Driver, pipe: Pipeline) -> list[Sample]:
        steps = self.path.steps
        own = self.on_step is None
        progress = Progress(len(steps) - 1, self.progress_stream if own else io.StringIO(),
                            label=self.path.name)  # fmt: skip
        samples = [self._sample(0, steps[0].timestamp, pop, 0.0)]
        opened_at = samples[0].chain_time
        for i in range(1, len(steps)):
            # Step i is published at the path's elapsed time divided by the speed (at least one
            # second after the step before).
            elapsed = round((steps[i].timestamp - steps[0].timestamp) / self.cfg.speed)
            due = max(opened_at + elapsed, samples[-1].chain_time + 1)
            rpc(self.w3, "evm_setNextBlockTimestamp", due)
            for market in self.markets:
                if market in steps[i].prices:
                    self.last_answer[market] = scenarios.feed_answer(steps[i].prices[market])
                pipe.add(
                    self.admin,
                    self.bw.feeds[market].functions.updateAnswer(self.last_answer[market]),
                    f"publish {market}",
                )
            pipe.wait()
            started = time.monotonic()
            driver.run_once()
            sample = self._sample(i, steps[i].timestamp, pop, time.monotonic() - started)
            samples.append(sample)
            if self.on_step is not None:
                self.on_step(i, self._progress_note(sample))
            else:
                progress.update(i, self._progress_note(sample))
        progress.close()
        return samples

    def _progress_note(self, s: Sample) -> str:
        prices = " ".join(f"{m.split('-')[0]} {p / WAD:,.0f}" for m, p in s.prices_wad.items())
        return (
            f"{prices} fund ${s.fund_assets_wad / WAD:,.0f} bad debt ${s.bad_debt_wad / WAD:,.0f}"
        )

    def _sample(
        self, step: int, scenario_time: int, pop: Population, keeper_seconds: float
    ) -> Sample:
        """Every view of the step in one JSON-RPC batch, pinned to one block."""
        bw = self.bw
        block = self.w3.eth.get_block("latest")
        number = int(block["number"])
        calls = [
            ViewCall(
                bw.oracle.address, "priceWad(uint256)", ["uint256"], [bw.market_id(m)], "uint256"
            )
            for m in self.markets
        ]
        calls += [
            ViewCall(bw.fund.address, "assetsWad()", [], [], "uint256"),
            ViewCall(bw.fund.address, "availableWad()", [], [], "uint256"),
            ViewCall(bw.fund.address, "windowRemainingWad()", [], [], "uint256"),
            ViewCall(bw.ch.address, "totalBadDebtWad()", [], [], "uint256"),
            ViewCall(bw.ch.address, "poolEquityWad()", [], [], "int256"),
            ViewCall(
                bw.ch.address,
                "healthsOf(address[])",
                ["address[]"],
                [pop.addresses],
                "(int256,uint256,uint256,bool)[]",
            ),
        ]
        values = call_views(self.w3, calls, number)
        n = len(self.markets)
        assets, available, window, debt, pool_equity, healths = values[n:]
        return Sample(
            step=step,
            block=number,
            chain_time=int(block["timestamp"]),
            scenario_time=scenario_time,
            prices_wad=dict(zip(self.markets, values[:n], strict=True)),
            fund_assets_wad=assets,
            fund_available_wad=available,
            window_remaining_wad=window,
            bad_debt_wad=debt,
            pool_equity_wad=pool_equity,
            liquidatable_left=sum(1 for h in healths if h[3]),
            keeper_seconds=keeper_seconds,
        )


@dataclass(frozen=True)
class ViewCall:
    to: str
    signature: str
    arg_types: list[str]
    args: list[Any]
    out_type: str


def call_views(w3: Web3, calls: Sequence[ViewCall], block: int) -> list[Any]:
    """Many eth_calls in one JSON-RPC batch at `block`, encoded and decoded with eth_abi directly
    (web3's contract layer is slow for arrays of hundreds of addresses), through the keeper's one
    batching helper (:func:`bulwark.chain.rpc.rpc_batch`)."""
    requests = [
        eth_call(
            c.to,
            call_data(function_signature_to_4byte_selector(c.signature), c.arg_types, c.args),
            block,
        )
        for c in calls
    ]
    out = []
    for c, reply in zip(calls, rpc_batch(w3, requests), strict=True):
        if isinstance(reply, RpcFailure):
            raise StressError(f"{c.signature} failed: {reply.message}")
        (value,) = abi_decode([c.out_type], bytes.fromhex(str(reply)[2:]))
        out.append(value)
    return out


# ---------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class ChainOptions:
    """Where a run happens and who signs as the admin, as the command line resolved them: the
    node (`--rpc`, else BULWARK_RPC; none: an embedded Anvil), its deployment file (`--deployment`,
    else BULWARK_DEPLOYMENT, else the chain's default) and the signer (a callable: --keystore,
    --dev-account, BULWARK_PRIVATE_KEY, in the order every command uses; none: dev account 0). The
    run reads no environment itself."""

    rpc: str | None = None
    deployment: str | None = None
    signer: Callable[[], LocalAccount] | None = None

    @classmethod
    def of(cls, source: object) -> ChainOptions:
        """The options from any object carrying these names (the command line's namespace)."""
        if isinstance(source, ChainOptions):
            return source
        return cls(
            rpc=getattr(source, "rpc", None),
            deployment=getattr(source, "deployment", None),
            signer=getattr(source, "signer", None),
        )


@dataclass(frozen=True)
class StressOptions:
    """What `bulwark stress` was asked for, built by the command line (bulwark/cli): the run, where
    its report goes, the chain, JSON or the summary, and with `sweep` a fund-size sweep instead of
    one run."""

    config: StressConfig
    out: Path
    chain: ChainOptions = field(default_factory=ChainOptions)
    json: bool = False
    sweep: SweepConfig | None = None


def admin_signer(chain: ChainOptions) -> LocalAccount:
    """The admin (feeder and mock-token owner) on a node the command line named: the signer it
    resolved, else dev account 0."""
    return chain.signer() if chain.signer is not None else dev_account(0)


@contextmanager
def chain_for(options: ChainOptions, fresh: bool = False) -> Iterator[tuple[Bulwark, bool]]:
    """A Bulwark client: on `rpc` (its deployment file, or a fresh deployment with `fresh`), else
    on a new embedded Anvil with a fresh deployment. The flag says whether the chain is
    embedded."""
    from bulwark.devnet.deploy import deploy_all
    from bulwark.devnet.node import AnvilNode

    chain = options
    rpc_url = chain.rpc
    if rpc_url:
        w3 = connect(rpc_url, timeout=120)
        if w3.eth.chain_id not in LOCAL_CHAIN_IDS:
            raise StressError(f"this runs on a local chain only (chain id {w3.eth.chain_id})")
        if fresh:
            yield Bulwark(w3, deploy_all(w3, dev_account(0))), False
            return
        deployment_file = chain.deployment
        path = (
            Path(deployment_file) if deployment_file else Deployment.default_path(w3.eth.chain_id)
        )
        yield Bulwark(w3, Deployment.load(path)), False
        return
    with AnvilNode() as node:
        w3 = connect(node.rpc_url, timeout=120)
        yield Bulwark(w3, deploy_all(w3, dev_account(0))), True


def fresh_log(file: Path) -> Path:
    """The keeper's log file of a run, emptied (the replay appends to it)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("")
    return file


def default_out(scenario: str) -> Path:
    name = Path(scenario).stem if scenario.lower().endswith(".csv") else scenario
    return Path("reports") / name


@dataclass(frozen=True)
class Outcome:
    """What a finished run (a replay, a sweep, the demo) hands the command line: its report data
    (printed with --json), the summary lines (printed otherwise) and whether every check passed
    (exit code 0, else 3)."""

    data: dict[str, Any]
    lines: list[str]
    ok: bool


def run_command(opts: StressOptions) -> Outcome:
    """`bulwark stress`: runs the scenario and writes the report (with a sweep, the sweep:
    bulwark/sim/sweep.py). A mistake raises :class:`BulwarkError` or :class:`ScenarioError`, one
    line each."""
    from bulwark.sim import report

    if opts.sweep is not None:
        from bulwark.sim import sweep

        return sweep.run_command(opts, opts.sweep)
    cfg = opts.config
    cfg.validate()
    scenarios.find(cfg.scenario)  # a bad name fails before any node starts
    log_file = fresh_log(opts.out / "keeper.log")
    with chain_for(opts.chain) as (bw, embedded):
        admin = dev_account(0) if embedded else admin_signer(opts.chain)
        run = StressRun(bw, cfg, admin, keeper_log_file=log_file)
        result = run.run()
        started = time.monotonic()
        data = report.build(bw, result)
        data["run"]["wall_seconds"]["report"] = round(time.monotonic() - started, 2)
        files = report.write(data, opts.out)
    return Outcome(data, report.summary_lines(data, files), bool(data["checks"]["ok"]))
