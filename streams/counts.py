"""Per-partition counters kept in a table, so a worker can report gauges for exactly the
partitions it owns (they move with the partitions and are restored from the changelog)."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping


class PartitionCounts:
    def __init__(self, table: MutableMapping[str, bytes | None]) -> None:
        self.table = table

    def add(self, partition: int, label: str, delta: int) -> None:
        key = f"{partition}:{label}"
        self.table[key] = str(self.get(partition, label) + delta).encode()

    def get(self, partition: int, label: str) -> int:
        raw = self.table.get(f"{partition}:{label}")
        return int(raw) if raw else 0

    def total(self, partitions: Iterable[int], label: str) -> int:
        return sum(self.get(p, label) for p in partitions)
