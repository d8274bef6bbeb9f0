"""The stored form of a customer's state: an 11-byte header, then the state as MessagePack.

The same bytes are the value in the local store and on the state changelog. The header
carries what the worker's derived indexes need (the due-time index and the customer count
by churn level), so a restore from the changelog rebuilds them without decoding a state:

    byte 0      format version (1)
    byte 1      flags: 1 = has a profile, 2 = erasure marker
    byte 2      churn level (0 low, 1 medium, 2 high)
    bytes 3-10  next deadline, microseconds since 1970 (signed, big-endian; -1: none)
    bytes 11-   the CustomerState, msgspec MessagePack (structs as positional arrays)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from streams.domain.churn import LEVELS
from streams.domain.state import CustomerState

VERSION = 1
HAS_PROFILE = 1
ERASED = 2
NO_DEADLINE = -1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER = struct.Struct(">BBBq")
HEADER_SIZE = _HEADER.size
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)


class RecordError(ValueError):
    """A stored record this version cannot read."""


@dataclass(frozen=True, slots=True)
class Header:
    has_profile: bool
    erased: bool
    level: str
    deadline_us: int  # NO_DEADLINE when nothing is scheduled


def micros(moment: datetime) -> int:
    """Microseconds since 1970 (exact: no float rounding)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def header_of(state: CustomerState) -> Header:
    deadline = state.next_deadline()
    return Header(state.has_profile, state.erased_at is not None, state.churn_level,
                  NO_DEADLINE if deadline is None else micros(deadline))


def encode_state(state: CustomerState) -> bytes:
    header = header_of(state)
    flags = (HAS_PROFILE if header.has_profile else 0) | (ERASED if header.erased else 0)
    return (_HEADER.pack(VERSION, flags, LEVELS.index(header.level), header.deadline_us)
            + _encoder.encode(state))


def decode_state(record: bytes) -> CustomerState:
    if not record or record[0] != VERSION:
        raise RecordError(f"state record of format {record[:1]!r}, expected {VERSION}")
    return _decoder.decode(memoryview(record)[HEADER_SIZE:])


def read_header(record: bytes) -> Header:
    version, flags, level, deadline = _HEADER.unpack_from(record)
    if version != VERSION:
        raise RecordError(f"state record of format {version}, expected {VERSION}")
    return Header(bool(flags & HAS_PROFILE), bool(flags & ERASED), LEVELS[level], deadline)
