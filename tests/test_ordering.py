"""Event time per partition (streams/ordering.py) as pure logic: what may be processed when,
and that nothing fetched is ever lost or processed twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

from agents.customers import Batch
from harness.backlog import Backlog
from harness.kafka import event
from streams.decode import Invalid, decode
from streams.demo import DemoTraffic
from streams.domain.state import Source
from streams.domain.step import Incoming
from streams.ordering import ALWAYS, NEVER, Input, PartitionTime
from streams.settings import Settings
from streams.topics import CHURN_RISK, FOLLOW_UPS

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
                             WALL, arrived, published=WALL.timestamp())  # a history
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


class Live:
    """A partition on the wall clock at ``WALL``, fed events stamped near it: monotonic and
    wall-clock seconds coincide here."""

    def __init__(self, published_after: float) -> None:
        self.time = PartitionTime(0, {t: Input(t, 0) for t in ("orders", "preferences")},
                                  event_clock=False, idle=IDLE, live_delay=LIVE_DELAY)
        self.published_after = published_after  # seconds from an event's time to its sending

    def arrive(self, topic: str, at: float, now: float) -> None:
        """An event of time WALL + ``at`` s, fetched at WALL + ``now`` s."""
        source = self.time.inputs[topic]
        offset, moment = source.position, WALL + timedelta(seconds=at)
        _, key, value = event("email.sent", f"{topic}-{offset}", "c", moment.isoformat(),
                              message_id="m")
        decoded = decode("email-events", key, value,
                         received_at=WALL + timedelta(seconds=now))
        assert not isinstance(decoded, Invalid)
        wall = WALL.timestamp() + now
        self.time.fetched(topic, offset, wall, wall)
        self.time.buffer(topic, Incoming(decoded, Source(topic, 0, offset, key, value)),
                         WALL + timedelta(seconds=now), wall,
                         published=moment.timestamp() + self.published_after)
        source.highwater = source.position

    def confirm(self, now: float) -> None:
        """A fetch response at WALL + ``now`` s: no more on any input."""
        for source in self.time.inputs.values():
            source.highwater = source.position
            source.polled_at = WALL.timestamp() + now

    def take(self, now: float) -> list[str]:
        ready, _ = self.time.take_ready(WALL.timestamp() + now,
                                        WALL + timedelta(seconds=now))
        return [i.source.topic for i in ready]


LIVE_DELAY = 0.05


def test_a_live_event_waits_the_live_delay_not_for_a_recent_input_to_go_quiet() -> None:
    """Published as it happens, an order goes once Kafka has confirmed every input read to
    its end ``live_delay`` after the order's time, although the preferences had data a
    moment ago (under the watermark alone they would hold it for ``idle``)."""
    live = Live(published_after=0.001)
    live.arrive("preferences", at=-0.1, now=-0.09)
    live.confirm(now=-0.08)
    live.arrive("orders", at=0.0, now=0.01)
    live.confirm(now=0.03)  # 0.03 - 0.05 < 0: a preference of time 0 could still come
    assert live.take(now=0.03) == ["preferences"]
    live.confirm(now=0.06)
    assert live.take(now=0.06) == ["orders"]


def test_a_history_published_later_is_not_live() -> None:
    """The same events published an hour after their time wait for the watermark: the
    preferences, which had data a moment ago, hold the order for ``idle``."""
    history = Live(published_after=3600)
    history.arrive("preferences", at=-0.1, now=-0.09)
    history.confirm(now=-0.08)
    history.arrive("orders", at=0.0, now=0.01)
    history.confirm(now=0.06)
    assert history.take(now=0.06) == ["preferences"]
    history.confirm(now=IDLE)
    assert history.take(now=IDLE) == ["orders"]


def test_a_limit_takes_the_earliest_and_keeps_the_rest_in_order() -> None:
    """Released at once, a backlog is taken a limited number at a time, earliest first,
    never splitting one moment; what stays is taken later, nothing lost or repeated, and
    the committed offsets never pass an event not yet taken."""
    feed = Feed(partition("orders", "tickets"))
    feed.arrive("orders", 1, 2, 4, 4, 6)
    feed.arrive("tickets", 3, 4, 5)
    feed.poll(after=IDLE)
    ready, _ = feed.time.take_ready(feed.mono, WALL, limit=3)
    assert sorted(minutes(ready)) == [1, 2, 3]
    assert feed.time.inputs["orders"].commit_offset() == 2
    # The clock and time-driven work do not pass the first event kept back.
    assert feed.time.clock == feed.time.due_until == T0 + timedelta(minutes=4)
    ready, _ = feed.time.take_ready(feed.mono, WALL, limit=1)
    assert sorted(minutes(ready)) == [4, 4, 4]  # one moment is not split
    assert [b.offset for b in feed.time.inputs["orders"].buffer] == [4]
    ready, _ = feed.time.take_ready(feed.mono, WALL, limit=0)
    assert ready == []
    assert feed.take() == [5, 6]
    assert feed.time.buffered() == 0



def test_taking_reads_only_what_it_takes_and_takes_what_the_rule_says() -> None:
    """``_take`` merges the buffers by time and stops early; the rule, written out plainly
    here, looks at every buffered event. Both take the same events and keep the same, for
    buffers in time order (the usual case, read only as far as taken) and out of it."""
    rng = random.Random(8)
    for _ in range(300):
        feed = Feed(partition("orders", "tickets", "emails"))
        for topic in feed.time.inputs:  # ties within and across topics
            times = [rng.choice(range(12)) for _ in range(rng.randint(0, 6))]
            feed.arrive(topic, *(times if rng.random() < 0.3 else sorted(times)))
        if rng.random() < 0.5:
            feed.poll(after=IDLE)
        late = rng.choice(list(feed.time.inputs))  # arrived after: some must wait
        feed.arrive(late, *(rng.randint(0, 14) for _ in range(rng.randint(0, 3))))
        may_go = feed.time._release_rule(feed.mono)
        room = rng.choice([None, 1, 2, 5, 50])
        buffered = [(topic, item) for topic, source in feed.time.inputs.items()
                    for item in source.buffer]
        block = min((item.at for _, item in buffered if not may_go(item)), default=ALWAYS)
        free = sorted(item.at for _, item in buffered if item.at < block and may_go(item))
        until = block if room is None or len(free) <= room else free[room - 1]
        expected = {(topic, item.offset) for topic, item in buffered
                    if (item.at < until or (until != block and item.at == until))
                    and may_go(item)}
        taken, _ = feed.time._take(may_go, room)
        assert {(source.topic, item.offset) for source, item in taken} == expected
        assert sorted(item.at for _, item in taken) == [item.at for _, item in taken]
        kept = {(topic, item.offset) for topic, source in feed.time.inputs.items()
                for item in source.buffer}
        assert kept == {(topic, item.offset) for topic, item in buffered} - expected
        for source in feed.time.inputs.values():  # each buffer keeps the order of offsets
            assert [b.offset for b in source.buffer] == sorted(b.offset for b in source.buffer)


def minutes(ready: list[Incoming]) -> list[float]:
    return [(i.event.occurred_at - T0) / timedelta(minutes=1) for i in ready]


def test_a_backlog_gives_the_same_decisions_however_it_is_batched() -> None:
    """Two weeks of the demo's traffic as a backlog on the wall clock, worked through in
    batches of 2,000 and of 97 messages: the same churn-risk and follow-up events, record
    for record. Outside this, as the README says: ``cross_sell`` (the co-purchase model is
    learnt as orders are processed, *Cross-sell*) and referral updates, read back through
    Kafka (*Referrals*)."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    messages = list(DemoTraffic(300, 11, start, mean_gap_seconds=300).messages(4000))
    wall = start + timedelta(days=15)  # after the last event (4,000 x 300 s: about 14 days)
    decided: dict[int, tuple[set[bytes], set[bytes]]] = {}
    for size in (2000, 97):
        settings = Settings.from_env({"VALUESTREAM_BATCH_SIZE": str(size)})
        churn, follow_ups = settings.topic(CHURN_RISK), settings.topic(FOLLOW_UPS)
        outputs: tuple[set[bytes], set[bytes]] = (set(), set())

        def written(batch: Batch, churn: str = churn, follow_ups: str = follow_ups,
                    outputs: tuple[set[bytes], set[bytes]] = outputs) -> None:
            for (topic, _), records in batch.outbox.records.items():
                if topic in (churn, follow_ups):
                    outputs[topic == follow_ups].update(
                        value for _, value in records
                        if value and orjson.loads(value).get("reason") != "cross_sell")

        assert Backlog(settings, messages, wall).run(written) == len(messages)
        decided[size] = outputs
    churn_events, follow_ups_sent = decided[2000]
    assert len(churn_events) > 100 and len(follow_ups_sent) > 100  # enough to compare
    assert decided[97] == decided[2000]
