"""The dead-letter record: the original bytes of a rejected message and why.

A dead letter always fits in a Kafka record: a message larger than the largest one accepted
is kept as its first ``TRUNCATED_COPY_BYTES`` with its size and SHA-256, so that the whole
can be found again upstream.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from schemas.outputs import DeadLetter, DeadLetterError
from streams.domain.state import Source


def _text_or_base64(raw: bytes | None) -> tuple[str | None, bool]:
    if raw is None:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


TRUNCATED_COPY_BYTES = 4_096


def dead_letter(source: Source, code: str, message: str, received_at: datetime,
                max_bytes: int) -> DeadLetter:
    """``key``/``value`` are the original bytes as UTF-8 text, or base64 with a flag set;
    cut to their first ``TRUNCATED_COPY_BYTES`` (``truncated``) when together they are
    larger than ``max_bytes``."""
    original_key, original_value = source.key or b"", source.value or b""
    truncated = len(original_key) + len(original_value) > max_bytes
    kept_key, kept_value = source.key, source.value
    if truncated:
        kept_key = original_key[:TRUNCATED_COPY_BYTES] if source.key is not None else None
        kept_value = original_value[:TRUNCATED_COPY_BYTES] if source.value is not None else None
    key, key_b64 = _text_or_base64(kept_key)
    value, value_b64 = _text_or_base64(kept_value)
    return DeadLetter(
        source_topic=source.topic, partition=source.partition, offset=source.offset,
        key=key, key_base64=key_b64, value=value, value_base64=value_b64,
        error=DeadLetterError(code=code, message=message), received_at=received_at,
        truncated=truncated, value_bytes=len(original_value),
        value_sha256=hashlib.sha256(original_value).hexdigest() if truncated else None)


def original_bytes(record: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """Recover the original key and value of a dead letter (for replaying it after a fix;
    of a ``truncated`` one, only its first bytes)."""

    def decode(text: str | None, is_base64: bool) -> bytes | None:
        if text is None:
            return None
        return base64.b64decode(text) if is_base64 else text.encode("utf-8")

    return decode(record["key"], record["key_base64"]), decode(
        record["value"], record["value_base64"]
    )
