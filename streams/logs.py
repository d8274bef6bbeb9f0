"""Logging that stays readable through an outage: a message repeated within an interval is
written once, and the next one after the interval says how many were left out."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

REPEAT_INTERVAL = 10.0  # seconds


class Repeats(logging.Filter):
    """Passes the first record of each (logger, level, message template) per interval."""

    def __init__(self, interval: float = REPEAT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self.last: dict[tuple[str, int, str], float] = {}
        self.suppressed: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        if now - self.last.get(key, float("-inf")) < self.interval:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        self.last[key] = now
        if (left_out := self.suppressed.pop(key, 0)):
            record.msg = f"{record.msg} ({left_out} more like this in the last " \
                         f"{self.interval:.0f} s not shown)"
        return True


def limit_repeats(logger: logging.Logger) -> None:
    """Put the filter on every handler of ``logger`` (the root logger, once configured)."""
    repeats = Repeats()
    for handler in logger.handlers:
        handler.addFilter(repeats)


# Attributes every LogRecord has; anything else on a record came from ``extra=`` (a customer
# id, a partition) and goes into the JSON object as a field of its own.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per line (``VALUESTREAM_LOG_FORMAT=json``): time (RFC 3339 UTC), level,
    logger, message, the fields given with ``extra=`` and the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def use_json_lines(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        handler.setFormatter(JsonLines())
