"""The stored form of a customer's state: an 11-byte header, then the state as MessagePack.

The same bytes are the value in the local store and on the state changelog, keyed by the
customer id. The header carries what the worker's derived indexes need (the due-time index,
the erasure markers' expiry and the customer count by churn level), so a restore from the
changelog rebuilds them without decoding a state:

    byte 0      format version (1)
    byte 1      flags: 1 = has a profile, 2 = erasure marker, 4 = listed in the interest
                index (``CustomerState.indexed``)
    byte 2      churn level (0 low, 1 medium, 2 high)
    bytes 3-10  next deadline, microseconds since 1970 (signed, big-endian; -1: none); for
                an erasure marker, when it expires (on the wall clock)
    bytes 11-   the CustomerState, msgspec MessagePack (structs as positional arrays); for
                an erasure marker, the erasure's time

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
from streams.domain.state import CustomerState

VERSION = 1
HAS_PROFILE = 1
MARKER = 2
INDEXED = 4
MARKER_PREFIX = b"\xff"
NO_DEADLINE = -1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER = struct.Struct(">BBBq")
HEADER_SIZE = _HEADER.size
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)
_marker_decoder = msgspec.msgpack.Decoder(datetime)


class RecordError(ValueError):
    """A stored record this version cannot read."""


@dataclass(frozen=True, slots=True)
class Header:
    has_profile: bool
    marker: bool  # an erasure marker; deadline_us is when it expires
    level: str
    deadline_us: int  # NO_DEADLINE when nothing is scheduled
    indexed: bool = False  # in the interest index: decode the state to know under what


def micros(moment: datetime) -> int:
    """Microseconds since 1970 (exact: no float rounding)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def header_of(state: CustomerState) -> Header:
    deadline = state.next_deadline()
    return Header(state.has_profile, False, state.churn_level,
                  NO_DEADLINE if deadline is None else micros(deadline), bool(state.indexed))


def encode_state(state: CustomerState) -> bytes:
    header = header_of(state)
    flags = (HAS_PROFILE if header.has_profile else 0) | (INDEXED if header.indexed else 0)
    return (_HEADER.pack(VERSION, flags, LEVELS.index(header.level), header.deadline_us)
            + _encoder.encode(state))


# The record of a partition's read positions on the catalog topic (catalog partition ->
# next offset), stored and logged like a customer's state. 0xFE starts no UTF-8 text, so no
# customer id can name it.
CATALOG_POSITIONS = b"\xfecatalog"
_positions_decoder = msgspec.msgpack.Decoder(dict[int, int])


POSITIONS_HEADER = Header(has_profile=False, marker=False, level=LEVELS[0],
                          deadline_us=NO_DEADLINE)


def encode_positions(positions: dict[int, int]) -> bytes:
    return _HEADER.pack(VERSION, 0, 0, NO_DEADLINE) + _encoder.encode(positions)


def decode_positions(record: bytes) -> dict[int, int]:
    read_header(record)
    return _positions_decoder.decode(memoryview(record)[HEADER_SIZE:])


def marker_name(customer_id: str, secret: bytes) -> bytes:
    """The key of a customer's erasure marker: HMAC-SHA256 of the id, shortened to 128 bits."""
    digest = hmac.new(secret, customer_id.encode(), hashlib.sha256).digest()
    return MARKER_PREFIX + digest[:16]


def encode_marker(erased_at: datetime, expires_us: int) -> bytes:
    return _HEADER.pack(VERSION, MARKER, 0, expires_us) + _encoder.encode(erased_at)


def decode_marker(record: bytes) -> datetime:
    """The time of the erasure a marker records."""
    read_header(record)
    return _marker_decoder.decode(memoryview(record)[HEADER_SIZE:])


def decode_state(record: bytes) -> CustomerState:
    if not record or record[0] != VERSION:
        raise RecordError(f"state record of format {record[:1]!r}, expected {VERSION}")
    return _decoder.decode(memoryview(record)[HEADER_SIZE:])


def read_header(record: bytes) -> Header:
    version, flags, level, deadline = _HEADER.unpack_from(record)
    if version != VERSION:
        raise RecordError(f"state record of format {version}, expected {VERSION}")
    return Header(bool(flags & HAS_PROFILE), bool(flags & MARKER), LEVELS[level], deadline,
                  bool(flags & INDEXED))
