"""The processor's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.clock import EPOCH, MAX_AHEAD_OF_WALL, Clock


def test_event_clock_follows_the_largest_event_time() -> None:
    clock = Clock("event")
    assert clock.now() == EPOCH
    clock.observe(datetime(2026, 3, 1, tzinfo=UTC))
    clock.observe(datetime(2026, 2, 1, tzinfo=UTC))  # a late event does not turn it back
    assert clock.now() == datetime(2026, 3, 1, tzinfo=UTC)


def test_event_clock_does_not_leap_into_the_far_future() -> None:
    clock = Clock("event")
    clock.observe(datetime(2099, 1, 1, tzinfo=UTC))
    assert clock.now() <= datetime.now(UTC) + MAX_AHEAD_OF_WALL
    assert clock.now() >= datetime.now(UTC) + MAX_AHEAD_OF_WALL - timedelta(minutes=1)


def test_wall_clock_ignores_events() -> None:
    clock = Clock("wall")
    clock.observe(datetime(2099, 1, 1, tzinfo=UTC))
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
