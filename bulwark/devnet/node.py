"""A local Anvil chain that always goes away with its owner.

``AnvilNode`` starts the native Anvil binary (not the npm wrapper script) on a free port, waits
until it answers JSON-RPC, drains its output in a daemon thread so the pipe never fills, and
stops it (SIGTERM, then SIGKILL) on ``stop()``, on leaving a ``with`` block, and at exit.

If the Python process dies without cleaning up, even by SIGKILL, Linux kills Anvil too: the
child asks for PR_SET_PDEATHSIG=SIGKILL before it execs. That signal fires when the *thread*
that forked the child ends, so every Anvil is forked from one launcher thread that lives as
long as the process; a node started from a short-lived worker thread survives that thread.

With ``state_file``, Anvil loads the chain from the file if it exists and writes it back when it
is stopped (``--state``), so a stop and a start resume the same chain.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import ctypes
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from bulwark.core import paths
from bulwark.core.errors import BulwarkError

_LISTENING = re.compile(rb"Listening on ([0-9A-Za-z.:\[\]-]+):(\d+)")
_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


class AnvilError(BulwarkError, RuntimeError):
    """Anvil did not start, or stopped answering."""


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved in the parent: after fork only the call itself runs.
_PRCTL = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would send the signal.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _Launcher:
    """One daemon thread that forks every Anvil, so PDEATHSIG fires only when the process ends."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], _T]) -> _T:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="anvil-launcher", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return future.result()

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                future.set_exception(exc)


_LAUNCHER = _Launcher()


def _rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 2.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise AnvilError(f"{method} failed: {reply['error']}")
    return reply["result"]


class AnvilNode:
    """A local Anvil chain; use as ``with AnvilNode() as node: ... node.rpc_url ...``."""

    def __init__(
        self,
        port: int = 0,
        block_time: float | None = None,
        chain_id: int = 31337,
        accounts: int = 10,
        balance: int | None = None,
        extra_args: Sequence[str] = (),
        state_file: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
    ) -> None:
        self.requested_port = port
        self.block_time = block_time
        self.chain_id = chain_id
        self.accounts = accounts
        self.balance = balance
        self.extra_args = tuple(extra_args)
        self.state_file = Path(state_file) if state_file is not None else None
        self.host = host
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._port: int | None = None
        self._pid: int | None = None
        self._listening = threading.Event()
        self._output: collections.deque[str] = collections.deque(maxlen=200)

    def command(self) -> list[str]:
        """The Anvil command line this node runs."""
        argv = [
            str(paths.node_bin("anvil")),
            "--host", self.host,
            "--port", str(self.requested_port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.accounts),
        ]  # fmt: skip
        if self.block_time is not None:
            argv += ["--block-time", str(self.block_time)]
        if self.balance is not None:
            argv += ["--balance", str(self.balance)]
        if self.state_file is not None:
            argv += ["--state", str(self.state_file)]
        return argv + list(self.extra_args)

    @property
    def port(self) -> int:
        if self._port is None:
            raise AnvilError("Anvil is not running")
        return self._port

    @property
    def rpc_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the Anvil started last (still known after ``stop()``)."""
        if self._pid is None:
            raise AnvilError("Anvil was never started")
        return self._pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        """The last lines Anvil printed (for error messages)."""
        return "\n".join(self._output)

    def start(self) -> Self:
        """Start Anvil and return once it answers ``eth_chainId``."""
        if self.is_running():
            return self
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        self._port = None
        self._listening.clear()
        self._output.clear()
        parent = os.getpid()

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(parent),  # noqa: PLW1509 - only prctl and getppid
                start_new_session=True,  # a Ctrl-C reaches Python, which then stops Anvil
            )

        self._proc = _LAUNCHER.call(spawn)
        self._pid = self._proc.pid
        atexit.register(self.stop)
        self._reader = threading.Thread(
            target=self._drain, args=(self._proc,), name=f"anvil-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if not self._listening.is_set():
                match = _LISTENING.search(line)
                if match:
                    self._port = int(match.group(2))
                    self._listening.set()
            self._output.append(line.decode(errors="replace").rstrip())
        proc.stdout.close()
        self._listening.set()  # wake a waiter: Anvil has gone

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        if not self._listening.wait(self.startup_timeout) or self._port is None:
            raise AnvilError(f"Anvil did not start listening:\n{self.output()}")
        while True:
            if not self.is_running():
                code = self._proc.returncode if self._proc else None
                raise AnvilError(f"Anvil exited with code {code}:\n{self.output()}")
            try:
                chain_id = int(_rpc(self.rpc_url, "eth_chainId", timeout=1.0), 16)
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    raise AnvilError(f"Anvil did not answer at {self.rpc_url}") from None
                time.sleep(0.05)
                continue
            if chain_id != self.chain_id:
                raise AnvilError(
                    f"Anvil at {self.rpc_url} reports chain {chain_id}, not {self.chain_id}"
                )
            return

    def rpc(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call (handy in tests and scripts)."""
        return _rpc(self.rpc_url, method, params)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Anvil writes its state file then), SIGKILL if it takes longer than timeout."""
        atexit.unregister(self.stop)
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self._proc = None
        self._reader = None

    def wait(self) -> int:
        """Block until Anvil exits (for a node run in the foreground); its exit code."""
        if self._proc is None:
            raise AnvilError("Anvil is not running")
        return self._proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.rpc_url if self.is_running() and self._port else "stopped"
        return f"AnvilNode({where})"
