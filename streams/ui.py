"""The shop's pages (README, *The shop's pages*): server-rendered HTML, no JavaScript.

The overview never reads customers' records: each worker keeps, per owned partition, the
aggregates and the two top lists in its local store as events are processed
(``store.Aggregates``, the ``h`` and ``w`` indexes), and the worker asked merges its own with
those of the other workers (``/ui/overview.json``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from schemas.outputs import Profile
from streams.codec import EPOCH, micros
from streams.domain.churn import LEVELS, other_points
from streams.domain.history import live_orders, purchase_history
from streams.domain.predict import SEGMENT_OF, TIERS, Predictor
from streams.domain.projection import Projection, project
from streams.domain.rules import Rules
from streams.domain.state import CustomerState
from streams.store import LocalStore

TOP = 20  # rows of each top list
CALL_SCAN = 20_000  # index entries read per partition, at most, for "who to call today"
TIER_ROWS = (*reversed(TIERS), "none")

_templates = Environment(loader=PackageLoader("streams", "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True,
                         lstrip_blocks=True)


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:,.2f}"


def _time(at_us: int) -> str:
    return (EPOCH + timedelta(microseconds=at_us)).strftime("%b %d, %H:%M")


def local_overview(store: LocalStore, partitions: Iterable[int], now: datetime
                   ) -> dict[str, Any]:
    """This worker's share of the overview, for its partitions (JSON-able)."""
    end_of_today = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(),
                                    UTC)
    now_us, until_us = micros(now), micros(end_of_today)
    parts: dict[str, Any] = {}
    for partition in partitions:
        aggregates = store.counts.get(partition)
        if aggregates is None:
            continue
        parts[str(partition)] = {
            "tiers": aggregates.tiers, "rfm": aggregates.rfm,
            "at_risk_cents": aggregates.at_risk_cents,
            "at_risk": [[clv, customer] for clv, customer
                        in store.most_valuable_at_risk(partition, TOP)],
            "calls": [list(call) for call
                      in store.calls(partition, now_us, until_us, TOP, CALL_SCAN)],
        }
    return parts


@dataclass
class Overview:
    """The overview of the partitions in ``parts`` (partition -> a ``local_overview`` entry)."""

    partitions: int  # how many the application has
    parts: dict[str, Any]
    now: datetime
    missing: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.missing = sorted(set(range(self.partitions)) - {int(p) for p in self.parts})

    def tiers(self) -> list[tuple[str, list[int], int]]:
        """Rows of the tier x churn level table: tier, counts by level, total."""
        rows = []
        for tier in TIER_ROWS:
            counts = [sum(part["tiers"].get(tier, {}).get(level, 0)
                          for part in self.parts.values()) for level in LEVELS]
            rows.append((tier, counts, sum(counts)))
        return rows

    def level_totals(self) -> list[int]:
        return [sum(row[1][n] for row in self.tiers()) for n in range(len(LEVELS))]

    def customers(self) -> int:
        return sum(self.level_totals())

    def rfm(self) -> list[list[tuple[int, str]]]:
        """The RFM grid: rows r = 5..1, columns f = 1..5, each (customers, segment)."""
        return [[(sum(part["rfm"].get(f"{r},{f}", 0) for part in self.parts.values()),
                  SEGMENT_OF[r, f]) for f in range(1, 6)] for r in range(5, 0, -1)]

    def at_risk_total(self) -> str:
        return _money(sum(part["at_risk_cents"] for part in self.parts.values()))

    def at_risk(self) -> list[tuple[str, str]]:
        rows = sorted((row for part in self.parts.values() for row in part["at_risk"]),
                      key=lambda row: (-row[0], row[1]))[:TOP]
        return [(customer, _money(clv)) for clv, customer in rows]

    def calls(self) -> list[dict[str, Any]]:
        rows = sorted((row for part in self.parts.values() for row in part["calls"]),
                      key=lambda row: (-row[0], row[2], row[3]))[:TOP]
        return [{"priority": priority, "reason": reason, "due": _time(due),
                 "customer": customer, "status": "due" if sent else "due today"}
                for priority, reason, due, customer, sent in rows]


def render_overview(overview: Overview) -> str:
    return _templates.get_template("overview.html").render(
        o=overview, levels=LEVELS, now=overview.now.strftime("%Y-%m-%d %H:%M UTC"))


@dataclass(frozen=True)
class Chart:
    """The projection as SVG coordinates (a 600 x 160 drawing, 40 px margins on the left)."""

    p_alive: str
    purchases: str
    purchases_max: float
    medium_y: float
    high_y: float


WIDTH, HEIGHT, LEFT = 600.0, 160.0, 40.0


def chart(projection: Projection) -> Chart:
    def x(day: int) -> float:
        return LEFT + (WIDTH - LEFT) * day / projection.days[-1]

    def y(value: float, top: float) -> float:
        return HEIGHT - HEIGHT * (value / top if top else 0.0)

    top = max(max(projection.expected_purchases), 1.0)
    return Chart(
        p_alive=" ".join(f"{x(d):.1f},{y(p, 1.0):.1f}"
                         for d, p in zip(projection.days, projection.p_alive, strict=True)),
        purchases=" ".join(f"{x(d):.1f},{y(e, top):.1f}" for d, e in
                           zip(projection.days, projection.expected_purchases, strict=True)),
        purchases_max=round(top, 1),
        medium_y=round(y(projection.medium_below, 1.0), 1),
        high_y=round(y(projection.high_below, 1.0), 1))


def render_customer(state: CustomerState, as_of: datetime, profile: Profile, rules: Rules,
                    predictor: Predictor) -> str:
    live = live_orders(state)
    history = purchase_history(live)
    projection = (chart(project(history, as_of, predictor.params.mbgnbd,
                                sum(other_points(state, as_of).values()), rules.churn))
                  if history is not None else None)
    orders = sorted(state.orders.items(), key=lambda item: item[1].placed_at, reverse=True)
    tickets = sorted(state.tickets.items(), key=lambda item: item[1].opened_or_seen_at,
                     reverse=True)
    return _templates.get_template("customer.html").render(
        p=profile, state=state, orders=orders, tickets=tickets, now=as_of,
        chart=projection, rules=rules.churn, as_of=as_of.strftime("%Y-%m-%d %H:%M UTC"),
        when=lambda t: t.strftime("%Y-%m-%d %H:%M") if t is not None else "",
        money=lambda d: f"{d:,.2f}")


def render_page(title: str, message: str, login: bool = False) -> str:
    """A page that only says something (not found, not allowed, log in)."""
    return _templates.get_template("message.html").render(title=title, message=message,
                                                          login=login)
