"""The daemon's lifecycle: startup callbacks, a block poll that hands the newest block to one pass
at a time, periodic jobs, signals that only set a flag, and shutdown callbacks."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]

from bulwark.core.logs import get_logger, kv

log = get_logger()


class Lifecycle:
    """pymaker-style lifecycle on APScheduler 3: register callbacks inside ``with``; leaving the block
    runs startup, the jobs until a signal (or :meth:`stop`), then shutdown."""

    def __init__(
        self,
        head: Callable[[], tuple[int, str]],
        poll_interval: float,
        stop: threading.Event,
        guard: Callable[[str, Callable[[], Any]], Any],
        dropped: Callable[[int], Any] | None = None,
    ) -> None:
        self._head = head
        self._dropped = dropped
        self._poll_interval = poll_interval
        self._stop = stop
        self._guard = guard
        self._startup: list[Callable[[], Any]] = []
        self._shutdown: list[Callable[[], Any]] = []
        self._on_block: Callable[[int], Any] | None = None
        self._every: list[tuple[float, Callable[[], Any]]] = []
        self._handled: tuple[int, str] | None = None  # the last head handed to a pass
        self._busy = threading.Lock()

    def on_startup(self, fn: Callable[[], Any]) -> None:
        self._startup.append(fn)

    def on_block(self, fn: Callable[[int], Any]) -> None:
        self._on_block = fn

    def every(self, seconds: float, fn: Callable[[], Any]) -> None:
        self._every.append((seconds, fn))

    def on_shutdown(self, fn: Callable[[], Any]) -> None:
        self._shutdown.append(fn)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.run()

    def run(self) -> None:
        previous = self._install_signals()
        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="keeper-pass")
        try:
            for fn in self._startup:
                fn()
            scheduler = BackgroundScheduler(
                executors={"default": ThreadPoolExecutor(4)},
                job_defaults={"coalesce": True, "max_instances": 1},
            )
            if self._on_block is not None:
                scheduler.add_job(
                    self._poll,
                    "interval",
                    seconds=self._poll_interval,
                    id="on_block",
                    args=(worker,),
                    next_run_time=_now(),
                )
            for n, (seconds, fn) in enumerate(self._every):
                name = getattr(fn, "__name__", f"job{n}")
                scheduler.add_job(
                    self._guard, "interval", seconds=seconds, id=f"{name}-{n}", args=(name, fn)
                )
            scheduler.start()
            try:
                while not self._stop.wait(0.2):
                    pass
            finally:
                log.info("shutting down: letting the pass in flight finish")
                scheduler.shutdown(wait=True)
                worker.shutdown(wait=True)
        finally:
            for fn in self._shutdown:
                try:
                    fn()
                except Exception as exc:  # shutdown goes on
                    log.error(
                        "shutdown step failed", extra=kv(error=f"{type(exc).__name__}: {exc}")
                    )
            self._restore_signals(previous)

    def _poll(self, worker: concurrent.futures.Executor) -> None:
        """Cheap and never blocking: hands the newest block to the pass worker if it is idle. Blocks
        that arrive while a pass runs are not queued: the next pass takes the newest and counts the
        ones in between as dropped (its log scan still covers them). A head is new when its number
        or its hash differs from the last one handled: a node back on a shorter chain, or a reorg
        at the same height, is served at once, not when the chain grows past the old head."""
        head = self._guard("poll", self._head)
        if head is None or self._on_block is None or head == self._handled:
            return
        if not self._busy.acquire(blocking=False):
            return
        number = head[0]
        last = self._handled[0] if self._handled is not None else None
        if last is not None and number > last + 1 and self._dropped is not None:
            self._dropped(number - last - 1)
        self._handled = head
        worker.submit(self._run_pass, self._on_block, number)

    def _run_pass(self, on_block: Callable[[int], Any], number: int) -> None:
        try:
            self._guard("on_block", lambda: on_block(number))
        finally:
            self._busy.release()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _signal(self, signum: int, frame: Any) -> None:
        log.info("signal received", extra=kv(signal=signal.Signals(signum).name))
        self._stop.set()


def _now() -> datetime:
    return datetime.now(UTC)
