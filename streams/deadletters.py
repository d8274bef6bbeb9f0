"""The dead-letter record: the original bytes of a rejected message and why."""

from __future__ import annotations

import base64
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


def dead_letter(source: Source, code: str, message: str, received_at: datetime) -> DeadLetter:
    """``key``/``value`` are the original bytes as UTF-8 text, or base64 with a flag set."""
    key, key_b64 = _text_or_base64(source.key)
    value, value_b64 = _text_or_base64(source.value)
    return DeadLetter(
        source_topic=source.topic, partition=source.partition, offset=source.offset,
        key=key, key_base64=key_b64, value=value, value_base64=value_b64,
        error=DeadLetterError(code=code, message=message), received_at=received_at)


def original_bytes(record: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """Recover the original key and value of a dead letter (for replaying it after a fix)."""

    def decode(text: str | None, is_base64: bool) -> bytes | None:
        if text is None:
            return None
        return base64.b64decode(text) if is_base64 else text.encode("utf-8")

    return decode(record["key"], record["key_base64"]), decode(
        record["value"], record["value_base64"]
    )
