"""Structured logs for the keeper: one line per event, plain ``key=value`` or JSON.

Every log call passes its fields through ``extra={"fields": {...}}`` (see :func:`kv`), so the JSON
output has them as top-level keys and the plain output appends them as ``key=value``. Field names that
look like secrets (``key``, ``private_key``, ``password``, ``mnemonic``) are always redacted.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any, TextIO

from bulwark.core.units import format_wad

LOGGER_NAME = "bulwark.keeper"
FORMATS = ("plain", "json")
_SECRET_NAMES = frozenset({"key", "private_key", "privatekey", "password", "mnemonic", "secret"})
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def kv(**fields: Any) -> dict[str, Any]:
    """``log.info("liquidated", extra=kv(account=a, market=m))``."""
    return {"fields": fields}


def human(amount_wad: int | None) -> str | None:
    """A WAD amount as an exact decimal string in human units (``14300000000000000000`` ->
    ``"14.3"``): what every amount in a log line and in ``--json`` output is."""
    return None if amount_wad is None else format_wad(int(amount_wad))


class Throttle:
    """A condition that repeats (a stale market, a grace period) is logged when it starts, then at
    most every ``interval`` seconds with the number of repeats held back, and once when it ends."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._since: dict[Hashable, tuple[float, int]] = {}  # key -> (last logged, held back)
        self._lock = threading.Lock()

    def due(self, key: Hashable) -> int | None:
        """None: hold this repeat back; else log it now (the count of repeats held back since)."""
        now = time.monotonic()
        with self._lock:
            last = self._since.get(key)
            if last is None or now - last[0] >= self.interval:
                self._since[key] = (now, 0)
                return 0 if last is None else last[1]
            self._since[key] = (last[0], last[1] + 1)
            return None

    def clear(self, key: Hashable) -> bool:
        """The condition ended; True if it had been logged (so its end is worth a line)."""
        with self._lock:
            return self._since.pop(key, None) is not None

    def active(self) -> list[Hashable]:
        with self._lock:
            return list(self._since)


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name.lower() in _SECRET_NAMES:
            out[name] = "<redacted>"
        elif isinstance(value, bytes):
            out[name] = "0x" + value.hex()
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[name] = value
        elif isinstance(value, (list, tuple, set, frozenset)):
            out[name] = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value]
        else:
            out[name] = str(value)
    return out


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return _clean(fields) if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in _fields(record).items():
            data[name if name not in data else f"field_{name}"] = value
        if record.exc_info and record.exc_info[0] is not None:
            data["exc"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(data, default=str)


class PlainFormatter(logging.Formatter):
    """``2025-01-01T00:00:00Z INFO  liquidated account=0x.. market=0``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{stamp}Z", f"{record.levelname:<5}", record.getMessage()]
        parts += [f"{k}={_plain(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info and record.exc_info[0] is not None:
            line += f" exc={record.exc_info[0].__name__}: {record.exc_info[1]}"
        return line


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def setup_logging(
    fmt: str = "plain", level: str = "INFO", stream: TextIO | None = None
) -> logging.Logger:
    """Configures the keeper's logger (idempotent: replaces the handler it installed before)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_bulwark", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler._bulwark = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return logger


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
