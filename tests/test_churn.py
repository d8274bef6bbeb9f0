"""Churn risk as pure rules: score, reasons, hysteresis and when time alone raises it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from streams.domain.churn import (
    assess_churn,
    churn_score,
    explain,
    level_after,
    next_rise_at,
)
from streams.domain.churn_rules import ChurnRules
from streams.domain.history import PurchaseHistory, live_orders, purchase_history
from streams.domain.models import DEFAULT_PARAMS
from streams.domain.predict import Predictor
from streams.domain.state import CustomerState, Emails, Order, Ticket, id_hash

RULES = ChurnRules(medium=40, high=70, hysteresis=10)
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
PREDICTOR = Predictor(DEFAULT_PARAMS)


def history_of(state: CustomerState) -> PurchaseHistory | None:
    return purchase_history(live_orders(state))


def assess(state: CustomerState, now: datetime) -> str | None:
    """Assess at ``now``; the new level if it changed."""
    _, change = assess_churn(state, history_of(state), now, PREDICTOR, RULES)
    return change.risk.level if change is not None else None


def buyer(*days: int) -> CustomerState:
    state = CustomerState("c", first_seen_at=DAY0)
    for n, day in enumerate(days):
        at = DAY0 + timedelta(days=day, hours=9)
        state.orders[f"o{n}"] = Order(placed_at=at, currency="USD", fx_rate=Decimal(1),
                                      revenue=Decimal(10), discount=Decimal(0),
                                      cost=Decimal(7), lines_at=at)
    return state


def reference_score(x: int, t_x: int, age: int) -> int:
    """floor(100 (1 - P(alive))) from the MBG/NBD closed form with the default parameters."""
    p = DEFAULT_PARAMS.mbgnbd
    alive = 1 / (1 + p.a / (p.b + x) * ((p.alpha + age) / (p.alpha + t_x)) ** (p.r + x))
    return math.floor(100 * (1 - alive) + 1e-9)


def first_age_reaching(x: int, t_x: int, threshold: int) -> int:
    return next(age for age in range(t_x, 100_000) if reference_score(x, t_x, age) >= threshold)


@pytest.mark.parametrize(("scores", "levels"), [
    ([39, 40, 31, 45, 30, 29, 39, 40], ["low", "medium", "medium", "medium", "medium", "low",
                                         "low", "medium"]),
    ([75, 61, 60, 59, 70, 10], ["high", "high", "high", "medium", "high", "low"]),
])
def test_levels_leave_downwards_only_past_the_hysteresis(scores: list[int],
                                                          levels: list[str]) -> None:
    level, seen = "low", []
    for score in scores:
        level = level_after(level, score, RULES)
        seen.append(level)
    assert seen == levels


def test_reasons_and_points() -> None:
    state = buyer(0)
    state.tickets["t"] = Ticket(opened_at=DAY0, priority="high", is_open=True, status_at=DAY0,
                                csat=1, rated_at=DAY0)
    state.emails = Emails(sent={id_hash(m) for m in "abc"}, bounced=True, unsubscribed=True)
    as_of = DAY0 + timedelta(days=4)
    score = churn_score(state, p_alive=0.9, as_of=as_of)
    assert score.reasons == ("poor_rating", "unsubscribed", "open_ticket", "ticket_overdue",
                             "email_bounced", "email_silence")
    assert score.score == 10 + 15 + 15 + 10 + 10 + 10 + 10  # silence: 100 x (1 - 0.9)
    assert score.points == (15, 15, 10, 10, 10, 10)  # silence: 10, under the reason's 20
    assert [(code, points) for code, points, _ in explain(score)] == list(
        zip(score.reasons, score.points, strict=True))
    assert all(text and "\n" not in text for _, _, text in explain(score))
    assert churn_score(state, p_alive=0.2, as_of=as_of).score == 100  # capped
    silent = churn_score(buyer(0), p_alive=0.7, as_of=as_of)
    assert (silent.reasons, silent.points) == (("purchase_silence",), (30,))


@pytest.mark.parametrize("days", [(0,), (0, 10, 20), (0, 3, 5, 40, 41, 90)])
def test_time_alone_raises_risk_on_the_days_the_closed_form_says(days: tuple[int, ...]) -> None:
    state = buyer(*days)
    history = history_of(state)
    assert history is not None
    x, t_x = history.frequency, history.recency_days
    now = DAY0 + timedelta(days=days[-1], hours=12)
    seen = []
    for _ in range(2):
        assess(state, now)
        if state.churn_check_at is None:
            break
        now = state.churn_check_at
        level = assess(state, now)
        assert level is not None, "a scheduled check must find the level changed"
        seen.append((level, (now - DAY0).days, now.time()))
    medium, high = (first_age_reaching(x, t_x, t) for t in (RULES.medium, RULES.high))
    expected = [(level, age) for level, age in (("medium", medium), ("high", high))
                if age > days[-1]]
    assert [(level, day) for level, day, _ in seen] == expected
    assert all(at == datetime.min.time() for _, _, at in seen)  # at UTC midnight


def test_one_time_buyers_become_high_risk_in_time() -> None:
    state = buyer(0)
    assess(state, DAY0 + timedelta(hours=10))
    assert state.churn_level == "low"
    high_at = first_age_reaching(0, 0, RULES.high)
    assert 365 < high_at < 730  # the documented default story
    assess(state, DAY0 + timedelta(days=high_at))
    assert state.churn_level == "high"


def test_nothing_scheduled_once_high_or_without_anything_that_can_rise() -> None:
    prospect = CustomerState("p", first_seen_at=DAY0)
    assert next_rise_at(prospect, None, "low", DAY0, DEFAULT_PARAMS.mbgnbd, RULES) is None
    assert next_rise_at(buyer(0), history_of(buyer(0)), "high", DAY0,
                        DEFAULT_PARAMS.mbgnbd, RULES) is None


def test_an_open_ticket_schedules_its_overdue_moment() -> None:
    state = CustomerState("p", first_seen_at=DAY0)
    state.tickets["t"] = Ticket(opened_at=DAY0, priority="low", is_open=True, status_at=DAY0)
    at = next_rise_at(state, None, "low", DAY0 + timedelta(hours=1), DEFAULT_PARAMS.mbgnbd,
                      RULES)
    assert at == DAY0 + timedelta(hours=72)
