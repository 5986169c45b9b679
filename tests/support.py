"""What the tests share beside the world (bulwark/devnet/world.py) and the fixtures (conftest.py): the
conservation check, a keeper test's chain of its own with a book of traders on it, positions that a
price move makes liquidatable, waiting for conditions with a deadline, the sweep tests' gap run on
a chain of its own, and an event's logs read straight from eth_getLogs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic

from bulwark.chain.contracts import Bulwark, dev_account
from bulwark.devnet.world import World, world
from bulwark.keeper import invariants
from bulwark.sim import sweep
from bulwark.sim.stress import StressConfig, StressRun


def assert_conserved(w: World) -> invariants.ConservationReport:
    """Every solvency identity of the invariant checker holds."""
    report = invariants.check(w.bw)
    assert report.ok, report.as_dict()
    return report


@contextmanager
def own_chain(**node_args: Any) -> Iterator[World]:
    """A fresh Anvil and deployment for one test module, its clock pinned: every block one second
    after the last, whatever the machine's load."""
    with world(**node_args) as w:
        w.pin_time()
        yield w


@dataclass
class Book:
    """A module's chain with a book of traders on it (their addresses)."""

    chain: World
    traders: list[str]


@contextmanager
def reverted(book: Book) -> Iterator[Book]:
    """Yields `book`, then puts its chain back as it was: mining, state and the next base fee."""
    with book.chain.reverted():
        yield book


@contextmanager
def seeded_book(open_traders: Callable[[World], Sequence[str]]) -> Iterator[Book]:
    """A module's own chain with a seeded pool (500,000), a stake in the fund (20,000) and the traders
    `open_traders` opens on it: the keeper-operations and fault tests share this world."""
    with own_chain() as chain:
        chain.seed_pool(500_000)
        chain.stake(20_000)
        yield Book(chain, list(open_traders(chain)))


def crash_book(
    chain: World,
    count: int,
    salt: str = "crash",
    margin: int = 1_000,
    smallest: float = 1.5,
    largest: float = 6.0,
) -> list[LocalAccount]:
    """`count` ETH-USD longs of `margin` USDC, sizes spread from `smallest` to `largest` ETH. With the
    defaults (5x to 18x at 3000) a move to 2850 makes those above ~3.5 ETH liquidatable, leaves the
    rest healthy, and the largest are partially liquidated (notional above the partial minimum)."""
    traders = []
    for n in range(count):
        t = chain.new_trader(n, margin, salt)
        chain.trade(t, "ETH-USD", smallest + (largest - smallest) * n / max(count - 1, 1))
        traders.append(t)
    return traders


def wait_for(
    condition: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


# ---------------------------------------------------------------------------- stress and sweeps

GAP_ACCOUNTS = 24
GAP_SEED = 5


@contextmanager
def gap_run() -> Iterator[StressRun]:
    """The sweep tests' run on a fresh chain of its own: the gap scenario, 24 accounts of seed 5, no
    stake in the fund (a sweep sets the fund per point); not set up yet."""
    with world() as w:
        config = StressConfig("gap", accounts=GAP_ACCOUNTS, seed=GAP_SEED, fund_ratio=0.0)
        yield StressRun(w.bw, config, dev_account(0))


def fresh_point(fund_pct: float, cap_pct: float, policy: int | None = None) -> sweep.Point:
    """One sweep point alone on a fresh chain: the setup, then the point, no snapshot taken."""
    with gap_run() as run, run.steady_clock():
        prepared = run.prepare()
        oi = sweep.open_interest_wad(run.bw)
        at = int(run.bw.w3.eth.get_block("latest")["timestamp"]) + sweep.PIN_SECONDS
        return sweep.run_point(run, prepared, oi, fund_pct, cap_pct, at, policy)


def raw_logs(bw: Bulwark, contract: Any, name: str, start: int, end: int) -> list[Any]:
    """Logs of one event straight from eth_getLogs by its topic, decoded by the ABI."""
    abi = next(e for e in contract.abi if e.get("type") == "event" and e["name"] == name)
    topic = "0x" + event_abi_to_log_topic(abi).hex()
    logs = bw.w3.eth.get_logs(
        {"address": contract.address, "topics": [topic], "fromBlock": start, "toBlock": end}
    )
    event = getattr(contract.events, name)()
    return [event.process_log(log)["args"] for log in logs]
