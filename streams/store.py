"""The worker's local state: one RocksDB database, written once per batch.

Keys start with a kind and the partition (2 bytes, big-endian):

* ``c`` partition name -> the customer's record (``streams.codec``), by customer id (UTF-8),
  or an erasure marker, by its keyed hash (``streams.codec.marker_name``);
* ``d`` partition deadline customer_id -> b"": the due-time index, ordered by deadline
  (microseconds since 1970, offset by 2^63 so that byte order is time order);
* ``x`` partition expiry marker_name -> b"": erasure markers by the wall-clock time they
  expire, ordered the same way;
* ``i`` partition interest customer_id -> b"": the interest index, the customers a published
  product may interest (``interests.index_keys``), by an 8-byte hash of the interest;
* ``h`` partition clv customer_id -> b"": customers at high churn risk, most valuable first
  (predicted CLV in cents, descending);
* ``w`` partition priority due customer_id -> expiry, reason, sent: the follow-up each
  customer is to be called about (``codec.call_of``), highest priority first, then earliest;
* ``m`` partition name -> bookkeeping: ``changelog`` (the next changelog offset the local
  records do not reflect yet) and ``counts`` (the partition's :class:`Aggregates`).

Only the records are on the changelog. The indexes and the counts are derived from the
records (their headers; for the interest index, the states the header flags as indexed):
a restore from the changelog rebuilds them as it goes, and every batch
updates them in the same atomic write as the records and the changelog position, so they
always agree with the records.

RocksDB keeps deleted data until compaction rewrites the files holding it, and a key that
bounded a file stays in the MANIFEST until the database is opened again: :meth:`purge`
does both for the keys of erased customers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import islice
from pathlib import Path

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from streams.codec import NO_DEADLINE, REASON_CODES, Header, decode_state, read_header
from streams.domain.churn import LEVELS
from streams.domain.state import CustomerState

CUSTOMER, DUE, EXPIRY, INTEREST, HIGH_RISK, CALLS, META = (
    b"c", b"d", b"x", b"i", b"h", b"w", b"m")
_SHIFT = 2**63
_CALL = struct.Struct(">qB?")  # a call's expiry (us), reason number, sent


def _descending(value: int) -> bytes:
    """8 bytes whose byte order is the descending order of ``value`` (signed 64 bits)."""
    return (2**64 - 1 - (value + _SHIFT)).to_bytes(8, "big")


@dataclass
class Aggregates:
    """A partition's customers with a profile, counted as the overview shows them; kept in
    step with the records by every write (from their headers), never by a scan."""

    levels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    tiers: dict[str, dict[str, int]] = field(default_factory=dict)  # tier|"none" -> level -> n
    rfm: dict[str, int] = field(default_factory=dict)  # "r,f" -> n
    at_risk_cents: int = 0  # predicted CLV of the customers at high risk

    def add(self, header: Header, sign: int) -> None:
        self.levels[header.level] += sign
        by_level = self.tiers.setdefault(header.tier or "none", dict.fromkeys(LEVELS, 0))
        by_level[header.level] += sign
        if header.r:
            cell = f"{header.r},{header.f}"
            self.rfm[cell] = self.rfm.get(cell, 0) + sign
        if header.level == "high" and header.clv_cents is not None:
            self.at_risk_cents += sign * header.clv_cents

    def to_json(self) -> bytes:
        return orjson.dumps({"levels": self.levels, "tiers": self.tiers, "rfm": self.rfm,
                             "at_risk_cents": self.at_risk_cents})

    @classmethod
    def from_json(cls, raw: bytes | None) -> Aggregates:
        data = orjson.loads(raw) if raw else {}
        if "levels" not in data:  # none yet, or counts by level only (before the overview)
            return cls(levels={**dict.fromkeys(LEVELS, 0), **data})
        return cls(**data)


def _part(partition: int) -> bytes:
    return partition.to_bytes(2, "big")


def customer_key(partition: int, name: bytes) -> bytes:
    return CUSTOMER + _part(partition) + name


def _timed_key(kind: bytes, partition: int, at_us: int, name: bytes) -> bytes:
    return kind + _part(partition) + (at_us + _SHIFT).to_bytes(8, "big") + name


def index_key(partition: int, header: Header, name: bytes) -> bytes | None:
    """A record's entry in the due index (a customer) or the expiry index (a marker)."""
    if header.deadline_us == NO_DEADLINE:
        return None
    return _timed_key(EXPIRY if header.marker else DUE, partition, header.deadline_us, name)


def interest_key(partition: int, interest: str, name: bytes = b"") -> bytes:
    return (INTEREST + _part(partition) + blake2b(interest.encode(), digest_size=8).digest()
            + name)


@dataclass(frozen=True, slots=True)
class Change:
    """A record to store (None: delete it), with what the indexes need of the one before."""

    partition: int
    name: bytes  # the customer id (UTF-8) or a marker's name
    record: bytes | None
    before: Header | None  # the previous record's header; None if there was none
    unindexed: tuple[str, ...] = ()  # interests the customer leaves in the interest index
    indexed: tuple[str, ...] = ()  # and joins


class LocalStore:
    """Customer records, the due index and bookkeeping of every partition on this worker."""

    def __init__(self, path: Path, memory_bytes: int = 32 * 2**20) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.erased: list[tuple[bytes, bytes]] = []  # key ranges deleted, not yet purged
        self.path = path / "customers.rocksdb"
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # Bounded memory whatever the number of customers: two small memtables and a block
        # cache; reads the cache misses come from the OS page cache.
        options.set_write_buffer_size(memory_bytes // 4)
        options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(memory_bytes // 2))
        options.set_block_based_table_factory(table)
        self._options = options
        self.db = Rdict(str(self.path), options)
        self.counts: dict[int, Aggregates] = {}

    def close(self) -> None:
        self.db.close()

    # --- reading --------------------------------------------------------------------------

    def get(self, partition: int, name: bytes) -> bytes | None:
        return self.db.get(customer_key(partition, name))

    def due(self, partition: int, until_us: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` customers whose deadline is at or before ``until_us``, earliest
        first, as (deadline, customer id)."""
        return [(at, name.decode()) for at, name in self._until(DUE, partition, until_us, limit)]

    def expired(self, partition: int, until_us: int, limit: int) -> list[bytes]:
        """Up to ``limit`` erasure markers expiring at or before ``until_us``."""
        return [name for _, name in self._until(EXPIRY, partition, until_us, limit)]

    def _until(self, kind: bytes, partition: int, until_us: int, limit: int
               ) -> list[tuple[int, bytes]]:
        prefix = kind + _part(partition)
        iterator = self.db.iter()
        iterator.seek(prefix)
        found: list[tuple[int, bytes]] = []
        while iterator.valid() and len(found) < limit:
            key: bytes = iterator.key()
            if not key.startswith(prefix):
                break
            at = int.from_bytes(key[3:11], "big") - _SHIFT
            if at > until_us:
                break
            found.append((at, key[11:]))
            iterator.next()
        return found

    def interested(self, partition: int, interests: list[str]) -> set[str]:
        """The customers the interest index lists under any of these interests."""
        found: set[str] = set()
        for interest in interests:
            prefix = interest_key(partition, interest)
            iterator = self.db.iter()
            iterator.seek(prefix)
            while iterator.valid() and (key := iterator.key()).startswith(prefix):
                found.add(key[len(prefix):].decode())
                iterator.next()
        return found

    def customers(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every record of a partition, by name (for tests and tools)."""
        prefix = CUSTOMER + _part(partition)
        iterator = self.db.iter()
        iterator.seek(prefix)
        while iterator.valid():
            key: bytes = iterator.key()
            if not key.startswith(prefix):
                return
            yield key[3:], iterator.value()
            iterator.next()

    def changelog_position(self, partition: int) -> int | None:
        raw = self.db.get(META + _part(partition) + b"changelog")
        return int(raw) if raw is not None else None

    def load_counts(self, partition: int) -> None:
        self.counts[partition] = Aggregates.from_json(
            self.db.get(META + _part(partition) + b"counts"))

    def most_valuable_at_risk(self, partition: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` customers at high churn risk, most valuable first, as
        (predicted CLV in cents, customer id)."""
        prefix = HIGH_RISK + _part(partition)
        found = []
        for key, _ in self._scan(prefix, limit):
            clv = 2**64 - 1 - int.from_bytes(key[3:11], "big") - _SHIFT
            found.append((clv, key[11:].decode()))
        return found

    def calls(self, partition: int, now_us: int, until_us: int, limit: int, scan: int
              ) -> list[tuple[int, str, int, str, bool]]:
        """Up to ``limit`` customers to call, highest priority first, as (priority,
        reason, due, customer id, sent): a follow-up sent and not expired at ``now_us``, or a
        pending one due by ``until_us``. At most ``scan`` index entries are read."""
        prefix = CALLS + _part(partition)
        found = []
        for key, value in self._scan(prefix, scan):
            expires_us, reason, sent = _CALL.unpack(value)
            due_us = int.from_bytes(key[11:19], "big") - _SHIFT
            if (expires_us > now_us if sent else due_us <= until_us and expires_us > now_us):
                priority = 2**64 - 1 - int.from_bytes(key[3:11], "big") - _SHIFT
                found.append((priority, REASON_CODES[reason - 1], due_us, key[19:].decode(),
                              sent))
                if len(found) == limit:
                    break
        return found

    def _scan(self, prefix: bytes, limit: int) -> Iterator[tuple[bytes, bytes]]:
        iterator = self.db.iter()
        iterator.seek(prefix)
        for _ in range(limit):
            if not iterator.valid() or not (key := iterator.key()).startswith(prefix):
                return
            yield key, iterator.value()
            iterator.next()

    def forget_counts(self, partition: int) -> None:
        self.counts.pop(partition, None)

    # --- writing --------------------------------------------------------------------------

    def commit(self, changes: list[Change], positions: dict[int, int]) -> None:
        """Store a batch's changed records and the changelog positions they reach, with the
        due index and counts kept in step, in one atomic write."""
        batch = WriteBatch(raw_mode=True)
        touched: set[int] = set(positions)
        for change in changes:
            self._put(batch, change.partition, change.name, change.before, change.record)
            self._index(batch, change.partition, change.name, change.unindexed, change.indexed,
                        erased=change.record is None)
            touched.add(change.partition)
        for partition, position in positions.items():
            batch.put(META + _part(partition) + b"changelog", str(position).encode())
        for partition in touched:
            if partition in self.counts:
                batch.put(META + _part(partition) + b"counts", self.counts[partition].to_json())
        self.db.write(batch)

    def restore(self, partition: int, records: dict[bytes, bytes | None], position: int
                ) -> None:
        """Apply changelog records (the latest per key) on top of the local state."""
        batch = WriteBatch(raw_mode=True)
        for name, record in records.items():
            stored = self.db.get(customer_key(partition, name))
            before = read_header(stored) if stored is not None else None
            self._put(batch, partition, name, before, record)
            self._index(batch, partition, name, _indexed(stored), _indexed(record),
                        erased=record is None)
        batch.put(META + _part(partition) + b"changelog", str(position).encode())
        batch.put(META + _part(partition) + b"counts", self.counts[partition].to_json())
        self.db.write(batch)

    def wipe(self, partition: int) -> None:
        """Forget everything local of a partition (before a restore from scratch)."""
        for kind in (CUSTOMER, DUE, EXPIRY, INTEREST, HIGH_RISK, CALLS, META):
            start, end = kind + _part(partition), kind + _part(partition + 1)
            self.db.delete_range(start, end)
            self.erased.append((start, end))
        self.counts[partition] = Aggregates()

    def unschedule(self, partition: int, customer_id: str, header: Header) -> None:
        """Take a customer out of the due index (a deadline left out after a failure)."""
        if (key := index_key(partition, header, customer_id.encode())) is not None:
            self.db.delete(key)

    def purge(self) -> None:
        """Remove deleted keys (erasures, partitions let go) from RocksDB's files: flush the
        memtable (its write-ahead log goes with it), compact the files that held those keys,
        and open the database again, which writes a new MANIFEST without the old files' key
        bounds."""
        if not self.erased:
            return
        self.db.flush(True)
        for start, end in self.erased:
            self.db.compact_range(start, end)
        self.db.close()
        self.db = Rdict(str(self.path), self._options)
        self.erased.clear()

    def _index(self, batch: WriteBatch, partition: int, name: bytes,
               unindexed: tuple[str, ...], indexed: tuple[str, ...], erased: bool) -> None:
        for interest in unindexed:
            if interest not in indexed:
                key = interest_key(partition, interest, name)
                batch.delete(key)
                if erased:  # the key names the customer: purge it from the files too
                    self.erased.append((key, key + b"\x00"))
        for interest in indexed:
            batch.put(interest_key(partition, interest, name), b"")

    def _put(self, batch: WriteBatch, partition: int, name: bytes, before: Header | None,
             record: bytes | None) -> None:
        counts = self.counts[partition]
        if before is not None:
            for old in (index_key(partition, before, name),
                        *_overview_keys(partition, before, name)):
                if old is not None:
                    batch.delete(old)
                    if record is None:
                        self.erased.append((old, old + b"\x00"))
            if before.has_profile:
                counts.add(before, -1)
        key = customer_key(partition, name)
        if record is None:
            batch.delete(key)
            self.erased.append((key, key + b"\x00"))
            return
        after = read_header(record)
        batch.put(key, record)
        if (new := index_key(partition, after, name)) is not None:
            batch.put(new, b"")
        if after.has_profile:
            counts.add(after, 1)
            risk_key, call_key = _overview_keys(partition, after, name)
            if risk_key is not None:
                batch.put(risk_key, b"")
            if call_key is not None and after.call is not None:
                batch.put(call_key, _CALL.pack(after.call.expires_us,
                                               REASON_CODES.index(after.call.reason) + 1,
                                               after.call.sent))


def _overview_keys(partition: int, header: Header, name: bytes
                   ) -> tuple[bytes | None, bytes | None]:
    """A customer's entries in the high-risk and the calls index (None: not listed)."""
    if not header.has_profile:
        return None, None
    risk = (HIGH_RISK + _part(partition) + _descending(header.clv_cents) + name
            if header.level == "high" and header.clv_cents is not None else None)
    call = header.call
    calls = (CALLS + _part(partition) + _descending(call.priority)
             + (call.due_us + _SHIFT).to_bytes(8, "big") + name) if call is not None else None
    return risk, calls


def _indexed(record: bytes | None) -> tuple[str, ...]:
    """The interests a stored record is indexed under."""
    if record is None or not read_header(record).indexed:
        return ()
    return tuple(decode_state(record).indexed)


class StateCache:
    """Decoded states of recently active customers, so that an active customer costs no
    decoding. When full, the half least recently stored is dropped at once (cheaper than one
    at a time). States of a revoked partition are dropped."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: dict[tuple[int, str], CustomerState] = {}  # least recently stored first

    def get(self, partition: int, customer_id: str) -> CustomerState | None:
        return self._states.get((partition, customer_id))

    def put(self, partition: int, state: CustomerState) -> None:
        key = (partition, state.customer_id)
        states = self._states
        states.pop(key, None)
        states[key] = state
        if len(states) > self.capacity:
            self._states = dict(islice(states.items(), len(states) // 2, None))

    def discard(self, partition: int, customer_id: str) -> None:
        self._states.pop((partition, customer_id), None)

    def partitions(self) -> set[int]:
        return {partition for partition, _ in self._states}

    def drop_partitions(self, partitions: set[int]) -> None:
        for key in [k for k in self._states if k[0] in partitions]:
            del self._states[key]

    def __len__(self) -> int:
        return len(self._states)
