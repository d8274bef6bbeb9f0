"""The customer agent: every input event of the partitions this worker owns, in batches.

Each turn of the loop:

1. **take a batch**: the messages fetched so far, up to ``VALUESTREAM_BATCH_SIZE``, waiting
   up to ``VALUESTREAM_BATCH_WAIT_MS`` for more once the first has arrived (and up to
   ``VALUESTREAM_TICK_SECONDS`` when nothing arrives, so that time-driven work still runs);
2. **decode** each message; one that cannot be read becomes a dead letter at once, the
   others wait in their partition's buffer (``streams/ordering.py``);
3. per partition, take the events up to the partition's watermark, **group** them by
   customer, add the customers whose time-driven work is due by the partition's clock,
   and call the domain's **step** for each customer;
4. **emit**: send every output (snapshots, churn-risk and follow-up events, dead letters)
   and wait until the broker has acknowledged all of them;
5. **store**: only then send each changed customer's state to the state changelog and wait
   again, then write the states, the due index and the changelog position to the local store
   in one atomic write;
6. **acknowledge**: commit the input offsets (at most every ``COMMIT_INTERVAL`` seconds).

Because outputs are acknowledged before the state that remembers their events as processed
is written anywhere, a crash at any moment loses no output: the events whose state was not
written are processed again and their outputs sent again, with the same ids. Events whose
state was written are recognised as duplicates (the state remembers their ids). The agent
never stalls on a bad message: it becomes a dead letter, and a step that raises (a bug)
turns that customer's events into ``processing_error`` dead letters.

Faust runs the worker (lifecycle, web server, timers); the agent owns its consumer group
membership, because Faust's per-message stream path alone caps a worker at about 8,500
messages per second on a 2-core machine (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from kafka.partitioner.default import murmur2
from mode import Service

from schemas.events import CATALOG, ProductPublished
from streams.assignor import CopartitionedAssignor
from streams.clients import async_options
from streams.codec import (
    CATALOG_POSITIONS,
    POSITIONS_HEADER,
    Header,
    decode_marker,
    decode_positions,
    decode_state,
    encode_marker,
    encode_positions,
    encode_state,
    header_of,
    marker_name,
    micros,
    read_header,
)
from streams.deadletters import dead_letter
from streams.decode import Invalid, decode
from streams.domain.churn import LEVELS
from streams.domain.copurchase import CoPurchase, CoPurchaseModel
from streams.domain.interests import product_keys
from streams.domain.profile import build_profile, timestamp
from streams.domain.referrals import Contribution
from streams.domain.state import CustomerState, Rejected, Source
from streams.domain.step import Clock, Incoming, StepResult, step
from streams.metrics import (
    BATCH_EVENTS,
    BATCH_SECONDS,
    CHURN_CHANGES,
    CO_PURCHASES_LEARNED,
    CONSUMER_LAG,
    CUSTOMERS,
    DEAD_LETTERS_WRITTEN,
    DUE_WORK,
    EMITTED,
    EVENTS,
    FOLLOW_UPS_DROPPED,
    FOLLOW_UPS_EMITTED,
    LATE_EVENTS,
    PARKED_RESOLVED,
    PARTITION_CLOCK,
    PROCESSING_ERRORS,
    RECORDS_SKIPPED,
    REFERRALS_REFUSED,
    RESTORE_SECONDS,
    RESTORED,
)
from streams.model_params import ModelRegistry
from streams.ordering import NEVER, Input, PartitionTime
from streams.producer import Outbox
from streams.settings import MAX_RECORD_BYTES, Settings
from streams.store import Change, LocalStore, StateCache
from streams.topics import (
    CHURN_RISK,
    CUSTOMER_VALUE,
    DEAD_LETTERS,
    FOLLOW_UPS,
    co_purchases_topic,
    group_inputs,
    referrals_topic,
    state_changelog_topic,
)

log = logging.getLogger(__name__)
COMMIT_INTERVAL = 1.0  # seconds between input offset commits while busy
RETRY_PAUSE = 2.0  # seconds before the loop starts again after a failure
RESTORE_CHUNK = 50_000  # changelog records applied to the local store at a time
MAX_BUFFERED = 5_000  # per input topic-partition: fetching from it pauses above this
FULL_COLLECTION_SECONDS = 60.0
# The work a batch takes on, in seconds: well under a third of the session timeout, since
# the group's heartbeats (every 3 s) are sent between batches.
STEP_SECONDS = 1.0
PURGE_INTERVAL = 60.0  # seconds: erased keys leave RocksDB's files at least this often
RELEASE_DELAY = 600.0  # seconds a partition moved to another worker stays in the local store
BROKER_SILENT_AFTER = 10.0  # seconds without a fetch response: the broker is unreachable
MAX_ERROR_MESSAGE = 1_000  # characters of a dead letter's error message
JSON = msgspec.json.Encoder()
CO_PURCHASE = msgspec.json.Decoder(CoPurchase)


class Message(Protocol):
    """What the agent reads of a fetched message (aiokafka's ConsumerRecord has it)."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # milliseconds: when the producer sent it, or the broker appended it


class CustomerAgent(Service):
    """The batch loop of one worker, with the partitions it owns (see the module doc)."""

    def __init__(self, settings: Settings, models: ModelRegistry, url: str) -> None:
        super().__init__()
        self.settings = settings
        self.models = models
        self.decider = Decider(settings, models)
        self.rules = self.decider.rules
        self.inputs = self.decider.inputs
        self.changelog = state_changelog_topic(settings)
        self.assignor = CopartitionedAssignor(url)
        self.cache = StateCache(settings.state_cache)
        self.partitions: dict[int, PartitionTime] = {}  # owned and restored
        self.restoring: set[int] = set()  # owned, state not restored yet
        # Owned partitions with input they had when assigned still unprocessed: input topic
        # -> its end offset then. A customer not found there may be in that backlog.
        self.catching_up: dict[int, dict[str, int]] = {}
        self.paused: set[TopicPartition] = set()  # inputs ahead of their partition
        self.clocks: dict[int, datetime] = {}  # partition clocks, kept across rebalances
        # Partitions let go of: monotonic time then. Their local records are kept a while
        # (one coming back restores only what changed), then wiped (erasures there since
        # reach this worker's store only through the changelog).
        self.released: dict[int, float] = {}
        self.marker_ttl = settings.erasure_bound / 5
        self.marker_secret = settings.marker_secret  # derived once, used per new customer
        tenth = settings.erasure_bound.total_seconds() / 10
        self.purge_interval = min(PURGE_INTERVAL, tenth)
        self.release_delay = min(RELEASE_DELAY, tenth)
        self._purged = time.monotonic()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._last_commit = 0.0
        self._committed: dict[TopicPartition, int] = {}
        self._assigned = False  # a first assignment has been received
        self.failure: str | None = None  # why the loop is starting again, until a batch works
        self._full_collection = time.monotonic()
        self._turn = 0  # which partition a batch serves first
        # Seconds per event or due customer, recently; until measured, a batch may take on
        # the batch size.
        self._step_cost = STEP_SECONDS / settings.batch_size
        # Catalog positions (catalog partition -> next offset) as last stored, per partition.
        self.catalog_stored: dict[int, dict[int, int]] = {}

    @property
    def ready(self) -> bool:
        """Assigned, and every owned partition restored."""
        return self._assigned and not self.restoring

    def problems(self) -> list[str]:
        """What keeps this worker from serving and processing now (empty: nothing)."""
        found = []
        if not self._assigned:
            found.append("no partitions assigned yet")
        if self.restoring:
            found.append(f"restoring partitions {sorted(self.restoring)} from the changelog")
        silent = self.broker_silent_for()
        if silent is not None and silent > BROKER_SILENT_AFTER:
            found.append(f"no answer from the broker for {silent:.0f} s")
        if self.failure is not None:
            found.append(f"starting again after a failure: {self.failure}")
        return found

    def broker_silent_for(self) -> float | None:
        """Seconds since the last fetch response for an owned partition (None: none owned)."""
        if not self._assigned:
            return None
        paused = self.consumer.paused()  # not fetched on purpose (restoring, flow control)
        polls = [self.consumer.last_poll_timestamp(tp) for tp in self.consumer.assignment()
                 if tp not in paused]
        if not polls:
            return None
        latest = max((p for p in polls if p is not None), default=None)
        return None if latest is None else max(0.0, time.time() - latest / 1000)

    # --- lifecycle ------------------------------------------------------------------------

    async def on_start(self) -> None:
        if self.settings.erasure_key is None:
            log.warning("VALUESTREAM_ERASURE_KEY is not set: erasure markers are keyed by a "
                        "hash derived from the app id, which anyone can compute; set a secret "
                        "in production (README, *Erasure*)")
        kafka = async_options(self.settings)
        self.store = LocalStore(self.settings.data_dir)
        self.producer = AIOKafkaProducer(
            **kafka, acks="all", enable_idempotence=True,
            max_batch_size=1_000_000, max_request_size=1_048_576, linger_ms=0)
        self.consumer = AIOKafkaConsumer(
            **kafka, group_id=self.settings.group_id,
            client_id=f"{self.settings.group_id}-agent", enable_auto_commit=False,
            auto_offset_reset="earliest", partition_assignment_strategy=(self.assignor,),
            session_timeout_ms=int(self.settings.session_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, self.settings.session_timeout / 3) * 1000),
            max_partition_fetch_bytes=1_048_576, fetch_max_wait_ms=20)
        self.restorer = AIOKafkaConsumer(
            **kafka, group_id=None, enable_auto_commit=False,
            client_id=f"{self.settings.group_id}-restore", max_partition_fetch_bytes=4_194_304)
        # Every partition of the catalog, for every owned partition (positions are stored
        # with the customers' states, not committed by a group).
        self.catalog_reader = AIOKafkaConsumer(
            **kafka, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            client_id=f"{self.settings.group_id}-catalog", fetch_max_wait_ms=20)
        await self.producer.start()
        await self.restorer.start()
        await self.catalog_reader.start()
        self.catalog_reader.assign(self.catalog_tps)
        await self.consumer.start()
        self.consumer.subscribe(self.decider.customer_inputs, listener=_Rebalance(self))
        self.add_future(self._run())

    async def on_stop(self) -> None:
        self._stopping = True
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=30)
        except TimeoutError:
            log.warning("the agent did not finish its batch within 30 s")
        async with self._lock:
            await self._commit_offsets(force=True)
        await self.consumer.stop()  # leaves the group: the partitions move at once
        await self.restorer.stop()
        await self.catalog_reader.stop()
        await self.producer.stop()
        self.store.close()

    async def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    async with self._lock:
                        await self._restore_assigned()
                    records = await self._take()
                    async with self._lock:
                        await self._process(records)
                except (KafkaError, OSError) as exc:
                    await self._recover(f"Kafka failed: {exc!r}")
                except Exception:  # a bug in the plumbing: start over from what is durable
                    log.exception("the batch failed")
                    PROCESSING_ERRORS.labels("batch").inc()
                    await self._recover("the batch failed")
        finally:
            self._stopped.set()

    async def _recover(self, why: str) -> None:
        """Forget everything in memory and start again from the durable state: the local
        store caught up with the changelog, the inputs from their committed offsets."""
        log.warning("%s; starting again from the committed state in %.0f s", why, RETRY_PAUSE)
        self.failure = why
        await asyncio.sleep(RETRY_PAUSE)
        async with self._lock:
            self.cache.drop_partitions(set(self.partitions) | self.restoring)
            self.restoring |= set(self.partitions)
            self.clocks.update((p, t.clock) for p, t in self.partitions.items())
            self.partitions.clear()
            self._committed.clear()

    # --- partitions coming and going ------------------------------------------------------

    def _input_tps(self, partitions: set[int]) -> list[TopicPartition]:
        """The group consumer's topic-partitions of these partitions."""
        return [TopicPartition(t, p) for p in sorted(partitions)
                for t in self.decider.customer_inputs]

    @property
    def catalog_tps(self) -> list[TopicPartition]:
        return [TopicPartition(self.decider.catalog, p) for p in range(self.settings.partitions)]

    async def revoke(self, partitions: set[int]) -> None:
        """Before a rebalance: commit what was processed and let go of the buffers (the
        consumer fetches again from the committed offsets)."""
        async with self._lock:
            await self._commit_offsets(force=True)
            for partition in partitions:
                if (time_ := self.partitions.pop(partition, None)) is not None:
                    self.clocks[partition] = time_.clock
                self.released[partition] = time.monotonic()
                self.restoring.discard(partition)
                self.catching_up.pop(partition, None)
            self.paused = {tp for tp in self.paused if tp.partition not in partitions}

    async def assign(self, partitions: set[int]) -> None:
        """After a rebalance: partitions kept need nothing; the others are restored from
        the changelog before their events are processed. States of partitions now owned
        by others are dropped from memory."""
        async with self._lock:
            gone = self.cache.partitions() - partitions
            self.cache.drop_partitions(gone)
            for partition in gone:
                self.store.forget_counts(partition)
            for partition in partitions:
                self.released.pop(partition, None)
            self.restoring = set(partitions)
            self.consumer.pause(*self._input_tps(partitions))
            self._assigned = True

    async def _restore_assigned(self) -> None:
        if not self.restoring:
            return
        started = time.monotonic()
        partitions = set(self.restoring)
        await self._restore(partitions)
        for partition in partitions:
            positions = {}
            for tp in self._input_tps({partition}):  # from the committed offsets
                committed = await self.consumer.committed(tp)
                if committed is None:
                    await self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, committed)
                positions[tp.topic] = await self.consumer.position(tp)
            record = self.store.get(partition, CATALOG_POSITIONS)
            stored = decode_positions(record) if record is not None else {}
            self.catalog_stored[partition] = stored
            for number, name in enumerate(self.decider.catalog_inputs):
                positions[name] = stored.get(number, 0)
            ends = await self.consumer.end_offsets(self._input_tps({partition}))
            self.catching_up[partition] = {tp.topic: end for tp, end in ends.items()}
            self.partitions[partition] = self.decider.partition_time(
                partition, positions, event_clock=self.settings.clock == "event",
                idle=self.settings.input_idle, clock=self.clocks.get(partition, NEVER))
        self.restoring -= partitions
        await self._rewind_catalog()
        self.consumer.resume(*self._input_tps(partitions))
        self.paused = {tp for tp in self.paused if tp.partition not in partitions}
        RESTORE_SECONDS.observe(time.monotonic() - started)
        log.info("partitions %s ready in %.1f s", sorted(partitions), time.monotonic() - started,
                 extra={"partitions": sorted(partitions)})

    async def _rewind_catalog(self) -> None:
        """Read each catalog partition from the earliest position an owned partition needs
        (the others skip what they have read)."""
        for number, name in enumerate(self.decider.catalog_inputs):
            needed = min((t.inputs[name].position for t in self.partitions.values()),
                         default=None)
            tp = TopicPartition(self.decider.catalog, number)
            if needed is not None and needed < await self.catalog_reader.position(tp):
                self.catalog_reader.seek(tp, needed)

    async def _restore(self, partitions: set[int]) -> None:
        """Bring the local store of these partitions up to the end of the changelog."""
        tps = {TopicPartition(self.changelog, p): p for p in partitions}
        self.restorer.assign(list(tps))
        starts = await self.restorer.beginning_offsets(list(tps))
        ends = await self.restorer.end_offsets(list(tps))
        for tp, partition in tps.items():
            self.store.load_counts(partition)
            local = self.store.changelog_position(partition)
            if local is None or not starts[tp] <= local <= ends[tp]:
                self.store.wipe(partition)  # nothing local, or from another changelog
                local = starts[tp]
            self.restorer.seek(tp, local)
        pending: dict[TopicPartition, dict[bytes, bytes | None]] = defaultdict(dict)
        positions = {tp: await self.restorer.position(tp) for tp in tps}
        held = 0
        while any(positions[tp] < ends[tp] for tp in tps):
            fetched = await self.restorer.getmany(timeout_ms=1000, max_records=RESTORE_CHUNK)
            for tp, records in fetched.items():
                latest = pending[tp]
                for record in records:
                    latest[record.key] = record.value
                held += len(records)
                RESTORED.inc(len(records))
                positions[tp] = records[-1].offset + 1 if records else positions[tp]
            for tp in tps:
                positions[tp] = max(positions[tp], await self.restorer.position(tp))
            if held >= RESTORE_CHUNK or not any(positions[tp] < ends[tp] for tp in tps):
                for tp, latest in pending.items():
                    self.store.restore(tps[tp], latest, positions[tp])
                pending.clear()
                held = 0
                await asyncio.sleep(0)  # let heartbeats and web requests through
        for tp, partition in tps.items():  # partitions with nothing new
            if self.store.changelog_position(partition) != ends[tp]:
                self.store.restore(partition, {}, ends[tp])
        self.restorer.assign([])

    # --- one batch ------------------------------------------------------------------------

    async def _take(self) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        waiting = any(p.buffered() for p in self.partitions.values())
        timeout = min(self.settings.tick_seconds, self.settings.input_idle,
                      self.settings.live_delay) if waiting else self.settings.tick_seconds
        size = self.settings.batch_size
        batch = await self.consumer.getmany(timeout_ms=max(1, int(timeout * 1000)),
                                            max_records=size)
        catalog = await self.catalog_reader.getmany(timeout_ms=0)
        count = sum(map(len, batch.values()))
        deadline = time.monotonic() + self.settings.batch_wait
        while 0 < count < size and (left := deadline - time.monotonic()) > 0.001:
            more = await self.consumer.getmany(timeout_ms=max(1, int(left * 1000)),
                                               max_records=size - count)
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
            count += sum(map(len, more.values()))
        return batch | catalog  # the catalog reader's topic-partitions are its own

    async def _process(self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                       ) -> None:
        started = time.perf_counter()
        wall, mono = datetime.now(UTC), time.monotonic()
        batch = Batch(wall)
        received = 0
        for tp, records in fetched.items():
            if tp.topic == self.decider.catalog:  # for every owned partition
                name = catalog_input(tp.topic, tp.partition)
                for partition in self.partitions.values():
                    unread = [r for r in records if r.offset >= partition.inputs[name].position]
                    if unread:
                        self.decider.receive(partition, name, unread, batch, mono)
                received += len(records)
                continue
            partition = self.partitions.get(tp.partition)
            if partition is None:
                continue  # revoked meanwhile: the new owner reads it again
            received += len(records)
            self.decider.receive(partition, tp.topic, records, batch, mono)
        for tp in self.consumer.assignment():
            if (partition := self.partitions.get(tp.partition)) is not None:
                _confirm(partition.inputs[tp.topic], self.consumer, tp)
        for tp in self.catalog_tps:
            name = catalog_input(tp.topic, tp.partition)
            for partition in self.partitions.values():
                _confirm(partition.inputs[name], self.catalog_reader, tp)
        # Events and due work of about STEP_SECONDS at most, shared by the partitions (a
        # different one first each time): a backlog released at once is worked through over
        # several batches, each short enough for the group's heartbeats.
        budget = min(self.settings.batch_size, max(100, int(STEP_SECONDS / self._step_cost)))
        numbers = sorted(self.partitions)
        self._turn += 1
        first = self._turn % len(numbers) if numbers else 0
        stepping = time.perf_counter()
        steps = 0
        for number in numbers[first:] + numbers[:first]:
            steps += self._decide(number, self.partitions[number], batch, mono, budget - steps)
            self._expire_markers(number, batch)
        if steps >= 100:  # the cost of a step, as the budget of the next batch's
            cost = (time.perf_counter() - stepping) / steps
            self._step_cost = 0.7 * self._step_cost + 0.3 * cost
        self._mark_erased(batch)
        self._store_catalog_positions(batch)
        await self._write(batch)
        self._tidy_store()
        self.failure = None
        self._caught_up()
        self._flow_control()
        await self._commit_offsets(force=False)
        self._collect_garbage()
        batch.count_metrics()
        if received:
            BATCH_EVENTS.observe(received)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    def _decide(self, number: int, partition: PartitionTime, batch: Batch, mono: float,
                budget: int) -> int:
        """Step the customers with released events or due work, about ``budget`` of them
        at most; returns how many."""
        if budget <= 0:
            return 0
        ready, late = partition.take_ready(mono, batch.wall, limit=budget)
        for topic in late:
            batch.late[topic] += 1
        if partition.clock != NEVER:
            PARTITION_CLOCK.labels(str(number)).set(partition.clock.timestamp())
        groups = self.decider.group(ready, lambda keys: self.store.interested(number, keys))
        due = 0
        if partition.due_until != NEVER and budget > len(ready):
            # time-driven work up to the partition's clock (what is left: the next batch)
            for _, customer_id in self.store.due(number, micros(partition.due_until),
                                                 budget - len(ready)):
                if customer_id not in groups:
                    groups[customer_id] = []
                    due += 1
            if due:
                DUE_WORK.labels(str(number)).inc(due)
        if not groups:
            return 0
        clock = Clock(due_until=partition.due_until, horizon=partition.horizon(batch.wall),
                      now=partition.now(batch.wall))
        for customer_id, incoming in groups.items():
            self._step(number, customer_id, incoming, clock, batch)
        return len(ready) + due

    def _step(self, number: int, customer_id: str, incoming: list[Incoming], clock: Clock,
              batch: Batch) -> None:
        state = self.cache.get(number, customer_id)
        if state is not None:
            before: Header | None = header_of(state)
        else:
            record = self.store.get(number, customer_id.encode())
            before = read_header(record) if record is not None else None
            state = decode_state(record) if record is not None else self._erased(
                number, customer_id)
        new = self.decider.decide(batch, number, customer_id, state, before, incoming, clock)
        if new is None or new.erased_only:
            self.cache.discard(number, customer_id)
        else:
            self.cache.put(number, new)

    def _marker(self, number: int, customer_id: str) -> tuple[bytes, bytes | None]:
        name = marker_name(customer_id, self.marker_secret)
        return name, self.store.get(number, name)

    def _erased(self, number: int, customer_id: str) -> CustomerState | None:
        """The state of a customer without a record: an erasure, if a marker says so."""
        _, marker = self._marker(number, customer_id)
        if marker is None:
            return None
        return CustomerState(customer_id=customer_id, erased_at=decode_marker(marker))

    def _mark_erased(self, batch: Batch) -> None:
        """Store the batch's erasure markers, keyed by the ids' keyed hash, until they
        expire."""
        expires = micros(batch.wall + self.marker_ttl)
        for number, customer_id, erased_at in batch.erasures:
            name, before = self._marker(number, customer_id)
            batch.changes.append(Change(number, name, encode_marker(erased_at, expires),
                                        read_header(before) if before is not None else None))

    def _store_catalog_positions(self, batch: Batch) -> None:
        """Each partition's catalog positions, stored and logged with its customers' states
        (so that a partition moved to another worker reads on where this one stopped)."""
        for number, partition in self.partitions.items():
            positions = {p: partition.inputs[name].commit_offset()
                         for p, name in enumerate(self.decider.catalog_inputs)}
            before = self.catalog_stored.get(number)
            if positions != before:
                header = POSITIONS_HEADER if before is not None else None
                batch.changes.append(Change(number, CATALOG_POSITIONS,
                                            encode_positions(positions), header))
                self.catalog_stored[number] = positions

    def _expire_markers(self, number: int, batch: Batch) -> None:
        """Erasure markers whose time is up (on the wall clock) are deleted."""
        for name in self.store.expired(number, micros(batch.wall), self.settings.batch_size):
            record = self.store.get(number, name)
            if record is not None:
                batch.changes.append(Change(number, name, None, read_header(record)))

    def _tidy_store(self) -> None:
        """Wipe partitions let go of a while ago; purge deleted keys from RocksDB's files."""
        now = time.monotonic()
        for partition, released_at in list(self.released.items()):
            if now - released_at >= self.release_delay:
                self.store.wipe(partition)
                del self.released[partition]
        if self.store.erased and now - self._purged >= self.purge_interval:
            started = time.perf_counter()
            self.store.purge()
            self._purged = now
            log.info("purged deleted keys from the local store in %.2f s",
                     time.perf_counter() - started)

    async def _write(self, batch: Batch) -> None:
        """Outputs first, acknowledged; then the states (changelog, then local store)."""
        if batch.outbox.records:
            await batch.outbox.flush(self.producer)
        if not batch.changes:
            return
        changelog = Outbox()
        for change in batch.changes:
            changelog.add(self.changelog, change.partition, change.name, change.record)
        written = await changelog.flush(self.producer)
        self.store.commit(batch.changes, {p: offset + 1 for (_, p), offset in written.items()})
        for number, customer_id, header in batch.unscheduled:
            self.store.unschedule(number, customer_id, header)

    def _caught_up(self) -> None:
        """Partitions whose backlog from their assignment is processed (and written)."""
        for number, ends in list(self.catching_up.items()):
            partition = self.partitions.get(number)
            if partition is None or all(partition.inputs[topic].commit_offset() >= end
                                        for topic, end in ends.items()):
                del self.catching_up[number]

    def _collect_garbage(self) -> None:
        """Collect garbage between batches, once a minute. Python's automatic collection is
        off in a worker (``streams/cli.py``): run every few thousand allocations, it cost
        about 15% of a busy worker's time, most of it scanning the states kept in memory.
        Almost everything a batch allocates is freed by reference counting as soon as it is
        done with; a collection only finds the rare reference cycles."""
        if time.monotonic() - self._full_collection > FULL_COLLECTION_SECONDS:
            gc.collect()
            self._full_collection = time.monotonic()

    def _flow_control(self) -> None:
        """Pause fetching from an input that is far ahead of the others of its partition
        (many events buffered, waiting for the watermark), until they catch up. Only the
        inputs ahead are paused: the one holding the watermark back keeps being read."""
        for number, partition in self.partitions.items():
            for topic in self.decider.customer_inputs:
                source = partition.inputs[topic]
                tp = TopicPartition(topic, number)
                if len(source.buffer) > MAX_BUFFERED and tp not in self.paused:
                    self.consumer.pause(tp)
                    self.paused.add(tp)
                elif len(source.buffer) < MAX_BUFFERED // 2 and tp in self.paused:
                    self.consumer.resume(tp)
                    self.paused.discard(tp)

    async def _commit_offsets(self, force: bool) -> None:
        if not force and time.monotonic() - self._last_commit < COMMIT_INTERVAL:
            return
        offsets = {TopicPartition(topic, number): partition.inputs[topic].commit_offset()
                   for number, partition in self.partitions.items()
                   for topic in self.decider.customer_inputs}
        changed = {tp: o for tp, o in offsets.items() if self._committed.get(tp) != o}
        self._last_commit = time.monotonic()
        if not changed:
            return
        try:
            await self.consumer.commit(changed)
        except CommitFailedError as exc:  # rebalanced meanwhile: the new owner reprocesses
            log.warning("offset commit failed: %s", exc)
            return
        self._committed.update(changed)

    # --- what the web views and gauges read -----------------------------------------------

    def partition_of(self, customer_id: str) -> int:
        return partition_for(customer_id.encode(), self.settings.partitions)

    def lookup(self, customer_id: str) -> CustomerState | None:
        """The state of a customer of an owned, restored partition."""
        number = self.partition_of(customer_id)
        state = self.cache.get(number, customer_id)
        if state is None:
            record = self.store.get(number, customer_id.encode())
            state = decode_state(record) if record is not None else None
        return state

    def settled(self) -> bool:
        """Ready, nothing waiting in a buffer, the catalog read to its end, and the
        time-driven work up to every partition's clock done."""
        for number, partition in self.partitions.items():
            if partition.buffered() or partition.due_until < partition.clock:
                return False
            for name in self.decider.catalog_inputs:
                source = partition.inputs[name]
                if source.highwater is None or source.position < source.highwater:
                    return False
            if partition.due_until != NEVER and self.store.due(
                    number, micros(partition.due_until), 1):
                return False
        return self.ready

    def refresh_gauges(self) -> None:
        for level in LEVELS:
            CUSTOMERS.labels(level).set(sum(self.store.counts[p].levels[level]
                                            for p in self.partitions
                                            if p in self.store.counts))
        for number, partition in self.partitions.items():
            for topic, source in partition.inputs.items():
                if source.highwater is not None:
                    lag = max(source.highwater - source.commit_offset(), 0)
                    CONSUMER_LAG.labels(topic, str(number)).set(lag)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as producers of the input topics use it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def referral_record(update: Contribution) -> bytes:
    """A ``referral.updated`` event (``schemas.events.ReferralUpdated``); the same update
    always gets the same id."""
    event_id = hashlib.sha256(
        f"{update.referred}|{update.at.isoformat()}|{update.key!r}".encode()).hexdigest()[:32]
    return orjson.dumps({
        "event_id": event_id, "type": "referral.updated", "customer_id": update.referrer,
        "occurred_at": timestamp(update.at), "referred": update.referred,
        "referred_at": timestamp(update.referred_at),
        "net_revenue": str(update.net_revenue),
        "clv": str(update.clv) if update.clv is not None else None,
        "first_order_at": (timestamp(update.first_order_at)
                           if update.first_order_at is not None else None),
        "descendants": list(update.descendants), "erased": update.erased})


def _confirm(source: Input, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    """What Kafka last said of an input: its end offset, and when."""
    source.highwater = consumer.highwater(tp)
    polled = consumer.last_poll_timestamp(tp)
    source.polled_at = polled / 1000 if polled is not None else float("-inf")


def catalog_input(catalog: str, partition: int) -> str:
    """The name of one catalog partition as an input of every partition."""
    return f"{catalog}#{partition}"


def split_input(name: str, partition: int) -> tuple[str, int]:
    """An input's topic and partition (a catalog input names its own)."""
    topic, _, number = name.rpartition("#")
    return (topic, int(number)) if topic else (name, partition)


class Decider:
    """The agent's work on a batch that needs no I/O: decoding and buffering messages, and
    each customer's step with the records it produces (``make bench`` times this alone as
    "the domain work")."""

    def __init__(self, settings: Settings, models: ModelRegistry) -> None:
        self.models = models
        self.rules = settings.rules()
        self.max_message_bytes = settings.max_message_bytes
        self.max_state_bytes = settings.max_state_bytes
        self.live_delay = settings.live_delay
        # Input name -> schema name. Every partition reads the customer-keyed topics' own
        # partition (through the consumer group) and every partition of ``catalog`` (keyed
        # by SKU: a product is for every partition's customers), each named ``catalog#p``.
        self.catalog = settings.topic(CATALOG)
        self.referrals = referrals_topic(settings)  # internal, keyed by the referrer
        self.partition_count = settings.partitions
        customer_keyed = group_inputs(settings)
        self.customer_inputs = list(customer_keyed)
        self.catalog_inputs = [catalog_input(self.catalog, p)
                               for p in range(settings.partitions)]
        self.inputs = customer_keyed | dict.fromkeys(self.catalog_inputs, CATALOG)
        self.rank = {topic: n for n, topic in enumerate(self.inputs)}
        self.co_purchase_topic = co_purchases_topic(settings)
        self.co_purchases = CoPurchaseModel()  # follows co_purchase_topic (``learn``)
        self.outputs = {name: settings.topic(name)
                        for name in (CUSTOMER_VALUE, CHURN_RISK, FOLLOW_UPS, DEAD_LETTERS)}

    def receive(self, partition: PartitionTime, topic: str, records: list[Message],
                batch: Batch, mono: float) -> None:
        """Decode fetched messages into the partition's buffer; unreadable ones become
        dead letters at once."""
        name, rank, number = self.inputs[topic], self.rank[topic], partition.partition
        arrived = batch.wall.timestamp()
        partition.fetched(topic, records[-1].offset, mono, arrived)
        # A catalog message reaches every partition; the one of its own number counts it
        # (and dead-letters it if it cannot be read), so that it is counted once.
        real_topic, real_partition = split_input(topic, number)
        counts = real_partition == number
        for record in records:
            source = Source(real_topic, real_partition, record.offset, record.key,
                            record.value, rank)
            decoded = decode(name, record.key, record.value, self.max_message_bytes, batch.wall)
            if isinstance(decoded, Invalid):
                if counts:
                    batch.events[real_topic, "invalid", "dead_letter"] += 1
                    self.dead_letter(batch, Rejected(source, decoded.code, decoded.message))
                continue
            if isinstance(decoded, ProductPublished) and counts:
                batch.events[real_topic, decoded.type, "offered"] += 1
            partition.buffer(topic, Incoming(decoded, source), batch.wall, arrived,
                             record.timestamp / 1000)

    def partition_time(self, number: int, positions: dict[str, int], event_clock: bool,
                       idle: float, clock: datetime = NEVER) -> PartitionTime:
        """A partition's inputs, read from these offsets."""
        return PartitionTime(number, {topic: Input(topic, position)
                                      for topic, position in positions.items()},
                             event_clock=event_clock, idle=idle, live_delay=self.live_delay,
                             clock=clock)

    def group(self, ready: list[Incoming], interested: Callable[[list[str]], set[str]]
              ) -> dict[str, list[Incoming]]:
        """A partition's ready events by customer. A published product goes to the customers
        the interest index lists under its category or brand, and to those with events in
        this batch (whose index entries may be about to change): work in proportion to the
        customers it may match, not to all."""
        groups: dict[str, list[Incoming]] = defaultdict(list)
        products = []
        for incoming in ready:
            if isinstance(incoming.event, ProductPublished):
                products.append(incoming)
            else:
                groups[incoming.event.customer_id].append(incoming)
        for product in products:
            assert isinstance(product.event, ProductPublished)
            for customer_id in interested(product_keys(product.event)) | set(groups):
                groups[customer_id].append(Incoming(product.event, product.source, customer_id))
        return groups

    def decide(self, batch: Batch, number: int, customer_id: str, state: CustomerState | None,
               before: Header | None, incoming: list[Incoming], clock: Clock
               ) -> CustomerState | None:
        """One customer's step; its outputs and changed state go into ``batch``. Returns
        the state to keep in memory (``None``: forget it, the stored one stands)."""
        predictor = self.models.predictor
        was_indexed = tuple(state.indexed) if state is not None else ()
        try:
            result = step(state, incoming, clock, predictor, self.rules, self.co_purchases)
        except Exception as exc:  # a bug: keep the messages, skip the customer
            log.exception("processing customer %r failed", customer_id,
                          extra={"customer_id": customer_id, "partition": number})
            for item in incoming:
                PROCESSING_ERRORS.labels(item.source.topic).inc()
            if not incoming:
                PROCESSING_ERRORS.labels("due_work").inc()
            self._reject(batch, number, customer_id, before, incoming, "processing_error",
                         repr(exc))
            return None
        new = result.state
        keep = new is not None and result.changed and not new.erased_only
        indexed = tuple(new.indexed) if new is not None and keep else ()
        record = encode_state(new) if new is not None and keep else None
        if record is not None and len(record) > self.max_state_bytes:
            log.warning("customer %r: %d events would grow the state to %d bytes; not applied",
                        customer_id, len(incoming), len(record),
                        extra={"customer_id": customer_id, "partition": number})
            self._reject(batch, number, customer_id, before, incoming, "state_too_large",
                         f"the customer's state would take {len(record):,} bytes; at most "
                         f"{self.max_state_bytes:,} are kept")
            return None
        batch.count(result)
        for rejected in result.dead_letters:
            self.dead_letter(batch, rejected)
        key = customer_id.encode()
        if result.erased:
            batch.emit(self.outputs[CUSTOMER_VALUE], number, key, None, "tombstone")
            if new is not None and new.erased_only:  # nothing left: a marker instead
                batch.erasures.append((number, customer_id, new.erased_at))
                if before is not None:
                    batch.changes.append(Change(number, key, None, before, was_indexed))
        if new is None or record is None:
            return new
        batch.changes.append(Change(number, key, record, before, was_indexed, indexed))
        if result.stuck_at is not None:
            log.error("deadline %s of customer %r did not move; unscheduled", result.stuck_at,
                      customer_id, extra={"customer_id": customer_id, "partition": number})
            batch.unscheduled.append((number, customer_id, header_of(new)))
        value_topic = self.outputs[CUSTOMER_VALUE]
        if new.has_profile:
            as_of = result.decided.at if result.decided is not None else clock.due_until
            profile = build_profile(new, as_of, self.rules, predictor, result.decided)
            batch.emit(value_topic, number, key, JSON.encode(profile), "snapshot")
        for churn in result.churn_events:
            batch.emit(self.outputs[CHURN_RISK], number, key, JSON.encode(churn),
                       "churn_risk_changed")
        for update in result.referrals:  # to the referrer's partition
            referrer = update.referrer.encode()
            batch.emit(self.referrals, partition_for(referrer, self.partition_count), referrer,
                       referral_record(update), "referral")
        for code in result.referrals_refused:
            REFERRALS_REFUSED.labels(code).inc()
        for co_purchase in result.co_purchases:  # SKUs only: no key, no customer's data
            batch.emit(self.co_purchase_topic, number, None, JSON.encode(co_purchase),
                       "co_purchase")
        for follow_up in result.follow_ups:
            batch.emit(self.outputs[FOLLOW_UPS], number, key, JSON.encode(follow_up),
                       "follow_up_due")
        return new

    def learn(self, record: bytes | None) -> None:
        """Take a co-purchase record into the cross-sell model."""
        try:
            self.co_purchases.add(CO_PURCHASE.decode(record or b""))
            CO_PURCHASES_LEARNED.inc()
        except msgspec.DecodeError as exc:  # internal: a bug, or a foreign writer
            log.warning("ignoring a co-purchase record that does not parse: %s", exc)

    def _reject(self, batch: Batch, number: int, customer_id: str, before: Header | None,
                incoming: list[Incoming], code: str, message: str) -> None:
        """A step that cannot be kept: its messages become dead letters, the stored state
        stands; without messages, the customer's due work waits for its next event."""
        for item in incoming:
            batch.events[item.source.topic, item.event.type, "dead_letter"] += 1
            self.dead_letter(batch, Rejected(item.source, code, message))
        if not incoming and before is not None:
            batch.unscheduled.append((number, customer_id, before))

    def dead_letter(self, batch: Batch, rejected: Rejected) -> None:
        source = rejected.source
        letter = dead_letter(source, rejected.code, rejected.message[:MAX_ERROR_MESSAGE],
                             batch.wall, self.max_message_bytes)
        batch.emit(self.outputs[DEAD_LETTERS], source.partition, source.key,
                   JSON.encode(letter), "dead_letter")
        batch.dead_letters[source.topic, rejected.code] += 1


class Batch:
    """What one batch emits, stores and counts."""

    def __init__(self, wall: datetime) -> None:
        self.wall = wall
        self.outbox = Outbox()
        self.changes: list[Change] = []
        self.erasures: list[tuple[int, str, datetime]] = []  # partition, customer, erased at
        self.unscheduled: list[tuple[int, str, Header]] = []
        self.events: Counter[tuple[str, str, str]] = Counter()
        self.late: Counter[str] = Counter()
        self.emitted: Counter[tuple[str, str]] = Counter()
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.parked: Counter[str] = Counter()
        self.follow_ups: Counter[str] = Counter()  # reason
        self.churn_changes: Counter[tuple[str, str]] = Counter()  # previous level, level

    def emit(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
             kind: str) -> None:
        size = len(key or b"") + len(value or b"")
        if size > MAX_RECORD_BYTES:  # would stop the partition: the broker refuses it
            log.error("a %s record of %d bytes for %s is too large to send; skipped", kind,
                      size, topic)
            RECORDS_SKIPPED.labels(topic).inc()
            return
        self.outbox.add(topic, partition, key, value)
        self.emitted[topic, kind] += 1

    def count(self, result: StepResult) -> None:
        for incoming, outcome in result.outcomes:
            if incoming.offered_to is None:  # a product is counted once, when read
                self.events[incoming.source.topic, incoming.event.type, outcome] += 1
        for dropped in result.dropped:
            self.dropped[dropped.reason, dropped.cause] += 1
        for follow_up in result.follow_ups:
            self.follow_ups[follow_up.reason] += 1
        for churn in result.churn_events:
            self.churn_changes[churn.previous_level, churn.level] += 1
        if result.unparked:
            self.parked["applied"] += result.unparked
        if result.expired:
            self.parked["expired"] += result.expired

    def count_metrics(self) -> None:
        for (topic, kind, outcome), n in self.events.items():
            EVENTS.labels(topic, kind, outcome).inc(n)
        for topic, n in self.late.items():
            LATE_EVENTS.labels(topic).inc(n)
        for (topic, kind), n in self.emitted.items():
            EMITTED.labels(topic, kind).inc(n)
        for (topic, code), n in self.dead_letters.items():
            DEAD_LETTERS_WRITTEN.labels(topic, code).inc(n)
        for (reason, cause), n in self.dropped.items():
            FOLLOW_UPS_DROPPED.labels(reason, cause).inc(n)
        for result, n in self.parked.items():
            PARKED_RESOLVED.labels(result).inc(n)
        for reason, n in self.follow_ups.items():
            FOLLOW_UPS_EMITTED.labels(reason).inc(n)
        for (previous, level), n in self.churn_changes.items():
            CHURN_CHANGES.labels(previous, level).inc(n)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, agent: CustomerAgent) -> None:
        self.agent = agent

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.agent.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.agent.assign({tp.partition for tp in assigned})
