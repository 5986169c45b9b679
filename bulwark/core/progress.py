"""Progress of a long command (a stress run's setup and replay, a fund sweep, a feed replay, a
deployment, a benchmark): a rich progress bar on a terminal; elsewhere (a pipe, a log file, CI) plain
lines, few enough that a log shows the work advancing without a flood."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Self, TextIO

# With no known total, the plain lines come at most this often (the first and the last always).
PLAIN_EVERY_SECONDS = 5.0


class Progress:
    """A bar over `total` steps, or over an unknown number (``total=None``: a count and a pulse on a
    terminal; elsewhere a line at most every few seconds). With a total, the plain lines come at each
    tenth of the way."""

    def __init__(self, total: int | None, stream: TextIO | None = None, label: str = "") -> None:
        self.total = None if total is None else max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.started = time.monotonic()
        self.done = 0
        self._tenths_shown = 0
        self._last_line = -PLAIN_EVERY_SECONDS
        self._bar: Any = None
        self._task: Any = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            console = Console(file=self.stream, force_terminal=True)
            count = (
                MofNCompleteColumn() if self.total is not None else TextColumn("{task.completed}")
            )
            self._bar = RichProgress(
                TextColumn("{task.description}", table_column=Column(min_width=len(label))),
                BarColumn(bar_width=24),
                count,
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn(
                    "{task.fields[note]}",
                    table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
                ),
                console=console,
                transient=False,
                expand=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=self.total, note="")

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done, note=note)
            return
        if self.total is None:
            now = time.monotonic() - self.started
            if now - self._last_line >= PLAIN_EVERY_SECONDS:
                self._last_line = now
                self._line(f"{self.label}: {done}", note)
            return
        tenths = 10 * done // self.total
        if tenths <= self._tenths_shown and done < self.total:
            return
        if done >= self.total and self._tenths_shown >= 10:
            return
        self._tenths_shown = min(tenths, 10) if done < self.total else 10
        self._line(f"{self.label}: {done}/{self.total}", note)

    def advance(self, note: str = "") -> None:
        """One more step done."""
        self.update(self.done + 1, note)

    def close(self, note: str = "done") -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.total is None and self.done:
            self._line(f"{self.label}: {self.done}", note)

    def _line(self, text: str, note: str) -> None:
        elapsed = _clock(time.monotonic() - self.started)
        self.stream.write(f"{text} {note} ({elapsed} elapsed)\n".replace("  (", " ("))
        self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close("done" if exc_type is None else "stopped")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"
