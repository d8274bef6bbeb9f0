"""How each input event changes a customer's state.

``apply_event`` is the single entry point. It is deterministic and idempotent: an event seen
before (same ``event_id``) changes nothing, and most updates are idempotent by construction
too (sets of message ids, latest-wins timestamps, refund ids kept per order), so even a
redelivery that comes after the de-duplication memory has forgotten it cannot count twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from schemas.events import (
    ORDER_EVENTS,
    CustomerReferred,
    EmailEvent,
    ErasureRequested,
    Event,
    InterestChanged,
    OrderAmended,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ProductPublished,
    ReferralUpdated,
    TicketEvent,
    TicketOpened,
    TicketRated,
    TicketResolved,
)
from streams.domain.copurchase import CoPurchase, co_purchase
from streams.domain.followups import new_in_favourite, offer
from streams.domain.history import live_orders
from streams.domain.interests import index_keys, line_spend, subscribe
from streams.domain.referrals import refusal, take
from streams.domain.rules import Rules
from streams.domain.state import (
    ZERO,
    CustomerState,
    Order,
    Parked,
    Rejected,
    Source,
    Ticket,
    id_hash,
)

Outcome = Literal["applied", "duplicate", "parked", "dead_letter", "not_matched"]
OrderFollowUp = OrderAmended | OrderCancelled | OrderRefunded | OrderPaid
CLICK_MEMORY = timedelta(days=90)  # click times kept for the warm-lead rule
SECONDS_PER_DAY = 86_400


class Rejection(Exception):
    """Raised inside the rules; turned into a ``Rejected`` for the event being applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Applied:
    """What applying one message did."""

    outcome: Outcome
    changed: bool  # the state must be stored and a snapshot emitted
    erased: bool = False
    # Dead letters: the message itself when rejected, and parked events that failed later.
    rejected: list[Rejected] = field(default_factory=list)
    # Parked events applied because their order arrived (each counted as applied then).
    unparked: int = 0
    co_purchase: CoPurchase | None = None  # what a placed order adds to the cross-sell model
    referral_refused: str | None = None  # why an order's referred_by was not taken (a code)


def apply_event(state: CustomerState | None, event: Event | ProductPublished, source: Source,
                now: datetime, rules: Rules) -> tuple[CustomerState | None, Applied]:
    """Apply one validated event at processor time ``now``; return the state after it
    (``None``: nothing is stored for the customer) and what happened. A published product
    reaches every customer it may interest (``interests.index_keys``) and changes only
    those it matches: a ``new_in_favourite`` follow-up becomes pending."""
    if state is not None and state.erased_at is not None and event.occurred_at <= state.erased_at:
        return state, Applied("duplicate", changed=False)  # superseded by the erasure
    if (isinstance(event, ReferralUpdated) and state is not None
            and state.erased_at is not None and event.referred not in state.referrals):
        return state, Applied("duplicate", changed=False)  # a referral of the erased
    event_key = id_hash(event.event_id)
    if state is not None and event_key in state.seen:
        return state, Applied("duplicate", changed=False)
    if isinstance(event, ProductPublished):
        if state is None or not state.has_profile or not new_in_favourite(
                state, event, rules.follow_ups):
            return state, Applied("not_matched", changed=False)
        _remember(state, event_key, now, rules)
        return state, Applied("applied", changed=True)
    if isinstance(event, ErasureRequested):
        marker = CustomerState(customer_id=event.customer_id, erased_at=event.occurred_at)
        return marker, Applied("applied", changed=True, erased=True)

    if state is None:
        state = CustomerState(customer_id=event.customer_id)
    _remember(state, event_key, now, rules)
    if isinstance(event, OrderPlaced | OrderAmended | OrderCancelled | OrderRefunded | OrderPaid):
        applied = _apply_order_event(state, event, event_key, source, now, rules)
        if applied.changed and not isinstance(event, OrderPaid):
            _reindex(state, rules)
        return state, applied
    if isinstance(event, CustomerReferred):
        if (why := refusal(state, event.referred_by)) is not None:
            del state.seen[event_key]  # a dead letter is not remembered as applied
            return state, Applied("dead_letter", changed=False,
                                  rejected=[Rejected(source, *why)])
        _refer(state, event.referred_by, event.occurred_at)
    elif isinstance(event, ReferralUpdated):
        before, took = take(state, event)
        if took and event.first_order_at is not None and (
                before is None or before.first_order_at is None):
            offer(state, "referral_thank_you", event.first_order_at, event.referred,
                  rules.follow_ups)
    elif isinstance(event, EmailEvent):
        _apply_email_event(state, event)
    elif isinstance(event, InterestChanged):
        subscribe(state, event)
        _reindex(state, rules)
    else:
        _apply_ticket_event(state, event)
    # A referrer's own times come from the referrals (their time is the same in any replay),
    # not from when a referred customer's update was sent.
    _touch(state, event.referred_at if isinstance(event, ReferralUpdated) else event.occurred_at)
    return state, Applied("applied", changed=True)


def expire_parked(state: CustomerState, now: datetime) -> list[Rejected]:
    """Remove parked events whose time is up; they become ``orphan_expired`` dead letters."""
    expired = [p for p in state.parked if p.expires_at <= now]
    if expired:
        state.parked = [p for p in state.parked if p.expires_at > now]
    return [Rejected(p.source, "orphan_expired", f"order {p.order_id!r} never arrived")
            for p in expired]


# --- orders ------------------------------------------------------------------------------

def _apply_order_event(state: CustomerState, event: OrderPlaced | OrderFollowUp, event_key: int,
                       source: Source, now: datetime, rules: Rules) -> Applied:
    if not isinstance(event, OrderPlaced) and event.order_id not in state.orders:
        if (full := _parking_full(state, source, rules)) is not None:
            del state.seen[event_key]
            return Applied("dead_letter", changed=False,
                           rejected=[Rejected(source, "too_many_parked", full)])
        state.parked.append(Parked(order_id=event.order_id, occurred_at=event.occurred_at,
                                   event_id=event.event_id, expires_at=now + rules.orphan_ttl,
                                   source=source))
        _touch(state, event.occurred_at)
        return Applied("parked", changed=True)
    try:
        _apply_to_order(state, event, rules)
    except Rejection as rejection:
        del state.seen[event_key]  # a dead letter is not remembered as applied
        return Applied("dead_letter", changed=False,
                       rejected=[Rejected(source, rejection.code, rejection.message)])
    _touch(state, event.occurred_at)
    applied = Applied("applied", changed=True)
    if isinstance(event, OrderPlaced):
        applied.co_purchase = co_purchase(state, event.order_id, state.orders[event.order_id])
        if event.referred_by is not None:
            why = refusal(state, event.referred_by)
            if why is None:
                _refer(state, event.referred_by, event.occurred_at)
            else:  # the order stands; only its referred_by is not taken
                applied.referral_refused = why[0]
        _unpark(state, event.order_id, rules, applied)
    return applied


def _parking_full(state: CustomerState, source: Source, rules: Rules) -> str | None:
    """Why one more parked event would exceed the customer's bounds (``None``: it fits)."""
    if len(state.parked) >= rules.max_parked:
        return f"{len(state.parked)} events are already waiting for unknown orders"
    size = len(source.value or b"") + sum(len(p.source.value or b"") for p in state.parked)
    if size > rules.max_parked_bytes:
        return (f"the events waiting for unknown orders would take {size:,} bytes; at most "
                f"{rules.max_parked_bytes:,} are kept")
    return None


def _unpark(state: CustomerState, order_id: str, rules: Rules, applied: Applied) -> None:
    """Apply, in event-time order, the parked events waiting for this order."""
    waiting = sorted((p for p in state.parked if p.order_id == order_id),
                     key=lambda p: (p.occurred_at, p.event_id))
    if not waiting:
        return
    state.parked = [p for p in state.parked if p.order_id != order_id]
    for parked in waiting:
        event: OrderFollowUp = ORDER_EVENTS.validate_json(parked.source.value or b"")
        try:
            _apply_to_order(state, event, rules)
        except Rejection as rejection:
            applied.rejected.append(Rejected(parked.source, rejection.code, rejection.message))
        else:
            applied.unparked += 1


def _apply_to_order(state: CustomerState, event: OrderPlaced | OrderFollowUp,
                    rules: Rules) -> None:
    if isinstance(event, OrderPlaced):
        if event.order_id in state.orders:
            raise Rejection("order_exists", f"order {event.order_id!r} was already placed")
        rate = rules.fx_rates.get(event.currency)
        if rate is None:
            raise Rejection("unknown_currency",
                            f"no exchange rate from {event.currency} to {rules.currency}")
        revenue, discount, cost = _price_lines(event.lines, rate, rules.default_margin)
        spend, skus = _line_interests(event.lines, rate)
        state.orders[event.order_id] = Order(
            placed_at=event.occurred_at, currency=event.currency, fx_rate=rate,
            revenue=revenue, discount=discount, cost=cost, lines_at=event.occurred_at,
            payment_due_at=event.payment_due_at, spend=spend, skus=skus)
        return

    order = state.orders[event.order_id]
    if isinstance(event, OrderAmended):
        if order.cancelled:
            raise Rejection("order_cancelled", f"order {event.order_id!r} is cancelled")
        order.amended = True
        if event.occurred_at >= order.lines_at:  # an older amendment arriving late loses
            order.revenue, order.discount, order.cost = _price_lines(
                event.lines, order.fx_rate, rules.default_margin)
            order.spend, order.skus = _line_interests(event.lines, order.fx_rate)
            order.lines_at = event.occurred_at
    elif isinstance(event, OrderCancelled):
        if order.cancelled:
            raise Rejection("order_already_cancelled", f"order {event.order_id!r} is cancelled")
        order.cancelled = True
    elif isinstance(event, OrderRefunded):
        if order.cancelled:
            raise Rejection("order_cancelled", f"order {event.order_id!r} is cancelled")
        refund_key = id_hash(event.event_id)
        if refund_key in order.refund_ids:
            return
        amount = event.amount * order.fx_rate
        if amount > order.revenue - order.refunded:
            raise Rejection(
                "refund_exceeds_order",
                f"refund of {event.amount} exceeds what is left unrefunded "
                f"of order {event.order_id!r}")
        order.refunded += amount
        order.refund_ids.append(refund_key)
    else:
        if order.paid_at is not None and order.paid_at != event.occurred_at:
            raise Rejection("order_already_paid", f"order {event.order_id!r} is already paid")
        order.paid_at = event.occurred_at


def _price_lines(lines: Sequence[OrderLine], rate: Decimal, default_margin: Decimal
                 ) -> tuple[Decimal, Decimal, Decimal]:
    """Revenue, discount and cost of a set of lines, in the base currency."""
    revenue = discount = cost = ZERO
    for line in lines:
        line_revenue = line.quantity * line.unit_price
        revenue += line_revenue
        if line.list_price is not None:
            discount += line.quantity * (line.list_price - line.unit_price)
        if line.unit_cost is not None:
            cost += line.quantity * line.unit_cost
        else:
            cost += line_revenue * (1 - default_margin)
    return revenue * rate, discount * rate, cost * rate


def _line_interests(lines: Sequence[OrderLine], rate: Decimal) -> tuple[dict[str, Decimal],
                                                                         list[str]]:
    """Revenue by interest (base currency) and the SKUs of a set of lines."""
    spend: dict[str, Decimal] = {}
    for line in lines:
        line_spend(line.category, line.brand, line.quantity * line.unit_price * rate, spend)
    return spend, sorted({line.sku for line in lines})


# --- tickets and emails --------------------------------------------------------------------


def _apply_ticket_event(state: CustomerState, event: TicketEvent) -> None:
    ticket = state.tickets.get(event.ticket_id)
    if ticket is None:
        # Events of one ticket may arrive in any order: the first one creates it.
        ticket = state.tickets[event.ticket_id] = Ticket(
            opened_at=None, priority="normal", is_open=True, status_at=event.occurred_at)
    if isinstance(event, TicketRated):
        if ticket.rated_at is None or event.occurred_at >= ticket.rated_at:
            ticket.csat, ticket.rated_at = event.csat, event.occurred_at
        return
    if isinstance(event, TicketOpened):
        ticket.opened_at = event.occurred_at
        ticket.priority = event.priority
    if event.occurred_at >= ticket.status_at:  # latest status wins, whatever the arrival order
        ticket.is_open = not isinstance(event, TicketResolved)
        ticket.status_at = event.occurred_at


def _apply_email_event(state: CustomerState, event: EmailEvent) -> None:
    emails, message, at = state.emails, id_hash(event.message_id), event.occurred_at
    match event.type:
        case "email.sent":
            emails.sent.add(message)
        case "email.opened":
            emails.opened.add(message)
            emails.last_open_at = _latest(emails.last_open_at, at)
        case "email.clicked":
            emails.clicked.add(message)
            emails.last_click_at = _latest(emails.last_click_at, at)
            emails.click_times = sorted(
                t for t in [*emails.click_times, at] if t > emails.last_click_at - CLICK_MEMORY)
        case "email.bounced":
            emails.bounced = True
        case "email.unsubscribed":
            emails.unsubscribed = True


# --- bookkeeping -----------------------------------------------------------------------------


def _remember(state: CustomerState, event_key: int, now: datetime, rules: Rules) -> None:
    """Record the event id and forget the ids older than the de-duplication window."""
    today = int(now.timestamp()) // SECONDS_PER_DAY
    horizon = today - rules.dedup_window.days
    seen = state.seen
    while seen:
        oldest = next(iter(seen))
        if seen[oldest] >= horizon:
            break
        del seen[oldest]
    seen[event_key] = today


def _refer(state: CustomerState, referrer: str, at: datetime) -> None:
    """The first referrer wins (``refusal`` has ruled out the others)."""
    if state.referred_by is None:
        state.referred_by, state.referred_at = referrer, at


def _reindex(state: CustomerState, rules: Rules) -> None:
    """Keep ``indexed`` current: what a published product may match the customer by."""
    state.indexed = index_keys(state, live_orders(state), rules.interests)


def _touch(state: CustomerState, occurred_at: datetime) -> None:
    if state.first_seen_at is None or occurred_at < state.first_seen_at:
        state.first_seen_at = occurred_at
    state.updated_at = _latest(state.updated_at, occurred_at)


def _latest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current
