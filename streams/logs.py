"""Logging that stays readable through an outage: a message repeated within an interval is
written once, and the next one after the interval says how many were left out."""

from __future__ import annotations

import logging
import time

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
