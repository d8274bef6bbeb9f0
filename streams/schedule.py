"""A due-time index kept in a key-value table: which customers have work due, and when.

Per partition, entries live in one-minute buckets (key ``"{partition}:{minute}"``); a list of
the days that hold entries (``"{partition}:days"``) and a cursor (``"{partition}:cursor"``,
the first minute not yet drained) say where to look. A tick visits only the days with
entries up to now, and within them only the minutes from the cursor on: its work is
proportional to what falls due, however many customers there are and however long the
clock jumped (a replay, a pause, an event clock that starts at its first event). Entries are
never removed early: when a customer's deadline moves, a new entry is added and the stale
one fires harmlessly (the caller re-checks the customer's state).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

import orjson

BUCKET_SECONDS = 60
MINUTES_PER_DAY = 24 * 60


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // BUCKET_SECONDS


class DueIndex:
    def __init__(self, table: MutableMapping[str, bytes | None]) -> None:
        self.table = table

    def add(self, partition: int, customer_id: str, due: datetime, now: datetime) -> None:
        """Schedule ``customer_id`` at ``due`` (work already due goes into the current minute)."""
        cursor = self._cursor(partition)
        if cursor is None:  # the partition's first entry: draining starts here
            cursor = _minute(now)
            self._put(partition, "cursor", cursor)
        # Never behind the cursor: after a rebalance the new owner's clock may lag the old one's.
        minute = max(_minute(max(due, now)), cursor)
        entries = self._get(partition, minute) or []
        entries.append([due.timestamp(), customer_id])
        self._put(partition, minute, entries)
        days = self._get(partition, "days") or []
        if minute // MINUTES_PER_DAY not in days:
            self._put(partition, "days", sorted([*days, minute // MINUTES_PER_DAY]))

    def pop_due(self, partition: int, now: datetime) -> list[str]:
        """Remove and return the customers due at or before ``now``, earliest first."""
        cursor = self._cursor(partition)
        if cursor is None:
            return []  # nothing was ever scheduled here: no cursor from a clock not yet set
        current = _minute(now)
        if current < cursor:
            return []
        days: list[int] = self._get(partition, "days") or []
        deadline = now.timestamp()
        due: list[tuple[float, str]] = []
        for day in days:
            first, last = day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY - 1
            for minute in range(max(first, cursor), min(last, current) + 1):
                due.extend(self._drain(partition, minute, deadline))
        # A day whose last minute is past is drained for good; today and later days stay.
        remaining_days = [day for day in days if (day + 1) * MINUTES_PER_DAY - 1 >= current]
        if remaining_days != days:
            self._put(partition, "days", remaining_days)
        if current > cursor:
            self._put(partition, "cursor", current)
        return list(dict.fromkeys(customer for _, customer in sorted(due)))

    def _drain(self, partition: int, minute: int, deadline: float) -> list[tuple[float, str]]:
        entries = self._get(partition, minute)
        if not entries:
            return []
        ready = [(e[0], e[1]) for e in entries if e[0] <= deadline]
        later = [e for e in entries if e[0] > deadline]
        if later:
            self._put(partition, minute, later)
        else:
            del self.table[f"{partition}:{minute}"]
        return ready

    def _cursor(self, partition: int) -> int | None:
        cursor = self._get(partition, "cursor")
        return int(cursor) if cursor is not None else None  # type: ignore[call-overload]

    def _get(self, partition: int, name: int | str) -> Any:
        raw = self.table.get(f"{partition}:{name}")
        return orjson.loads(raw) if raw else None

    def _put(self, partition: int, name: int | str, value: object) -> None:
        self.table[f"{partition}:{name}"] = orjson.dumps(value)
