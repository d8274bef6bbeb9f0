"""Raw Kafka message -> typed input event, or the reason it is a dead letter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import (
    KEY_OF_TOPIC,
    TOPICS,
    ErasureRequested,
    Event,
    ProductPublished,
    adapter_for,
)
from streams.domain.profile import timestamp
from streams.ordering import MAX_AHEAD_OF_WALL

_ADAPTERS = {schema.topic: adapter_for(schema) for schema in TOPICS}
_TIMESTAMP_FIELDS = frozenset({"occurred_at", "payment_due_at"})
_TYPE_ERRORS = frozenset({"union_tag_invalid", "literal_error"})
# An erasure takes effect for every event before its time: one dated ahead would silence
# the customer's events until then. Only clock skew is allowed.
ERASURE_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a message cannot be applied: a stable snake_case code and a readable message."""

    code: str
    message: str


def decode(topic: str, key: bytes | None, value: bytes | None, max_bytes: int | None = None,
           received_at: datetime | None = None) -> Event | ProductPublished | Invalid:
    """Validate one message of an input topic (named without prefix): at most ``max_bytes``
    of key and value, an ``occurred_at`` no later than a day after ``received_at`` (an
    erasure: no later than a few minutes after), no key twice in one JSON object, and the
    message's key equal to the customer id (on ``catalog``: to the SKU)."""
    if value is None:
        return Invalid("invalid_json", "the message has no value")
    size = len(value) + len(key or b"")
    if max_bytes is not None and size > max_bytes:
        return Invalid("message_too_large",
                       f"the message has {size:,} bytes; at most {max_bytes:,} are accepted")
    try:
        event: Event | ProductPublished = _ADAPTERS[topic].validate_json(value)
    except ValidationError as exc:
        return _classify(exc.errors(include_url=False))
    key_field = KEY_OF_TOPIC[topic]
    expected = getattr(event, key_field)
    if key is None or key != expected.encode():
        shown = "no key" if key is None else f"key {key.decode(errors='replace')!r}"
        return Invalid("key_mismatch",
                       f"{key_field} {expected!r} does not match the message's {shown}")
    if received_at is not None:
        if isinstance(event, ErasureRequested):
            if event.occurred_at > received_at + ERASURE_CLOCK_SKEW:
                return Invalid("bad_timestamp", f"occurred_at: an erasure dated "
                               f"{timestamp(event.occurred_at)} is in the future")
        elif event.occurred_at > received_at + MAX_AHEAD_OF_WALL:
            return Invalid("bad_timestamp", f"occurred_at: {timestamp(event.occurred_at)} is "
                           "more than a day after the time it was received")
    if _repeats_a_key(value):
        return Invalid("invalid_json", "not valid JSON: a key appears twice in one object")
    return event


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _RepeatedKey
    return found


class _RepeatedKey(ValueError):
    pass


_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _repeats_a_key(value: bytes) -> bool:
    """JSON parsers keep the last of a repeated key; which one a producer meant is unknown.
    (Checked only for messages that are otherwise valid: about 4 µs each.)"""
    try:
        _STRICT_JSON.decode(value.decode())
    except _RepeatedKey:
        return True
    except (ValueError, RecursionError):  # what pydantic's parser accepted, this one may not
        return False
    return False


def _classify(errors: list[ErrorDetails]) -> Invalid:
    first = errors[0]
    if first["type"] == "json_invalid":
        return Invalid("invalid_json", f"not valid JSON: {first['msg']}")
    for error in errors:
        if error["type"] in _TYPE_ERRORS and error["loc"][-1:] in ((), ("type",)):
            return Invalid("unknown_type", f"unknown event type: {error['msg']}")
    for error in errors:
        if error["type"] != "missing" and _TIMESTAMP_FIELDS.intersection(map(str, error["loc"])):
            return Invalid("bad_timestamp", _describe(error))
    return Invalid("schema_violation", "; ".join(_describe(e) for e in errors[:3]))


def _describe(error: ErrorDetails) -> str:
    # The first element of a tagged union's location is the tag itself: drop it.
    location = [str(part) for part in error["loc"] if "." not in str(part)]
    return f"{'.'.join(location) or 'value'}: {error['msg']}"
