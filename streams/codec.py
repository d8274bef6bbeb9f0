"""The stored form of a customer's state: an 11-byte header, then the state as MessagePack.

The same bytes are the value in the local store and on the state changelog, keyed by the
customer id. The header carries what the worker's derived indexes need (the due-time index,
the erasure markers' expiry, the customer count by churn level and the overview's
aggregates and top lists), so a restore from the changelog rebuilds them without decoding a
state:

    byte 0      format version (1)
    byte 1      flags: 1 = has a profile, 2 = erasure marker, 4 = listed in the interest
                index (``CustomerState.indexed``), 8 = the follow-up to call about was sent
    byte 2      churn level (0 low, 1 medium, 2 high)
    bytes 3-10  next deadline, microseconds since 1970 (signed, big-endian; -1: none); for
                an erasure marker, when it expires (on the wall clock)
    byte 11     value tier (0 none, then bronze, silver, gold, platinum)
    bytes 12-13 RFM recency and frequency scores (0: none)
    bytes 14-21 predicted CLV in cents (signed; -2^63: none)
    byte 22     the follow-up to call about (0 none, else its reason's number + 1): the one
                sent last while valid, else the pending one due first
    byte 23     its priority
    bytes 24-39 its due and expiry times, microseconds since 1970
    bytes 40-   the CustomerState, msgspec MessagePack (structs as positional arrays); for
                an erasure marker, the erasure's time

Format 1 (bytes 11- the state, no overview fields) is still read.

An erasure deletes the customer's record and leaves an **erasure marker**, keyed not by the
customer id but by a keyed hash of it (:func:`marker_name`, 0xFF then 16 bytes: no customer
id's UTF-8 starts with 0xFF), so that no stored record keeps an erased id in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from streams.domain.churn import LEVELS
from streams.domain.followups import REASONS, priority_of
from streams.domain.predict import TIERS
from streams.domain.state import CustomerState

REASON_CODES = tuple(REASONS)  # a reason's number in a header is its place here

VERSION = 2
HAS_PROFILE = 1
MARKER = 2
INDEXED = 4
CALL_SENT = 8
MARKER_PREFIX = b"\xff"
NO_DEADLINE = -1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER = struct.Struct(">BBBqBBBqBBqq")
_HEADER_V1 = struct.Struct(">BBBq")
HEADER_SIZE = _HEADER.size
NO_CLV = -(2**63)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)
_marker_decoder = msgspec.msgpack.Decoder(datetime)


class RecordError(ValueError):
    """A stored record this version cannot read."""


@dataclass(frozen=True, slots=True)
class Call:
    """The follow-up the overview lists a customer under (README, *The shop's pages*)."""

    reason: str
    priority: int
    due_us: int
    expires_us: int
    sent: bool  # sent already (due now), rather than pending


@dataclass(frozen=True, slots=True)
class Header:
    has_profile: bool
    marker: bool  # an erasure marker; deadline_us is when it expires
    level: str
    deadline_us: int  # NO_DEADLINE when nothing is scheduled
    indexed: bool = False  # in the interest index: decode the state to know under what
    tier: str | None = None
    r: int = 0
    f: int = 0
    clv_cents: int | None = None
    call: Call | None = None


def micros(moment: datetime) -> int:
    """Microseconds since 1970 (exact: no float rounding)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def header_of(state: CustomerState) -> Header:
    deadline = state.next_deadline()
    standing = state.standing
    return Header(state.has_profile, False, state.churn_level,
                  NO_DEADLINE if deadline is None else micros(deadline), bool(state.indexed),
                  state.value_tier, standing.r if standing else 0, standing.f if standing else 0,
                  standing.clv_cents if standing else None, call_of(state))


def call_of(state: CustomerState) -> Call | None:
    """The follow-up sent last, else the pending one due first (ties: higher priority)."""
    value = state.standing.value if state.standing is not None else 0
    sent = state.last_follow_up
    if sent is not None:
        return Call(sent.reason, priority_of(sent.reason, value), micros(sent.due_at),
                    micros(sent.expires_at), True)
    first = min(state.followups.values(), default=None,
                key=lambda p: (p.due_at, -priority_of(p.reason, value), p.reason))
    if first is None:
        return None
    return Call(first.reason, priority_of(first.reason, value), micros(first.due_at),
                micros(first.expires_at), False)


def encode_state(state: CustomerState) -> bytes:
    header = header_of(state)
    call = header.call
    flags = ((HAS_PROFILE if header.has_profile else 0) | (INDEXED if header.indexed else 0)
             | (CALL_SENT if call is not None and call.sent else 0))
    return (_HEADER.pack(
        VERSION, flags, LEVELS.index(header.level), header.deadline_us,
        TIERS.index(header.tier) + 1 if header.tier else 0, header.r, header.f,
        NO_CLV if header.clv_cents is None else header.clv_cents,
        (REASON_CODES.index(call.reason) + 1) if call else 0, call.priority if call else 0,
        call.due_us if call else 0, call.expires_us if call else 0)
        + _encoder.encode(state))


def _pack(flags: int, deadline_us: int) -> bytes:
    """The header of a record that is not a customer's state."""
    return _HEADER.pack(VERSION, flags, 0, deadline_us, 0, 0, 0, NO_CLV, 0, 0, 0, 0)


# The record of a partition's read positions on the catalog topic (catalog partition ->
# next offset), stored and logged like a customer's state. 0xFE starts no UTF-8 text, so no
# customer id can name it.
CATALOG_POSITIONS = b"\xfecatalog"
_positions_decoder = msgspec.msgpack.Decoder(dict[int, int])


POSITIONS_HEADER = Header(has_profile=False, marker=False, level=LEVELS[0],
                          deadline_us=NO_DEADLINE)


def encode_positions(positions: dict[int, int]) -> bytes:
    return _pack(0, NO_DEADLINE) + _encoder.encode(positions)


def decode_positions(record: bytes) -> dict[int, int]:
    return _positions_decoder.decode(memoryview(record)[_body(record):])


def marker_name(customer_id: str, secret: bytes) -> bytes:
    """The key of a customer's erasure marker: HMAC-SHA256 of the id, shortened to 128 bits."""
    digest = hmac.new(secret, customer_id.encode(), hashlib.sha256).digest()
    return MARKER_PREFIX + digest[:16]


def encode_marker(erased_at: datetime, expires_us: int) -> bytes:
    return _pack(MARKER, expires_us) + _encoder.encode(erased_at)


def decode_marker(record: bytes) -> datetime:
    """The time of the erasure a marker records."""
    return _marker_decoder.decode(memoryview(record)[_body(record):])


def _body(record: bytes) -> int:
    """Where the MessagePack body of a record starts (after its header)."""
    if not record or record[0] not in (1, VERSION):
        raise RecordError(f"state record of format {record[:1]!r}, expected 1 or {VERSION}")
    return HEADER_SIZE if record[0] == VERSION else _HEADER_V1.size


def decode_state(record: bytes) -> CustomerState:
    return _decoder.decode(memoryview(record)[_body(record):])


def read_header(record: bytes) -> Header:
    if _body(record) != HEADER_SIZE:  # format 1: no overview fields
        _, flags, level, deadline = _HEADER_V1.unpack_from(record)
        return Header(bool(flags & HAS_PROFILE), bool(flags & MARKER), LEVELS[level],
                      deadline, bool(flags & INDEXED))
    (_, flags, level, deadline, tier, r, f, clv, reason, priority, due_us,
     expires_us) = _HEADER.unpack_from(record)
    return Header(bool(flags & HAS_PROFILE), bool(flags & MARKER), LEVELS[level], deadline,
                  bool(flags & INDEXED), TIERS[tier - 1] if tier else None, r, f,
                  None if clv == NO_CLV else clv,
                  Call(REASON_CODES[reason - 1], priority, due_us, expires_us,
                       bool(flags & CALL_SENT)) if reason else None)
