"""Typed models of every input event (orders, support tickets, emails, erasure requests).

These models are the processor's validator. The JSON Schema files beside this module are
exported from them (``python -m schemas.export``) so that producers in any language check
events against the same rules; ``tests/test_schemas.py`` proves the two agree.

Amounts are exact decimals: a JSON number or a plain decimal string such as ``"19.99"``.
"""

from __future__ import annotations

import re
from datetime import UTC
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

# Bounds that keep every valid event inside exact arithmetic (README, *Limits*): amounts up
# to 12 integer digits (4 decimals when written as text), quantities up to a million, at most
# 1,000 lines, times from 1970 to 2999.
MAX_AMOUNT = Decimal("999999999999.9999")
MAX_QUANTITY = 1_000_000
MAX_LINES = 1_000
_DECIMAL_TEXT = r"^[0-9]{1,12}(\.[0-9]{1,4})?$"
_POSITIVE_DECIMAL_TEXT = r"^(?=.*[1-9])[0-9]{1,12}(\.[0-9]{1,4})?$"
_DECIMAL_TEXT_RE = re.compile(_DECIMAL_TEXT)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# The same grammar with the years allowed: what the JSON Schema states, and the processor.
_RFC3339_IN_RANGE_TEXT = (
    r"^(19[7-9][0-9]|2[0-9]{3})-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")
_RFC3339_IN_RANGE = re.compile(_RFC3339_IN_RANGE_TEXT)


def _plain_decimal_text(value: Any) -> Any:
    """Decimal strings must be plain (no sign, exponent, spaces): what the JSON Schema allows."""
    if isinstance(value, str) and not _DECIMAL_TEXT_RE.fullmatch(value):
        raise ValueError("a decimal string must look like 12 or 12.3456 (at most 12 digits "
                         "before the point and 4 after)")
    if isinstance(value, bool):
        raise ValueError("an amount must be a number or a decimal string")
    return value


def _rfc3339_text(value: Any) -> Any:
    """RFC 3339's own grammar: 'T' between date and time, seconds, an offset with a colon."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 timestamp with an offset, e.g. 2026-01-02T03:04:05Z")
    if not _RFC3339_IN_RANGE.fullmatch(value):
        raise ValueError("expected a time from the year 1970 to 2999")
    return value


def _bounded_amount(value: Decimal) -> Decimal:
    """At most ``MAX_AMOUNT``; a negative zero is zero."""
    if value > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    return value.copy_abs() if value.is_zero() else value


def _integral_number(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so does the processor (but not "2" or 2.5)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Quantity = Annotated[
    int,
    BeforeValidator(_integral_number),
    Field(gt=0, le=MAX_QUANTITY, strict=True),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY}),
]
Csat = Annotated[
    int,
    BeforeValidator(_integral_number),
    Field(ge=1, le=5, strict=True),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 5}),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal_text),
    Field(ge=0, allow_inf_nan=False),
    AfterValidator(_bounded_amount),
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)},
                   {"type": "string", "pattern": _DECIMAL_TEXT}]}
    ),
]
PositiveAmount = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal_text),
    Field(gt=0, allow_inf_nan=False),
    AfterValidator(_bounded_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": float(MAX_AMOUNT)},
                {"type": "string", "pattern": _POSITIVE_DECIMAL_TEXT},
            ]
        }
    ),
]
# An RFC 3339 string only (no unix-time numbers, no naive times), held in UTC: the moment
# is what counts, and every time the processor stores or shows is UTC.
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(lambda moment: moment.astimezone(UTC)),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _RFC3339_IN_RANGE_TEXT}),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# A category or brand as the shop names it; compared exactly (case and spaces count).
Label = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Priority = Literal["low", "normal", "high", "urgent"]


class BaseEvent(BaseModel):
    """Fields every input event carries. Unknown extra fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Identifier
    occurred_at: Timestamp


class InputEvent(BaseEvent):
    """An event about one customer, keyed by the customer's id."""

    customer_id: Identifier


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: Identifier
    quantity: Quantity
    unit_price: Amount
    list_price: Amount | None = None
    unit_cost: Amount | None = None
    category: Label | None = None
    brand: Label | None = None

    @model_validator(mode="after")
    def _list_price_not_below_price(self) -> OrderLine:
        if self.list_price is not None and self.list_price < self.unit_price:
            raise ValueError("list_price must not be below unit_price")
        return self


Lines = Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]


class OrderPlaced(InputEvent):
    type: Literal["order.placed"]
    order_id: Identifier
    currency: Currency
    lines: Lines
    payment_due_at: Timestamp | None = None
    referred_by: Identifier | None = None  # the customer who brought this one


class OrderAmended(InputEvent):
    type: Literal["order.amended"]
    order_id: Identifier
    lines: Lines


class OrderCancelled(InputEvent):
    type: Literal["order.cancelled"]
    order_id: Identifier


class OrderRefunded(InputEvent):
    type: Literal["order.refunded"]
    order_id: Identifier
    amount: PositiveAmount


class OrderPaid(InputEvent):
    type: Literal["order.paid"]
    order_id: Identifier


class CustomerReferred(InputEvent):
    """Names the customer who brought this one (before or after their first order)."""

    type: Literal["customer.referred"]
    referred_by: Identifier


class TicketOpened(InputEvent):
    type: Literal["ticket.opened"]
    ticket_id: Identifier
    priority: Priority = "normal"


class TicketResolved(InputEvent):
    type: Literal["ticket.resolved"]
    ticket_id: Identifier


class TicketReopened(InputEvent):
    type: Literal["ticket.reopened"]
    ticket_id: Identifier


class TicketRated(InputEvent):
    type: Literal["ticket.rated"]
    ticket_id: Identifier
    csat: Csat


class EmailEvent(InputEvent):
    type: Literal[
        "email.sent", "email.opened", "email.clicked", "email.bounced", "email.unsubscribed"
    ]
    message_id: Identifier
    campaign_id: Identifier | None = None


class ErasureRequested(InputEvent):
    type: Literal["customer.erasure_requested"]


class InterestChanged(InputEvent):
    """A customer subscribes to (or leaves) news about a category or a brand."""

    type: Literal["interest.subscribed", "interest.unsubscribed"]
    kind: Literal["category", "brand"]
    value: Label


class ReferralUpdated(InputEvent):
    """Internal (written by valuestream, keyed by the referrer): what one referred customer
    now contributes to the referrer ``customer_id`` (``streams/domain/referrals.py``)."""

    type: Literal["referral.updated"]
    referred: Identifier
    referred_at: Timestamp  # when the referral was recorded
    net_revenue: Decimal
    clv: Decimal | None = None
    first_order_at: Timestamp | None = None
    descendants: Annotated[list[Identifier], Field(max_length=1_000)] = []
    erased: bool = False


class ProductPublished(BaseEvent):
    """A product appears in the shop's catalog (keyed by its SKU, not by a customer)."""

    type: Literal["product.published"]
    sku: Identifier
    title: Annotated[str, StringConstraints(max_length=256)] | None = None
    category: Label | None = None
    brand: Label | None = None
    price: Amount | None = None
    currency: Currency | None = None


OrderEvent = OrderPlaced | OrderAmended | OrderCancelled | OrderRefunded | OrderPaid
TicketEvent = TicketOpened | TicketResolved | TicketReopened | TicketRated
Event = (OrderEvent | TicketEvent | EmailEvent | ErasureRequested | InterestChanged
         | CustomerReferred | ReferralUpdated)


class TopicSchema(BaseModel):
    """What one input topic accepts."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    topic: str
    title: str
    models: tuple[type[BaseEvent], ...]
    key: str = "customer_id"  # the field the message's key must equal
    internal: bool = False  # written by valuestream itself (named after the app id)

    @property
    def types(self) -> frozenset[str]:
        return frozenset(t for m in self.models for t in _literal_types(m))


def _literal_types(model: type[BaseEvent]) -> tuple[str, ...]:
    return model.model_fields["type"].annotation.__args__  # type: ignore[union-attr]


TOPICS: tuple[TopicSchema, ...] = (
    TopicSchema(
        topic="orders",
        title="valuestream order event",
        models=(OrderPlaced, OrderAmended, OrderCancelled, OrderRefunded, OrderPaid,
                CustomerReferred),
    ),
    TopicSchema(
        topic="support-tickets",
        title="valuestream support-ticket event",
        models=(TicketOpened, TicketResolved, TicketReopened, TicketRated),
    ),
    TopicSchema(topic="email-events", title="valuestream email event", models=(EmailEvent,)),
    TopicSchema(
        topic="erasure-requests",
        title="valuestream erasure request",
        models=(ErasureRequested,),
    ),
    TopicSchema(topic="preferences", title="valuestream interest subscription",
                models=(InterestChanged,)),
    TopicSchema(topic="catalog", title="valuestream catalog event", models=(ProductPublished,),
                key="sku"),
    TopicSchema(topic="referrals", title="valuestream referral update (internal)",
                models=(ReferralUpdated,), internal=True),
)
CATALOG = "catalog"
REFERRALS = "referrals"
KEY_OF_TOPIC = {schema.topic: schema.key for schema in TOPICS}
TOPIC_OF_TYPE = {t: schema.topic for schema in TOPICS for t in schema.types
                 if not schema.internal}


def adapter_for(schema: TopicSchema) -> TypeAdapter[Any]:
    """A validator for one topic: a union of its models, chosen by the ``type`` field."""
    union = schema.models[0] if len(schema.models) == 1 else _tagged(schema.models)
    return TypeAdapter(union)


def _tagged(models: tuple[type[BaseEvent], ...]) -> Any:
    return Annotated[reduce(or_, models), Field(discriminator="type")]



# Order events parked while their order is unknown are kept as their original bytes and
# read again with this when the order arrives.
ORDER_EVENTS: TypeAdapter[OrderEvent] = adapter_for(TOPICS[0])
