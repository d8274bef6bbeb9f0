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
    EmailEvent,
    ErasureRequested,
    Event,
    OrderAmended,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    TicketOpened,
    TicketRated,
    TicketReopened,
    TicketResolved,
)
from streams.domain.rules import Rules
from streams.domain.state import (
    ZERO,
    CustomerState,
    Order,
    OrderFollowUp,
    Parked,
    Source,
    Ticket,
)

Outcome = Literal["applied", "duplicate", "parked", "dead_letter"]
CLICK_MEMORY = timedelta(days=90)  # click times kept for the warm-lead rule


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that becomes a dead letter: where it came from, a code and a message."""

    source: Source
    code: str
    message: str


class Rejection(Exception):
    """Raised inside the rules; turned into a ``Rejected`` for the event being applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Result:
    """What applying one message did."""

    state: CustomerState | None  # None: nothing is stored for the customer
    outcome: Outcome
    changed: bool  # the stored state must be written and a snapshot emitted
    erased: bool = False
    # Dead letters: the message itself when rejected, and parked events that failed later.
    rejected: list[Rejected] = field(default_factory=list)
    # Parked events applied because their order arrived (each counted as applied then).
    unparked: int = 0


def apply_event(
    state: CustomerState | None, event: Event, source: Source, now: datetime, rules: Rules
) -> Result:
    """Apply one validated event for ``event.customer_id`` at processor time ``now``."""
    if state is not None and state.erased_at is not None and event.occurred_at <= state.erased_at:
        return Result(state, "duplicate", changed=False)  # superseded by the erasure
    if state is not None and event.event_id in state.seen:
        return Result(state, "duplicate", changed=False)
    if isinstance(event, ErasureRequested):
        return Result(_erasure_marker(event), "applied", changed=True, erased=True)

    state = state if state is not None else CustomerState(customer_id=event.customer_id)
    _remember(state, event.event_id, now, rules)
    if isinstance(event, OrderPlaced | OrderAmended | OrderCancelled | OrderRefunded | OrderPaid):
        return _apply_order_event(state, event, source, now, rules)
    if isinstance(event, TicketOpened | TicketResolved | TicketReopened | TicketRated):
        _apply_ticket_event(state, event)
    else:
        _apply_email_event(state, event)
    _touch(state, event.occurred_at)
    return Result(state, "applied", changed=True)


def expire_parked(state: CustomerState, now: datetime) -> list[Rejected]:
    """Remove parked events whose time is up; they become ``orphan_expired`` dead letters."""
    expired = [p for p in state.parked if p.expires_at <= now]
    if expired:
        state.parked = [p for p in state.parked if p.expires_at > now]
    return [
        Rejected(p.source, "orphan_expired", f"order {p.event.order_id!r} never arrived")
        for p in expired
    ]


def next_deadline(state: CustomerState) -> datetime | None:
    """The next processor time at which time alone may change this customer's state."""
    deadlines = [p.expires_at for p in state.parked]
    deadlines += [f.due_at for f in state.followups.values()]
    if state.churn_check_at is not None:
        deadlines.append(state.churn_check_at)
    return min(deadlines, default=None)


# --- orders ------------------------------------------------------------------------------

def _apply_order_event(
    state: CustomerState,
    event: OrderPlaced | OrderFollowUp,
    source: Source,
    now: datetime,
    rules: Rules,
) -> Result:
    if not isinstance(event, OrderPlaced) and event.order_id not in state.orders:
        state.parked.append(
Parked(event=event, expires_at=now + rules.orphan_ttl, source=source)
        )
        _touch(state, event.occurred_at)
        return Result(state, "parked", changed=True)
    try:
        _apply_to_order(state, event, rules)
    except Rejection as rejection:
        del state.seen[event.event_id]  # a dead letter is not remembered as applied
        return Result(state, "dead_letter", changed=False,
                      rejected=[Rejected(source, rejection.code, rejection.message)])
    _touch(state, event.occurred_at)
    result = Result(state, "applied", changed=True)
    if isinstance(event, OrderPlaced):
        _unpark(state, event.order_id, rules, result)
    return result


def _unpark(state: CustomerState, order_id: str, rules: Rules, result: Result) -> None:
    """Apply, in event-time order, the parked events waiting for this order."""
    waiting = sorted(
        (p for p in state.parked if p.event.order_id == order_id),
        key=lambda p: (p.event.occurred_at, p.event.event_id),
    )
    if not waiting:
        return
    state.parked = [p for p in state.parked if p.event.order_id != order_id]
    for parked in waiting:
        try:
            _apply_to_order(state, parked.event, rules)
        except Rejection as rejection:
            result.rejected.append(Rejected(parked.source, rejection.code, rejection.message))
        else:
            result.unparked += 1


def _apply_to_order(state: CustomerState, event: OrderPlaced | OrderFollowUp, rules: Rules) -> None:
    if isinstance(event, OrderPlaced):
        if event.order_id in state.orders:
            raise Rejection("order_exists", f"order {event.order_id!r} was already placed")
        rate = rules.fx_rates.get(event.currency)
        if rate is None:
            raise Rejection(
                "unknown_currency",
                f"no exchange rate from {event.currency} to {rules.currency}",
            )
        revenue, discount, cost = _price_lines(event.lines, rate, rules.default_margin)
        state.orders[event.order_id] = Order(
            placed_at=event.occurred_at,
            currency=event.currency,
            fx_rate=rate,
            revenue=revenue,
            discount=discount,
            cost=cost,
            lines_at=event.occurred_at,
            payment_due_at=event.payment_due_at,
        )
        return

    order = state.orders[event.order_id]
    if isinstance(event, OrderAmended):
        if order.cancelled:
            raise Rejection("order_cancelled", f"order {event.order_id!r} is cancelled")
        order.amended = True
        if event.occurred_at >= order.lines_at:  # an older amendment arriving late loses
            order.revenue, order.discount, order.cost = _price_lines(
                event.lines, order.fx_rate, rules.default_margin
            )
            order.lines_at = event.occurred_at
    elif isinstance(event, OrderCancelled):
        if order.cancelled:
            raise Rejection("order_already_cancelled", f"order {event.order_id!r} is cancelled")
        order.cancelled = True
    elif isinstance(event, OrderRefunded):
        if order.cancelled:
            raise Rejection("order_cancelled", f"order {event.order_id!r} is cancelled")
        if event.event_id in order.refund_ids:
            return
        amount = event.amount * order.fx_rate
        if amount > order.revenue - order.refunded:
            raise Rejection(
                "refund_exceeds_order",
                f"refund of {event.amount} exceeds what is left unrefunded "
                f"of order {event.order_id!r}",
            )
        order.refunded += amount
        order.refund_ids.append(event.event_id)
    else:
        if order.paid_at is not None and order.paid_at != event.occurred_at:
            raise Rejection("order_already_paid", f"order {event.order_id!r} is already paid")
        order.paid_at = event.occurred_at


def _price_lines(
    lines: Sequence[OrderLine], rate: Decimal, default_margin: Decimal
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


# --- tickets and emails --------------------------------------------------------------------

TicketEvent = TicketOpened | TicketResolved | TicketReopened | TicketRated


def _apply_ticket_event(state: CustomerState, event: TicketEvent) -> None:
    ticket = state.tickets.get(event.ticket_id)
    if ticket is None:
        # Events of one ticket may arrive in any order: the first one creates it.
        ticket = state.tickets[event.ticket_id] = Ticket(
            opened_at=None, priority="normal", is_open=True, status_at=event.occurred_at
        )
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
    emails, message, at = state.emails, event.message_id, event.occurred_at
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


def _erasure_marker(event: ErasureRequested) -> CustomerState:
    # Only reached for an erasure newer than any earlier one (older ones are duplicates).
    return CustomerState(customer_id=event.customer_id, erased_at=event.occurred_at)


def _remember(state: CustomerState, event_id: str, now: datetime, rules: Rules) -> None:
    """Record the event id and forget the ids older than the de-duplication window."""
    horizon = (now - rules.dedup_window).timestamp()
    seen = state.seen
    while seen:
        oldest = next(iter(seen))
        if seen[oldest] >= horizon:
            break
        del seen[oldest]
    seen[event_id] = now.timestamp()


def _touch(state: CustomerState, occurred_at: datetime) -> None:
    if state.first_seen_at is None or occurred_at < state.first_seen_at:
        state.first_seen_at = occurred_at
    state.updated_at = _latest(state.updated_at, occurred_at)


def _latest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current
