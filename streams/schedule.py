"""A due-time index kept in a key-value table: which customers have work due, and when.

Entries live in one-minute buckets per partition (key ``"{partition}:{minute}"``), and a
cursor per partition remembers the first bucket not yet drained. A tick reads only the
buckets between the cursor and now, so its work is proportional to what falls due (plus
one read per elapsed minute), never to the number of customers. Entries are never removed
early: when a customer's deadline moves, a new entry is added and the stale one fires
harmlessly (the caller re-checks the customer's state).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime

import orjson

BUCKET_SECONDS = 60


def _bucket(moment: datetime) -> int:
    return int(moment.timestamp()) // BUCKET_SECONDS


class DueIndex:
    def __init__(self, table: MutableMapping[str, bytes | None]) -> None:
        self.table = table

    def add(self, partition: int, customer_id: str, due: datetime, now: datetime) -> None:
        """Schedule ``customer_id`` at ``due`` (work already due goes into the current bucket)."""
        cursor = self._cursor(partition)
        if cursor is None:  # the partition's first entry: draining starts here
            cursor = _bucket(now)
            self.table[f"{partition}:cursor"] = str(cursor).encode()
        # Never behind the cursor: after a rebalance the new owner's clock may lag the old one's.
        bucket = max(_bucket(max(due, now)), cursor)
        key = f"{partition}:{bucket}"
        raw = self.table.get(key)
        entries = orjson.loads(raw) if raw else []
        entries.append([due.timestamp(), customer_id])
        self.table[key] = orjson.dumps(entries)

    def pop_due(self, partition: int, now: datetime) -> list[str]:
        """Remove and return the customers due at or before ``now``, earliest first."""
        current = _bucket(now)
        stored_cursor = self._cursor(partition)
        cursor = current if stored_cursor is None else stored_cursor
        due: list[tuple[float, str]] = []
        deadline = now.timestamp()
        for bucket in range(cursor, current + 1):
            key = f"{partition}:{bucket}"
            raw = self.table.get(key)
            if not raw:
                continue
            entries = orjson.loads(raw)
            ready = [e for e in entries if e[0] <= deadline]
            later = [e for e in entries if e[0] > deadline]
            due.extend((e[0], e[1]) for e in ready)
            if later:
                self.table[key] = orjson.dumps(later)
            elif ready:
                del self.table[key]
        if current > cursor or stored_cursor is None:
            self.table[f"{partition}:cursor"] = str(current).encode()
        return list(dict.fromkeys(customer for _, customer in sorted(due)))

    def _cursor(self, partition: int) -> int | None:
        raw = self.table.get(f"{partition}:cursor")
        return int(raw) if raw else None
