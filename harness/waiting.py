"""Waiting on a condition with a deadline, never sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import urllib3

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.2, alive: Callable[[], None] = lambda: None) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s.
    ``alive`` is called between polls and may raise (a process that died)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            last_error, value = exc, None
        if value:
            return value
        alive()
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} ({last_error=})")
