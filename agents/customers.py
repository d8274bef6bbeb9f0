"""The customer agent: every input message and every clock tick of a partition, in order.

Per message: decode, apply the domain rules, re-assess churn risk, write the customer's
state, emit the snapshot, a churn-risk event if the level changed, and any dead letters.
Per tick: take the customers whose time-driven work is due and do it.

Delivery is at-least-once; the state carries its own de-duplication memory, written in the
same table value as the change it guards, so a redelivered message changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import faust
import orjson
from faust.types import TP, Message

from schemas.events import Event
from streams.app import (
    INPUT_NAMES,
    TICKS_TOPIC,
    app,
    churn_risk,
    clock,
    counts,
    customer_value,
    customers,
    dead_letters,
    follow_ups,
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
from streams.domain.churn import LEVELS, ChurnChange, assess_churn, decision_time
from streams.domain.followups import REASONS, Dropped, FollowUp, ValueFacts, fire, plan
from streams.domain.profile import build_profile, pending_follow_ups, timestamp
from streams.domain.state import CustomerState, Source, dump_state, load_state
from streams.metrics import (
    CONSUMER_LAG,
    CUSTOMERS,
    DEAD_LETTERS,
    EMITTED,
    EVENTS,
    FOLLOW_UPS_DROPPED,
    PARKED_RESOLVED,
    PROCESSING_ERRORS,
    PROCESSING_SECONDS,
    TICKS_PROCESSED,
)
from streams.model_params import models
from streams.schedule import DueIndex

log = logging.getLogger(__name__)
due_index = DueIndex(schedule)  # type: ignore[arg-type]
customers_by_level = PartitionCounts(counts)  # type: ignore[arg-type]
last_processed: dict[TP, int] = {}


@app.agent(inputs)
async def process(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        message = event.message
        if message.topic == TICKS_TOPIC:
            try:
                await on_tick(message.partition)
            except Exception:  # the next tick retries: the due entries are still there
                PROCESSING_ERRORS.labels(TICKS_TOPIC).inc()
                log.exception("time-driven work of partition %d failed", message.partition)
            continue
        started = time.perf_counter()
        try:
            await on_message(message)
        except Exception as exc:  # a bug must not stop the partition: keep the message
            PROCESSING_ERRORS.labels(message.topic).inc()
            log.exception("processing %s[%d]@%d failed", message.topic, message.partition,
                          message.offset)
            EVENTS.labels(message.topic, "unprocessed", "dead_letter").inc()
            source = Source(message.topic, message.partition, message.offset, message.key,
                            message.value)
            await emit_dead_letters([Rejected(source, "processing_error", repr(exc))])
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
    before = Before.of(state)
    result, state, decisions = handle_event(state, decoded, source, now)
    EVENTS.labels(topic, decoded.type, result.outcome).inc()
    if result.unparked:
        PARKED_RESOLVED.labels("applied").inc(result.unparked)
    if state is not None and (result.changed or decisions.handled):
        await save(before, state, message.partition, decisions, now, erased=result.erased)
    elif result.outcome == "duplicate" and stored is not None:
        # Re-write what is stored: after a crash, local state can be ahead of the changelog.
        customers[decoded.customer_id] = stored
    await emit_dead_letters(result.rejected)


async def on_tick(partition: int) -> None:
    """Time-driven work of one partition: parked events whose time is up, churn checks."""
    now = clock.now()
    TICKS_PROCESSED.labels(str(partition)).inc()
    for customer_id in due_index.pop_due(partition, now):
        stored = customers.get(customer_id)
        if not stored:
            continue
        state = load_state(stored)
        before = Before.of(state)
        if before.deadline is None:
            continue  # nothing is due any more
        if before.deadline > now:  # the deadline moved later: the entry moves with it
            due_index.add(partition, customer_id, before.deadline, now)
            continue
        await save(before, state, partition, catch_up(state, now, now), now, indexed=False)


def handle_event(state: CustomerState | None, event: Event, source: Source, now: datetime
                 ) -> tuple[Result, CustomerState | None, Decisions]:
    """The domain work of one valid event; returns the customer's state after it."""
    # Work that fell due before this event is done first, as the clock would have done it
    # (time has microsecond resolution: work due at the event's own moment comes after it).
    before_event = min(event.occurred_at - timedelta(microseconds=1), now)
    decisions = catch_up(state, before_event, now) if state else Decisions()
    result = apply_event(state, event, source, now, rules)
    state = result.state if result.changed else state
    if result.changed and state is not None and state.has_profile:
        at = decision_time(state, event.occurred_at, now)
        decisions += decide(state, at, now, trigger=event.event_id)
    if state is not None:
        # ... and what is due by now is done now, not left to wait for the next tick.
        decisions += catch_up(state, now, now)
    return result, state, decisions


def catch_up(state: CustomerState, until: datetime, now: datetime) -> Decisions:
    """The time-driven work due up to ``until``, in order, each decision at its own due
    time, as if the clock had ticked through every moment (a replay, an outage, a tick
    interval)."""
    decisions = Decisions()
    handled: datetime | None = None
    while (due := next_deadline(state)) is not None and due <= until:
        if due == handled:  # a deadline that does not move would spin for ever
            log.error("deadline %s of customer %s did not move; skipped", due,
                      state.customer_id)
            break
        handled = due
        decisions.handled += 1
        decisions.expired += expire_parked(state, due)
        decisions += decide(state, due, now, trigger=f"due:{timestamp(due)}")
    return decisions


@dataclass(frozen=True, slots=True)
class Before:
    """What ``save`` compares with: the churn level (if there was a profile) and deadline."""

    level: str | None
    deadline: datetime | None

    @classmethod
    def of(cls, state: CustomerState | None) -> Before:
        if state is None:
            return cls(None, None)
        return cls(state.churn_level if state.has_profile else None, next_deadline(state))


@dataclass
class Decisions:
    """What one or more decisions about a customer produced."""

    profile: dict[str, Any] | None = None  # the profile at the last decision
    churn_events: list[bytes] = field(default_factory=list)
    follow_up_events: list[bytes] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    expired: list[Rejected] = field(default_factory=list)  # parked events whose time ran out
    handled: int = 0  # deadlines handled

    def __iadd__(self, later: Decisions) -> Decisions:
        self.profile = later.profile or self.profile
        self.churn_events += later.churn_events
        self.follow_up_events += later.follow_up_events
        self.dropped += later.dropped
        self.expired += later.expired
        self.handled += later.handled
        return self


def decide(state: CustomerState, at: datetime, now: datetime, trigger: str) -> Decisions:
    """Everything decided about a customer at ``at``: churn risk first, then follow-ups."""
    if not state.has_profile:
        return Decisions()
    params = models.current
    change = assess_churn(state, at, params, rules.churn)
    profile = build_profile(state, at, rules, params)
    facts = ValueFacts(
        clv=profile["predicted_clv_365d"], tier=profile["value_tier"],
        platinum_cut=params.tiers.platinum, churn=profile["churn_risk"],
        became_high_risk=change is not None and change.level == "high")
    dropped = plan(state, at, facts, rules.follow_ups)
    emitted, not_sent = fire(state, at, now, facts, rules.follow_ups)
    profile["follow_ups"] = pending_follow_ups(state)
    decisions = Decisions(profile=profile, dropped=dropped + not_sent)
    if change is not None:
        decisions.churn_events.append(
            orjson.dumps(churn_event(state.customer_id, change, profile, at, trigger)))
    decisions.follow_up_events += [
        orjson.dumps(follow_up_event(state.customer_id, f, at)) for f in emitted]
    return decisions


async def save(before: Before, state: CustomerState, partition: int, decisions: Decisions,
               now: datetime, erased: bool = False, indexed: bool = True) -> None:
    """Store the state, emit what changed and schedule what comes next.

    ``indexed``: the due index still holds an entry at or before ``before.deadline``. A
    deadline that moved later then needs no new entry: the earlier one fires, finds the
    deadline not yet due and moves it (``on_tick``). Most events move the next churn check
    later, so this saves an index write per event."""
    customers[state.customer_id] = dump_state(state)
    for item in decisions.dropped:
        FOLLOW_UPS_DROPPED.labels(item.reason, item.cause).inc()
    if decisions.expired:
        PARKED_RESOLVED.labels("expired").inc(len(decisions.expired))
        await emit_dead_letters(decisions.expired)
    count_levels(before, state, partition)
    if erased:
        await customer_value.send(key=state.customer_id.encode(), value=None)
        EMITTED.labels(customer_value.get_topic_name(), "tombstone").inc()
        return
    if not state.has_profile:
        return
    profile = decisions.profile or build_profile(state, now, rules, models.current)
    key = state.customer_id.encode()
    await customer_value.send(key=key, value=orjson.dumps(profile))
    EMITTED.labels(customer_value.get_topic_name(), "snapshot").inc()
    for event in decisions.churn_events:
        await churn_risk.send(key=key, value=event)
        EMITTED.labels(churn_risk.get_topic_name(), "churn_risk_changed").inc()
    for event in decisions.follow_up_events:
        await follow_ups.send(key=key, value=event)
        EMITTED.labels(follow_ups.get_topic_name(), "follow_up_due").inc()
    deadline = next_deadline(state)
    if deadline is not None and (not indexed or before.deadline is None
                                 or deadline < before.deadline):
        due_index.add(partition, state.customer_id, deadline, now)


def churn_event(customer_id: str, change: ChurnChange, profile: dict[str, Any],
                decided_at: datetime, trigger: str) -> dict[str, Any]:
    """The same decision (customer, change, what caused it) always gets the same id."""
    identity = f"{customer_id}|churn_risk|{change.previous_level}>{change.level}|{trigger}"
    return {
        "event_id": hashlib.sha256(identity.encode()).hexdigest()[:32],
        "type": "churn_risk.changed",
        "customer_id": customer_id,
        "occurred_at": timestamp(decided_at),
        "level": change.level,
        "previous_level": change.previous_level,
        "score": change.score.score,
        "p_alive": profile["p_alive"],
        "reasons": list(change.score.reasons),
        "predicted_clv_365d": profile["predicted_clv_365d"],
        "value_tier": profile["value_tier"],
    }


def follow_up_event(customer_id: str, follow_up: FollowUp, decided_at: datetime
                    ) -> dict[str, Any]:
    """Identified by customer, reason, subject and due time: a repeat has the same id."""
    identity = (f"{customer_id}|follow_up|{follow_up.reason}|{follow_up.subject}|"
                f"{follow_up.due_at.isoformat()}")
    return {
        "event_id": hashlib.sha256(identity.encode()).hexdigest()[:32],
        "type": "follow_up.due",
        "customer_id": customer_id,
        "occurred_at": timestamp(decided_at),
        "reason": follow_up.reason,
        "due_at": timestamp(follow_up.due_at),
        "expires_at": timestamp(follow_up.expires_at),
        "priority": follow_up.priority,
        "suggested_action": REASONS[follow_up.reason].suggested_action,
        "context": follow_up.context,
    }


def count_levels(before: Before, state: CustomerState, partition: int) -> None:
    """Keep the per-partition count of customers (with a profile) by churn level."""
    after = state.churn_level if state.has_profile else None
    if before.level != after:
        if before.level is not None:
            customers_by_level.add(partition, before.level, -1)
        if after is not None:
            customers_by_level.add(partition, after, 1)


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
    for level in LEVELS:
        CUSTOMERS.labels(level).set(customers_by_level.total(owned, level))
    for tp in app.consumer.assignment():
        if tp.topic not in INPUT_NAMES:
            continue
        highwater = app.consumer.highwater(tp)
        if highwater is None:
            continue
        processed = last_processed.get(tp)
        done = processed + 1 if processed is not None else await app.consumer.position(tp)
        CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - (done or 0), 0))
