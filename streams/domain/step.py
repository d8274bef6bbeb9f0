"""The per-customer decision step: a customer's events and time-driven work, in order.

``step(state, events, clock, predictor, rules)`` is everything valuestream decides about one
customer in one batch, as a pure function of its inputs (it updates ``state`` in place and
returns it with what to emit):

1. the events are taken in event-time order: ``occurred_at``, then the topic's rank and the
   offset (``Incoming.order``), so the order in which topics happen to be fetched cannot
   change a decision;
2. before each event, the time-driven work that fell due before its ``occurred_at`` is done,
   each piece at its own due time, with the state as it was then (work due at the event's
   own moment comes after it): the event being here means its partition has been read up
   to its time;
3. each event is applied, and if it changed anything, churn risk and follow-ups are decided
   at the event's own time (never before the customer's previous decision, never after the
   clock's horizon);
4. after the last event, the work due up to the partition's clock is done;
5. if anything changed, the recommended products are worked out again from the co-purchase
   model as it is now (``copurchase``).

The clock (``Clock``) has three readings: ``due_until``, how far time-driven work may run
(it never passes event time still unread on the partition's input topics); ``horizon``, the
latest moment a decision may take (the wall clock, a day more on the event clock: an event
from the future is decided then); and ``now``, the processor time that expires follow-ups
and parked events and dates the de-duplication memory. On the event clock there is no
separate processor time: each decision happens at its own moment, so a replay fed as fast
as possible expires exactly what a live run did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.events import Event, ProductPublished
from schemas.outputs import ChurnRiskChanged, FollowUpDue
from streams.domain.apply import Outcome, apply_event, expire_parked
from streams.domain.churn import ChurnChange, ChurnRisk, assess_churn
from streams.domain.copurchase import CoPurchase, CoPurchaseModel, bought_skus
from streams.domain.followups import (
    REASONS,
    Dropped,
    FollowUp,
    ValueFacts,
    fire,
    plan,
    priority_value,
)
from streams.domain.history import live_orders, purchase_history
from streams.domain.money import cents, money
from streams.domain.predict import Predictor
from streams.domain.profile import Decided, explained, margin_rate, timestamp
from streams.domain.referrals import (
    Contribution,
    contribution,
    relationship_tier,
    totals,
)
from streams.domain.rules import Rules
from streams.domain.state import (
    ZERO,
    CustomerState,
    Order,
    Rejected,
    Source,
    Standing,
    id_hash,
)

JUST_BEFORE = timedelta(microseconds=1)  # time's resolution: work due before an event


@dataclass(frozen=True, slots=True)
class Incoming:
    """A valid input event and the message it came in; a published product, with the
    customer it is offered to."""

    event: Event | ProductPublished
    source: Source
    offered_to: str | None = None  # a product's customer

    @property
    def customer_id(self) -> str:
        if isinstance(self.event, ProductPublished):
            assert self.offered_to is not None, "a product is offered to one customer at a time"
            return self.offered_to
        return self.event.customer_id

    @property
    def order(self) -> tuple[datetime, int, int]:
        """Event time, then the topic's rank and the offset: a stable tie-break."""
        return self.event.occurred_at, self.source.rank, self.source.offset


@dataclass(frozen=True, slots=True)
class Clock:
    due_until: datetime  # time-driven work of customers runs up to here
    horizon: datetime  # no decision is taken later than this
    now: datetime | None  # processor time (wall clock); None on the event clock

    def at(self, moment: datetime) -> datetime:
        """Processor time of something happening at ``moment``."""
        return moment if self.now is None else self.now


@dataclass(slots=True)
class StepResult:
    """The state after the step and everything to emit or count."""

    state: CustomerState | None
    changed: bool = False  # store the state and emit its snapshot
    erased: bool = False  # emit a tombstone (before any snapshot of a new profile)
    decided: Decided | None = None  # the latest decision: its moment is the snapshot's as_of
    outcomes: list[tuple[Incoming, Outcome]] = field(default_factory=list)
    dead_letters: list[Rejected] = field(default_factory=list)
    churn_events: list[ChurnRiskChanged] = field(default_factory=list)
    follow_ups: list[FollowUpDue] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    co_purchases: list[CoPurchase] = field(default_factory=list)  # for the cross-sell model
    referrals: list[Contribution] = field(default_factory=list)  # to the referrers
    referrals_refused: list[str] = field(default_factory=list)  # codes (orders' referred_by)
    unparked: int = 0  # parked events applied because their order arrived
    expired: int = 0  # parked events that became dead letters
    stuck_at: datetime | None = None  # a deadline that did not move when handled (a bug)


def step(state: CustomerState | None, events: Sequence[Incoming], clock: Clock,
         predictor: Predictor, rules: Rules, co_purchases: CoPurchaseModel | None = None
         ) -> StepResult:
    result = StepResult(state)
    for incoming in sorted(events, key=lambda e: e.order):
        occurred_at = incoming.event.occurred_at
        if result.state is not None:
            _catch_up(result, result.state, min(occurred_at, clock.horizon) - JUST_BEFORE,
                      clock, predictor, rules)
        referrer = result.state.referred_by if result.state is not None else None
        referred_at = result.state.referred_at if result.state is not None else None
        state, applied = apply_event(result.state, incoming.event, incoming.source,
                                     clock.at(occurred_at), rules)
        if applied.erased and referrer is not None and referred_at is not None:
            result.referrals.append(Contribution(  # leave the referrer's totals
                referrer, incoming.customer_id, referred_at, occurred_at, ZERO, None, None,
                (), erased=True))
        if applied.referral_refused is not None:
            result.referrals_refused.append(applied.referral_refused)
        result.state = state
        result.outcomes.append((incoming, applied.outcome))
        result.dead_letters += applied.rejected
        result.unparked += applied.unparked
        result.erased |= applied.erased
        if applied.co_purchase is not None:
            result.co_purchases.append(applied.co_purchase)
        if applied.changed and state is not None:
            result.changed = True
            if state.has_profile:
                _decide(result, state, decision_time(state, occurred_at, clock), clock,
                        predictor, rules, trigger=incoming.event.event_id)
    if result.state is not None:
        _catch_up(result, result.state, clock.due_until, clock, predictor, rules)
        if result.changed and co_purchases is not None:
            result.state.recommended = co_purchases.recommend(bought_skus(result.state))
    return result


def _contribute(result: StepResult, state: CustomerState, live: list[Order],
                clv: Decimal | None, at: datetime) -> None:
    """Tell the referrer what the customer brings as of this decision, if that changed
    (after every decision, not once per step: what the referrer receives, and when, does
    not depend on how the events were batched)."""
    contributed = contribution(state, live, clv, at)
    if contributed is None:
        return
    sent = id_hash(repr(contributed.key))
    if sent != state.referral_sent:
        state.referral_sent = sent
        result.referrals.append(contributed)


def decision_time(state: CustomerState, occurred_at: datetime, clock: Clock) -> datetime:
    """When an event's effect is decided: at the event's own time (so a replay decides as
    live did), never after the clock's horizon, never before the customer's previous
    decision (decisions do not go back in time)."""
    moment = min(occurred_at, clock.horizon)
    assessed = state.churn_assessed_at
    return assessed if assessed is not None and assessed > moment else moment


def _catch_up(result: StepResult, state: CustomerState, until: datetime, clock: Clock,
              predictor: Predictor, rules: Rules) -> None:
    """The time-driven work due up to ``until``, in order, each decision at its own due
    time, as if the clock had passed every moment (a replay, an outage, a batch)."""
    handled: datetime | None = None
    while (due := state.next_deadline()) is not None and due <= until:
        if due == handled:  # a deadline that does not move would spin for ever
            result.stuck_at = due
            return
        handled = due
        result.changed = True
        expired = expire_parked(state, due)
        result.expired += len(expired)
        result.dead_letters += expired
        if state.has_profile:
            _decide(result, state, due, clock, predictor, rules, trigger=f"due:{timestamp(due)}")


def _decide(result: StepResult, state: CustomerState, at: datetime, clock: Clock,
            predictor: Predictor, rules: Rules, trigger: str) -> None:
    """Everything decided about a customer at ``at``: churn risk first, then follow-ups."""
    live = live_orders(state)
    history = purchase_history(live)
    risk, change = assess_churn(state, history, at, predictor, rules.churn)
    clv = raw_clv = None
    referred = totals(state).referred_clv
    if history is not None:
        own_margin = margin_rate(live)
        raw_clv = predictor.clv(history, at, own_margin if own_margin is not None
                                else rules.default_margin)
        clv = cents(Decimal(raw_clv))
    tier = relationship_tier(raw_clv, referred, bool(state.referrals), predictor.params)
    facts = ValueFacts(
        live=live, history=history, clv=clv, currency=rules.currency, tier=tier,
        platinum_cut=predictor.params.tiers.platinum,
        became_high_risk=change is not None and change.risk.level == "high", churn=risk,
        referred_clv=referred)
    rfm = predictor.rfm(history, at) if history is not None else None
    state.standing = Standing(clv_cents=int(clv * 100) if clv is not None else None,
                              r=rfm.r if rfm else 0, f=rfm.f if rfm else 0,
                              value=round(priority_value(facts)))
    result.dropped += plan(state, at, facts, rules.follow_ups)
    emitted, not_sent = fire(state, at, clock.at(at), facts, rules.follow_ups)
    result.dropped += not_sent
    result.decided = Decided(at, live, history, risk, rfm)
    if change is not None:
        result.churn_events.append(churn_event(state.customer_id, change, risk, facts, at,
                                               trigger))
    result.follow_ups += [follow_up_event(state.customer_id, f, at, facts.currency)
                          for f in emitted]
    _contribute(result, state, live, clv, at)


def churn_event(customer_id: str, change: ChurnChange, risk: ChurnRisk, facts: ValueFacts,
                decided_at: datetime, trigger: str) -> ChurnRiskChanged:
    """The same decision (customer, change, what caused it) always gets the same id."""
    identity = f"{customer_id}|churn_risk|{change.previous_level}>{risk.level}|{trigger}"
    return ChurnRiskChanged(
        event_id=hashlib.sha256(identity.encode()).hexdigest()[:32],
        customer_id=customer_id,
        occurred_at=decided_at,
        level=risk.level,
        previous_level=change.previous_level,
        score=risk.score.score,
        p_alive=round(risk.p_alive, 4) if risk.p_alive is not None else None,
        reasons=list(risk.score.reasons),
        reason_details=explained(risk.score),
        predicted_clv_365d=money(facts.clv) if facts.clv is not None else None,
        currency=facts.currency,
        value_tier=facts.tier,
    )


def follow_up_event(customer_id: str, follow_up: FollowUp, decided_at: datetime,
                    currency: str) -> FollowUpDue:
    """Identified by customer, reason, subject and due time: a repeat has the same id."""
    identity = (f"{customer_id}|follow_up|{follow_up.reason}|{follow_up.subject}|"
                f"{follow_up.due_at.isoformat()}")
    return FollowUpDue(
        event_id=hashlib.sha256(identity.encode()).hexdigest()[:32],
        customer_id=customer_id,
        occurred_at=decided_at,
        reason=follow_up.reason,
        due_at=follow_up.due_at,
        expires_at=follow_up.expires_at,
        priority=follow_up.priority,
        suggested_action=REASONS[follow_up.reason].suggested_action,
        context=follow_up.context,
        currency=currency,
    )
