"""Surviving a flaky node: is an error the node being away, the backoff while it is, the circuit
breaker over failed jobs, and the error that says the chain under the deployment is gone."""

from __future__ import annotations

import time
from typing import Any

from bulwark.core.errors import BulwarkError


class ChainReset(BulwarkError):
    """The chain under the deployment is gone: a new genesis, or no ClearingHouse code."""


class CircuitBreaker:
    """Trips after `limit` consecutive failures; a success resets the count."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0

    def success(self) -> None:
        self.failures = 0

    def failure(self) -> bool:
        self.failures += 1
        return self.failures >= self.limit


class Backoff:
    """Exponential wait while the node is away: initial, 2x, 4x ... up to `maximum` seconds."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = 0.0
        self.retry_at = 0.0

    @property
    def active(self) -> bool:
        return self.delay > 0

    def waiting(self) -> bool:
        return time.monotonic() < self.retry_at

    def fail(self) -> float:
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        self.retry_at = time.monotonic() + self.delay
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0
        self.retry_at = 0.0


def tune_provider(provider: Any, rpc_timeout: float) -> None:
    """The node's requests time out after `rpc_timeout` (a hung node shows up within a block or
    two, not after web3's default) and are never retried behind the keeper's back: a request that
    gets no answer fails the job at once, and the backoff decides when to try again."""
    kwargs = getattr(provider, "_request_kwargs", None)
    if isinstance(kwargs, dict):
        current = kwargs.get("timeout")
        kwargs["timeout"] = (
            min(current, rpc_timeout) if isinstance(current, int | float) else rpc_timeout
        )
    if hasattr(provider, "exception_retry_configuration"):
        provider.exception_retry_configuration = None
