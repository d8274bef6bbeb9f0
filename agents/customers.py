"""The customer agent: every input message and every clock tick of a partition, in order.

Per message: decode, apply the domain rules, write the customer's state, emit the snapshot
and any dead letters. Per tick: take the customers whose time-driven work is due.

Delivery is at-least-once; the state carries its own de-duplication memory, written in the
same table value as the change it guards, so a redelivered message changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import faust
import orjson
from faust.types import TP, Message

from schemas.events import Event
from streams.app import (
    INPUT_NAMES,
    TICKS_TOPIC,
    app,
    clock,
    counts,
    customer_value,
    customers,
    dead_letters,
    inputs,
    rules,
    schedule,
    settings,
    ticks,
)
from streams.counts import PartitionCounts
from streams.deadletters import dead_letter
from streams.decode import Invalid, decode
from streams.domain.apply import Rejected, Result, apply_event, expire_parked, next_deadline
from streams.domain.profile import build_profile
from streams.domain.state import CustomerState, Source, dump_state, load_state
from streams.metrics import (
    CONSUMER_LAG,
    CUSTOMERS,
    DEAD_LETTERS,
    EMITTED,
    EVENTS,
    PARKED_RESOLVED,
    PROCESSING_SECONDS,
    TICKS_PROCESSED,
)
from streams.schedule import DueIndex

due_index = DueIndex(schedule)  # type: ignore[arg-type]
customer_counts = PartitionCounts(counts)  # type: ignore[arg-type]
UNSCORED = "unscored"  # the only churn-risk level until churn risk is scored
last_processed: dict[TP, int] = {}


@app.agent(inputs)
async def process(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        message = event.message
        if message.topic == TICKS_TOPIC:
            await on_tick(message.partition)
        else:
            started = time.perf_counter()
            await on_message(message)
            PROCESSING_SECONDS.observe(time.perf_counter() - started)
            last_processed[message.tp] = message.offset


async def on_message(message: Message) -> None:
    topic = message.topic
    source = Source(topic, message.partition, message.offset, message.key, message.value)
    decoded = decode(INPUT_NAMES[topic], message.key, message.value)
    if isinstance(decoded, Invalid):
        EVENTS.labels(topic, "invalid", "dead_letter").inc()
        await emit_dead_letters([Rejected(source, decoded.code, decoded.message)])
        return
    clock.observe(decoded.occurred_at)
    now = clock.now()
    stored = customers.get(decoded.customer_id)
    state = load_state(stored) if stored else None
    result = apply_event(state, decoded, source, now, rules)
    EVENTS.labels(topic, decoded.type, result.outcome).inc()
    if result.unparked:
        PARKED_RESOLVED.labels("applied").inc(result.unparked)
    if result.changed:
        await store(decoded, result, previous=state, partition=message.partition)
    elif result.outcome == "duplicate" and stored is not None:
        # Re-write what is stored: after a crash, local state can be ahead of the changelog.
        customers[decoded.customer_id] = stored
    await emit_dead_letters(result.rejected)


async def store(
    event: Event, result: Result, previous: CustomerState | None, partition: int
) -> None:
    state = result.state
    assert state is not None
    customers[event.customer_id] = dump_state(state)
    had_profile = previous is not None and previous.has_profile
    if state.has_profile != had_profile:
        customer_counts.add(partition, UNSCORED, 1 if state.has_profile else -1)
    if result.erased:
        await customer_value.send(key=event.customer_id.encode(), value=None)
        EMITTED.labels(customer_value.get_topic_name(), "tombstone").inc()
        return
    await emit_snapshot(state)
    deadline = next_deadline(state)
    if deadline is not None and (previous is None or deadline != next_deadline(previous)):
        due_index.add(partition, state.customer_id, deadline, clock.now())


async def on_tick(partition: int) -> None:
    """Time-driven work of one partition: parked events whose time is up."""
    now = clock.now()
    TICKS_PROCESSED.labels(str(partition)).inc()
    for customer_id in due_index.pop_due(partition, now):
        stored = customers.get(customer_id)
        if not stored:
            continue  # erased since it was scheduled
        state = load_state(stored)
        expired = expire_parked(state, now)
        if not expired:
            continue  # a stale entry: the deadline moved
        customers[customer_id] = dump_state(state)
        PARKED_RESOLVED.labels("expired").inc(len(expired))
        await emit_dead_letters(expired)
        await emit_snapshot(state)
        deadline = next_deadline(state)
        if deadline is not None:
            due_index.add(partition, customer_id, deadline, now)


async def emit_snapshot(state: CustomerState) -> None:
    if not state.has_profile:
        return
    profile = build_profile(state, clock.now(), settings.ticket_cost)
    await customer_value.send(key=state.customer_id.encode(), value=orjson.dumps(profile))
    EMITTED.labels(customer_value.get_topic_name(), "snapshot").inc()


async def emit_dead_letters(rejected: Iterable[Rejected]) -> None:
    received_at = clock.now()
    for item in rejected:
        await dead_letters.send(
            key=item.source.key,
            value=dead_letter(item.source, item.code, item.message, received_at),
        )
        DEAD_LETTERS.labels(item.source.topic, item.code).inc()
        EMITTED.labels(dead_letters.get_topic_name(), "dead_letter").inc()


@app.timer(settings.tick_seconds)
async def send_ticks() -> None:
    """The clock as a stream: one tick to every tick partition this worker owns."""
    for tp in app.assignor.assigned_actives():
        if tp.topic == TICKS_TOPIC:
            await ticks.send(value=b"", partition=tp.partition)


@app.timer(5.0)
async def refresh_gauges() -> None:
    owned = [tp.partition for tp in app.assignor.assigned_actives() if tp.topic == TICKS_TOPIC]
    CUSTOMERS.labels(UNSCORED).set(customer_counts.total(owned, UNSCORED))
    for tp in app.consumer.assignment():
        if tp.topic not in INPUT_NAMES:
            continue
        highwater = app.consumer.highwater(tp)
        if highwater is None:
            continue
        processed = last_processed.get(tp)
        done = processed + 1 if processed is not None else await app.consumer.position(tp)
        CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - (done or 0), 0))
