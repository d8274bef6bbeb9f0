"""The processor's one clock: the wall clock, or the largest event time seen."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    """``wall``: now is the wall clock. ``event``: now is the largest ``occurred_at`` seen,
    so a replay of history takes time-driven decisions at the event times it did live."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._latest_event = EPOCH

    def observe(self, occurred_at: datetime) -> None:
        if occurred_at > self._latest_event:
            self._latest_event = occurred_at

    def now(self) -> datetime:
        if self.mode == "event":
            return self._latest_event
        return datetime.now(UTC)
