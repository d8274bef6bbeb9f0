"""Event time per partition: which fetched events may be processed, and the partition's clock.

A partition number holds all of a customer's events, spread over the input topics (orders,
tickets, emails, erasures), which are fetched independently. Like a Kafka Streams task, a
partition buffers what each of its input topic-partitions delivered and only processes
events up to its **watermark**: the smallest, over its inputs, of how far each input has
been read in event time. An event is therefore processed only once every input of its
partition has been read at least up to its time, so the order in which topics happen to
be fetched cannot change a decision.

How far an input has been read (its *bound*):

* while it has buffered events, or Kafka reports unread messages on it (its high watermark
  is past what was fetched): the largest event time fetched from it;
* when it has been read to its end: the same for events fetched before Kafka confirmed that
  end again in a later fetch response (a producer writes several topics at once, and they
  become readable one after the other), and for as long as it
  received data in the last ``idle`` seconds or its partition woke up (got data after a
  quiet spell) in the last ``idle`` seconds, since more may be on its way. After that it
  no longer holds the others back. An input topic without traffic (erasures, usually) thus
  costs at most a fetch round trip, and a history sent to all topics at once is read in
  event-time order.

Each event's time for this purpose is its ``occurred_at``, but never later than the wall
clock when it was fetched (on the event clock: than a day after), so one event from the
future cannot hold a partition back.

The partition's clock never goes backwards: on the event clock it is the latest event time
processed; on the wall clock it is the wall clock, held back while events are still unread.
Time-driven work runs up to the clock, but never past event time that may still be unread
or is held in a buffer (``due_until``): for an input still being read, how far it has been
read; for a quiet input not yet confirmed since the latest data arrived, the latest event
time of the data that arrived before its last confirmation (what a producer sends later
comes later in event time, topic by topic). An event whose
time is before its partition's clock when it is processed is *late*: a history published
to a running worker on the wall clock is late as a whole. It is applied like any other
event, at its own time: the watermark still orders it with the rest of the history, and
time-driven work follows the history as it is read, up to the present once it is all in.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streams.domain.step import Incoming

NEVER = datetime.min.replace(tzinfo=UTC)
ALWAYS = datetime.max.replace(tzinfo=UTC)
MAX_AHEAD_OF_WALL = timedelta(days=1)


@dataclass(slots=True)
class Buffered:
    at: datetime  # the event's time for ordering (occurred_at, capped)
    arrived: float  # wall-clock seconds when it was fetched
    incoming: Incoming
    live: bool  # published within ``idle`` of its time, on the wall clock

    @property
    def offset(self) -> int:
        return self.incoming.source.offset


@dataclass(slots=True)
class Input:
    """One input topic-partition of a partition."""

    topic: str
    position: int  # the next offset to fetch
    buffer: deque[Buffered] = field(default_factory=deque)
    ordered: bool = True  # the buffer's times do not decrease (so far: usual, not certain)
    latest: datetime = NEVER  # largest ordering time fetched
    data_at: float = float("-inf")  # monotonic time of the last fetched message
    highwater: int | None = None  # Kafka's end offset, as last reported ...
    polled_at: float = float("-inf")  # ... at this wall-clock time (seconds)

    @property
    def read_to_end(self) -> bool:
        return not self.buffer and self.highwater is not None and self.position >= self.highwater

    def commit_offset(self) -> int:
        """Everything before this offset has been processed (the buffer keeps the order
        of arrival, which is the order of offsets)."""
        return self.buffer[0].offset if self.buffer else self.position


@dataclass
class PartitionTime:
    """The inputs of one partition number, its watermark and its clock."""

    partition: int
    inputs: dict[str, Input]
    event_clock: bool
    idle: float  # seconds
    live_delay: float = 0.0  # seconds (wall clock only; see ``_live_bound``)
    clock: datetime = NEVER
    due_until: datetime = NEVER  # how far time-driven work may run
    woke_at: float = float("-inf")  # monotonic
    arrived_at: float = float("-inf")  # wall-clock seconds of the latest fetched message
    # Arrivals not yet confirmed by every quiet input: (arrived at, latest event time), and
    # the latest event time of those that are.
    arrivals: deque[tuple[float, datetime]] = field(default_factory=deque)
    confirmed: datetime = NEVER

    def fetched(self, topic: str, last_offset: int, at_mono: float, at_wall: float) -> None:
        """Messages up to ``last_offset`` were fetched (valid or not)."""
        source = self.inputs[topic]
        if all(at_mono - i.data_at >= self.idle for i in self.inputs.values()) and not any(
                i.buffer for i in self.inputs.values()):
            self.woke_at = at_mono
        source.position = last_offset + 1
        source.data_at = at_mono
        self.arrived_at = at_wall

    def buffer(self, topic: str, incoming: Incoming, wall: datetime, arrived: float,
               published: float) -> None:
        """An event fetched at ``arrived`` whose message Kafka dates ``published``
        (wall-clock seconds)."""
        at = min(incoming.event.occurred_at, self.horizon(wall))
        live = not self.event_clock and at.timestamp() >= published - self.idle
        source = self.inputs[topic]
        if source.buffer and at < source.buffer[-1].at:
            source.ordered = False
        source.buffer.append(Buffered(at, arrived, incoming, live))
        if at > source.latest:
            source.latest = at
        if self.arrivals and self.arrivals[-1][0] == arrived:
            if at > self.arrivals[-1][1]:
                self.arrivals[-1] = (arrived, at)
        else:
            self.arrivals.append((arrived, at))

    def _inputs(self, at_mono: float) -> tuple[datetime, list[tuple[float, datetime]]]:
        """How far the inputs still being read have been read (the smallest), and for each
        quiet input (read to its end, and idle) when Kafka last confirmed its end and how
        far it had been read then."""
        bound = ALWAYS
        quiet: list[tuple[float, datetime]] = []
        woke = at_mono - self.woke_at < self.idle
        for source in self.inputs.values():
            if source.read_to_end and not woke and at_mono - source.data_at >= self.idle:
                quiet.append((source.polled_at, source.latest))
            else:
                bound = min(bound, source.latest)
        return bound, quiet

    def watermarks(self, at_mono: float) -> Callable[[float], datetime]:
        """The watermark for events that arrived at a given wall-clock time: inputs still
        being read bound it by how far they have been read; a quiet input only bounds events
        that arrived before Kafka confirmed its end."""
        bound, quiet = self._inputs(at_mono)
        known: dict[float, datetime] = {}

        def mark(arrived: float) -> datetime:
            found = known.get(arrived)
            if found is None:
                found = known[arrived] = min(
                    [bound, *(latest for confirmed, latest in quiet if confirmed <= arrived)])
            return found

        return mark

    def _live_bound(self) -> datetime:
        """How far the inputs have been read for a *live* event (wall clock only): an input
        read to its end counts as read up to the moment Kafka last confirmed that, less
        ``live_delay``, the time an event may take from its ``occurred_at`` to being
        readable; any other input up to its latest event time."""
        bound = ALWAYS
        for source in self.inputs.values():
            read = source.latest
            if source.read_to_end and source.polled_at != float("-inf"):
                read = max(read, datetime.fromtimestamp(source.polled_at - self.live_delay, UTC))
            bound = min(bound, read)
        return bound

    def _release_rule(self, at_mono: float) -> Callable[[Buffered], bool]:
        """Whether a buffered event may be processed: up to its watermark, or, if it is
        live (published within ``idle`` of its time, on the wall clock), once every input
        has been read past it by the live rule. A live event so waits about ``live_delay``
        for the other topics, instead of ``idle`` for each input that had data lately; a
        history (published long after its time) is ordered by the watermark alone."""
        mark = self.watermarks(at_mono)
        live_bound = NEVER if self.event_clock else self._live_bound()
        return lambda item: item.at <= mark(item.arrived) or (item.live
                                                               and item.at <= live_bound)

    def take_ready(self, at_mono: float, wall: datetime, limit: int | None = None
                   ) -> tuple[list[Incoming], list[str]]:
        """The buffered events up to their watermark (in no particular order: each
        customer's step orders its own), and the topics of those that are late; advances
        the clock. At most about ``limit`` of them: the earliest, with every event of the
        same time as the last one taken; the rest stay buffered for the next batch (a
        backlog released at once must not hold the worker for many seconds)."""
        ready: list[Incoming] = []
        late: list[str] = []
        latest = NEVER
        clock = self.clock
        while True:  # an input whose buffer empties may stop holding the others back
            may_go = self._release_rule(at_mono)
            taken, full = self._take(may_go, None if limit is None else limit - len(ready))
            for source, item in taken:
                ready.append(item.incoming)
                if item.at < clock:
                    late.append(source.topic)
                latest = max(latest, item.at)
            if full or not taken or not self.buffered():
                break
        unread = self._unread(at_mono)
        self.clock = max(clock, latest) if self.event_clock else max(clock, latest,
                                                                     min(wall, unread))
        self.due_until = min(self.clock, unread)
        return ready, late

    def _take(self, may_go: Callable[[Buffered], bool], room: int | None
              ) -> tuple[list[tuple[Input, Buffered]], bool]:
        """The buffered events that may go, in event-time order up to the earliest that
        must wait (which holds back every later one, and the others of its moment); at
        most about ``room`` of them: the earliest, and all of the last moment (``full``:
        some were left for that reason). A buffer in time order (the usual case) is read
        only as far as it is taken; one out of order is sorted first."""
        if room is not None and room <= 0:
            return [], True
        merged = heapq.merge(*(_in_order(source) for source in self.inputs.values()
                               if source.buffer), key=lambda pair: pair[1].at)
        taken: list[tuple[Input, Buffered]] = []
        full = False
        for source, item in merged:
            if not may_go(item):
                while taken and taken[-1][1].at == item.at:
                    taken.pop()
                break
            if room is not None and len(taken) >= room and item.at != taken[-1][1].at:
                full = True
                break
            taken.append((source, item))
        out_of_order: set[int] = set()
        for source, item in taken:
            if source.ordered:  # its taken events are its first ones
                source.buffer.popleft()
            else:
                out_of_order.add(id(item))
        for source in self.inputs.values():
            if out_of_order and not source.ordered:
                source.buffer = deque(b for b in source.buffer if id(b) not in out_of_order)
            if not source.buffer:  # whatever comes next starts in order
                source.ordered = True
        return taken, full

    def _unread(self, at_mono: float) -> datetime:
        """No event time before this may still be unread or held."""
        bound, quiet = self._inputs(at_mono)
        confirmed_until = min(s.polled_at for s in self.inputs.values())  # by every input
        while self.arrivals and self.arrivals[0][0] < confirmed_until:
            self.confirmed = max(self.confirmed, self.arrivals.popleft()[1])
        waiting = [latest for polled, latest in quiet if polled <= self.arrived_at]
        if waiting:
            bound = min(bound, max(min(waiting), self.confirmed))
        held = min((s.buffer[0].at if s.ordered else min(b.at for b in s.buffer)
                    for s in self.inputs.values() if s.buffer), default=ALWAYS)
        return min(bound, held)

    def horizon(self, wall: datetime) -> datetime:
        """The latest moment a decision may take: the wall clock (a day later on the event
        clock), as for an event's ordering time."""
        return wall + (MAX_AHEAD_OF_WALL if self.event_clock else timedelta(0))

    def now(self, wall: datetime) -> datetime | None:
        """Processor time: the wall clock; on the event clock none (each decision happens at
        its own moment)."""
        return None if self.event_clock else wall

    def buffered(self) -> int:
        return sum(len(s.buffer) for s in self.inputs.values())


def _in_order(source: Input) -> Iterator[tuple[Input, Buffered]]:
    for item in source.buffer if source.ordered else sorted(source.buffer,
                                                              key=lambda b: b.at):
        yield source, item
