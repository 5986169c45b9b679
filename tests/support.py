"""What the tests share beside the world (bulwark/devnet/world.py) and the fixtures (conftest.py): the
conservation check, a keeper test's chain of its own with a book of traders on it, positions that a
price move makes liquidatable, and waiting for conditions with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from bulwark.devnet.world import World, world
from bulwark.keeper import invariants


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
