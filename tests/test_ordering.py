"""Event time per partition (streams/ordering.py) as pure logic: what may be processed when,
and that nothing fetched is ever lost or processed twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from harness.kafka import event
from streams.decode import Invalid, decode
from streams.domain.state import Source
from streams.domain.step import Incoming
from streams.ordering import ALWAYS, NEVER, Input, PartitionTime

T0 = datetime(2026, 5, 1, tzinfo=UTC)
WALL = datetime(2026, 6, 1, tzinfo=UTC)
IDLE = 0.2


def partition(*topics: str) -> PartitionTime:
    return PartitionTime(0, {t: Input(t, 0) for t in topics}, event_clock=False, idle=IDLE)


class Feed:
    """Messages arriving on a partition's inputs, as the agent hands them over."""

    def __init__(self, time_: PartitionTime) -> None:
        self.time = time_
        self.mono = 100.0
        self.offsets = dict.fromkeys(time_.inputs, 0)

    def arrive(self, topic: str, *minutes: float) -> None:
        """Messages with these event times, fetched now; Kafka then knows of no more."""
        self.mono += 0.01
        arrived = self.mono
        for m in minutes:
            offset = self.offsets[topic]
            _, key, value = event("email.sent", f"{topic}-{offset}", "c",
                                  (T0 + timedelta(minutes=m)).isoformat(), message_id="m")
            decoded = decode("email-events", key, value)
            assert not isinstance(decoded, Invalid)
            self.time.fetched(topic, offset, self.mono, arrived)
            self.time.buffer(topic, Incoming(decoded, Source(topic, 0, offset, key, value)),
                             WALL, arrived)
            self.offsets[topic] = offset + 1
        source = self.time.inputs[topic]
        source.highwater = self.offsets[topic]

    def poll(self, after: float = 0.01) -> None:
        """Kafka confirms every input's end, ``after`` seconds later."""
        self.mono += after
        for source in self.time.inputs.values():
            source.highwater = self.offsets[source.topic]
            source.polled_at = self.mono

    def take(self) -> list[float]:
        ready, _ = self.time.take_ready(self.mono, WALL)
        return sorted(round((i.event.occurred_at - T0) / timedelta(minutes=1), 3)
                      for i in ready)


def test_an_input_still_being_read_holds_the_others_back() -> None:
    feed = Feed(partition("orders", "tickets"))
    feed.arrive("orders", 1, 5, 9)
    feed.arrive("tickets", 3)
    feed.time.inputs["tickets"].highwater = 5  # Kafka knows of more tickets
    feed.poll(after=1.0)
    feed.time.inputs["tickets"].highwater = 5
    assert feed.take() == [1, 3]  # up to the tickets read so far
    feed.arrive("tickets", 4, 7)
    feed.poll()
    assert feed.take() == [4, 5, 7]


def test_a_quiet_input_holds_what_arrived_before_kafka_confirmed_its_end() -> None:
    feed = Feed(partition("orders", "tickets", "erasures"))
    feed.mono += 10  # everything quiet for a while
    feed.poll()
    feed.mono += 10
    feed.arrive("orders", 1, 2)
    feed.arrive("tickets", 1.5)
    # The tickets and erasures were confirmed before these arrived: wait for a fetch.
    assert feed.take() == []
    feed.poll(after=IDLE)  # a later fetch response: still nothing more on them
    assert feed.take() == [1, 1.5, 2]


def test_events_fetched_later_wait_while_earlier_ones_go() -> None:
    feed = Feed(partition("orders", "erasures"))
    feed.mono += 10
    feed.poll()
    feed.arrive("orders", 1)
    feed.poll(after=IDLE)
    feed.arrive("orders", 2)  # after the confirmation: waits for the next one
    assert feed.take() == [1]
    feed.poll(after=IDLE)
    assert feed.take() == [2]


def test_nothing_is_lost_or_taken_twice_and_the_clock_never_goes_back() -> None:
    rng = random.Random(5)
    time_ = partition("orders", "tickets", "emails", "erasures")
    feed = Feed(time_)
    sent: list[float] = []
    taken: list[float] = []
    clock, minute = NEVER, 0.0
    for _ in range(400):
        action = rng.random()
        if action < 0.5:
            topic = rng.choice(["orders", "tickets", "emails"])
            times = [minute := round(minute + rng.random(), 3)
                     for _ in range(rng.randint(1, 3))]
            feed.arrive(topic, *times)
            sent += times
        else:
            feed.poll(after=rng.choice([0.01, 0.1, IDLE]))
        got = feed.take()
        assert time_.clock >= clock and time_.due_until <= time_.clock
        clock = time_.clock
        taken += got
    feed.poll(after=IDLE)
    taken += feed.take()
    assert sorted(taken) == sorted(sent)
    assert time_.buffered() == 0
    # all quiet: anything that arrived before the last confirmation may go
    assert time_.watermarks(feed.mono + IDLE)(feed.mono - 0.001) == ALWAYS


def test_an_event_from_the_future_is_ordered_as_of_now() -> None:
    feed = Feed(partition("orders"))
    feed.arrive("orders", (WALL - T0 + timedelta(days=30)) / timedelta(minutes=1))
    feed.poll(after=IDLE)
    assert len(feed.take()) == 1
    assert feed.time.clock == WALL
