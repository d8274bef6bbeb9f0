"""The processor's one clock: the wall clock, or the largest event time seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far the event clock may run ahead of the wall clock. A replay is of the past, so this
# never limits one; it keeps a single mistyped future timestamp from firing every
# time-driven decision years early.
MAX_AHEAD_OF_WALL = timedelta(days=1)


class Clock:
    """``wall``: now is the wall clock. ``event``: now is the largest ``occurred_at`` seen
    (up to a day ahead of the wall clock), so a replay of history takes time-driven
    decisions at the event times it did live."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._latest_event = EPOCH

    def observe(self, occurred_at: datetime) -> None:
        if occurred_at > self._latest_event:
            self._latest_event = min(occurred_at, datetime.now(UTC) + MAX_AHEAD_OF_WALL)

    def now(self) -> datetime:
        if self.mode == "event":
            return self._latest_event
        return datetime.now(UTC)
