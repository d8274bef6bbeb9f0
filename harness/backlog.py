"""The customer agent's work on a backlog, without Kafka or RocksDB: what ``make bench``
times as "the domain alone", and what the tests use to show that a backlog's outputs do not
depend on how it is batched."""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.customers import Batch, Decider, catalog_input, partition_for
from harness.kafka import Record
from schemas.events import CATALOG
from streams.codec import NO_DEADLINE, decode_state, micros, read_header
from streams.domain.step import Clock
from streams.model_params import ModelRegistry
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Fetched:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # milliseconds


class Backlog:
    """``messages`` as topics that already hold them all (Kafka reports each input's end
    where its messages end), worked through by the same ``Decider`` as a worker's, one
    batch of ``settings.batch_size`` messages at a time: decoding into the partitions'
    buffers, products fanned out, each customer's step with its outputs and encoded state,
    and the customers whose time-driven work is due stepped as the store's due index has
    them. Dicts stand in for the store and the interest index; every partition reads the
    catalog's messages; co-purchases go into the cross-sell model. The internal referrals
    topic is not read back (see README, *Referrals*)."""

    def __init__(self, settings: Settings, messages: Sequence[Record],
                 wall: datetime | None = None) -> None:
        self.settings = settings
        self.messages = messages
        self.wall = wall  # the wall clock of every batch (default: the real one)
        self.decider = Decider(settings, ModelRegistry())
        self.partitions = {n: self.decider.partition_time(n, dict.fromkeys(self.decider.inputs,
                                                                           0),
                                                          event_clock=False, idle=0.0)
                           for n in range(settings.partitions)}
        self.store: dict[tuple[int, bytes], bytes | None] = {}
        self.index: dict[tuple[int, str], set[str]] = defaultdict(set)
        # Each customer's next deadline, and per partition (deadline, customer) earliest
        # first (entries whose customer's deadline has moved since are skipped).
        self.deadlines: dict[tuple[int, bytes], int] = {}
        self.due: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self.inputs = [  # which inputs each message is read by
            [(number, catalog_input(self.decider.catalog,
                                    partition_for(key or b"", settings.partitions)))
             for number in self.partitions] if topic == CATALOG
            else [(partition_for(key or b"", settings.partitions), settings.topic(topic))]
            for topic, key, _ in messages]
        for offset, readers in enumerate(self.inputs):
            for number, name in readers:
                self.partitions[number].inputs[name].highwater = offset + 1

    def run(self, written: Callable[[Batch], None] | None = None) -> int:
        """Every batch, each passed to ``written`` once done; returns how many messages
        the batches accounted for."""
        accounted = 0
        size = self.settings.batch_size
        for first in range(0, len(self.messages), size):
            batch = self._batch(first, self.messages[first:first + size])
            if written is not None:
                written(batch)
            accounted += sum(batch.events.values())
        return accounted

    def _batch(self, first: int, messages: Sequence[Record]) -> Batch:
        decider = self.decider
        wall, mono = self.wall or datetime.now(UTC), time.monotonic()
        published = int(wall.timestamp() * 1000)
        batch = Batch(wall)
        by_input: dict[tuple[int, str], list[Fetched]] = defaultdict(list)
        for offset, (_, key, value) in enumerate(messages, first):
            for reader in self.inputs[offset]:
                by_input[reader].append(Fetched(offset, key, value, published))
        for (number, topic), records in by_input.items():
            decider.receive(self.partitions[number], topic, records, batch, mono)
        for partition in self.partitions.values():
            for source in partition.inputs.values():  # its end, as confirmed now
                source.highwater = max(source.highwater or 0, source.position)
                source.polled_at = time.time()
        for number, partition in self.partitions.items():
            ready, _ = partition.take_ready(mono + 1.0, wall)

            def interested(keys: list[str], number: int = number) -> set[str]:
                return set().union(*(self.index[number, k] for k in keys))

            groups = decider.group(ready, interested)
            until, queue = micros(partition.due_until), self.due[number]
            while queue and queue[0][0] <= until:
                at, name = heapq.heappop(queue)
                if self.deadlines.get((number, name)) == at:
                    groups.setdefault(name.decode(), [])
            clock = Clock(due_until=partition.due_until, horizon=wall, now=wall)
            for customer_id, incoming in groups.items():
                record = self.store.get((number, customer_id.encode()))
                state = decode_state(record) if record is not None else None
                before = read_header(record) if record is not None else None
                decider.decide(batch, number, customer_id, state, before, incoming, clock)
        self._store(batch)
        return batch

    def _store(self, batch: Batch) -> None:
        for change in batch.changes:
            self.store[change.partition, change.name] = change.record
            deadline = read_header(change.record).deadline_us if change.record else NO_DEADLINE
            self.deadlines[change.partition, change.name] = deadline
            if deadline != NO_DEADLINE:
                heapq.heappush(self.due[change.partition], (deadline, change.name))
            for interest in change.unindexed:
                self.index[change.partition, interest].discard(change.name.decode())
            for interest in change.indexed:
                self.index[change.partition, interest].add(change.name.decode())
        for (topic, _), records in batch.outbox.records.items():
            if topic == self.decider.co_purchase_topic:  # as every worker's reader does
                for _, value in records:
                    self.decider.learn(value)
