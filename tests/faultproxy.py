"""A JSON-RPC proxy that misbehaves on request: put it between a client and Anvil and tell it to
fail the next N requests (optionally only those calling some methods) in one of these ways:

- ``http500``: an HTTP 500 with a text body;
- ``rpc_error``: HTTP 200 with a JSON-RPC error object for every request of the body;
- ``malformed``: HTTP 200 with truncated JSON;
- ``hang``: no answer until ``hang_seconds`` have passed (past the client's timeout), then a close;
- ``drop``: the connection closed before the request reaches the node;
- ``lose_reply``: the request reaches the node, then the connection is closed without its answer
  (a transaction sent this way is in the node's pool although the client saw an error).

Everything else is forwarded unchanged. The proxy listens on 127.0.0.1 on a free port, serves each
connection on its own thread, and counts what it forwarded and what it injected.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

Fault = Literal["http500", "rpc_error", "malformed", "hang", "drop", "lose_reply"]
FAULTS: tuple[Fault, ...] = ("http500", "rpc_error", "malformed", "hang", "drop", "lose_reply")


@dataclass
class _Rule:
    fault: Fault
    remaining: int
    methods: frozenset[str] | None


def request_methods(body: bytes) -> list[str]:
    """The JSON-RPC methods a request body calls (one, or several for a batch)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [str(i.get("method")) for i in items if isinstance(i, dict)]


def _ids(body: bytes) -> tuple[list[Any], bool]:
    parsed = json.loads(body)
    if isinstance(parsed, list):
        return [i.get("id") for i in parsed if isinstance(i, dict)], True
    return [parsed.get("id") if isinstance(parsed, dict) else None], False


class FaultProxy:
    """``with FaultProxy(anvil_url) as proxy: ... proxy.url ... proxy.fail("drop", 3) ...``"""

    def __init__(self, upstream: str, hang_seconds: float = 2.0) -> None:
        self.upstream = upstream
        self.hang_seconds = hang_seconds
        self.forwarded = 0
        self.injected: Counter[Fault] = Counter()
        self.injected_methods: list[tuple[Fault, tuple[str, ...]]] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, fault: Fault, count: int = 1, methods: Iterable[str] | None = None) -> None:
        """Fails the next `count` requests (those calling one of `methods`, if any) with `fault`."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._rules.append(_Rule(fault, count, frozenset(methods) if methods else None))

    def pending_faults(self) -> int:
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _take(self, methods: list[str]) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and (rule.methods is None or rule.methods & set(methods)):
                    rule.remaining -= 1
                    self.injected[rule.fault] += 1
                    self.injected_methods.append((rule.fault, tuple(methods)))
                    return rule.fault
            return None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy._serve(self, body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        fault = self._take(request_methods(body))
        if fault in ("drop", "hang"):
            if fault == "hang":
                self._closing.wait(self.hang_seconds)
            handler.close_connection = True
            return
        if fault == "http500":
            self._reply(handler, 500, b"injected internal server error", "text/plain")
            return
        if fault == "malformed":
            self._reply(handler, 200, b'{"jsonrpc": "2.0", "id": 1, "result": {"trunc')
            return
        if fault == "rpc_error":
            self._reply(handler, 200, self._error_body(body))
            return
        status, reply = self._forward(body)
        if fault == "lose_reply":
            handler.close_connection = True
            return
        self._reply(handler, status, reply)

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                reply: bytes = response.read()
                status = int(response.status)
        except urllib.error.HTTPError as err:
            reply, status = err.read(), err.code
        with self._lock:
            self.forwarded += 1
        return status, reply

    @staticmethod
    def _error_body(body: bytes) -> bytes:
        ids, batch = _ids(body)
        errors = [
            {"jsonrpc": "2.0", "id": i, "error": {"code": -32603, "message": "injected error"}}
            for i in ids
        ]
        return json.dumps(errors if batch else errors[0]).encode()

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "application/json",
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            handler.close_connection = True
