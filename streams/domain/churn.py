"""Churn risk: a score from 0 to 100, its reasons, and a level with hysteresis.

score = min(100, purchase silence + service and engagement points), where

* purchase silence = floor(100 x (1 - P(alive))) under MBG/NBD, 0 before a first purchase.
  With no new events it only grows (P(alive) falls as the customer's age grows), and it
  grows for one-time buyers too. Reason ``purchase_silence`` once it is worth 20 points.
* ``open_ticket`` +10 while a ticket is open; ``ticket_overdue`` +10 more once the oldest open
  ticket is older than 72 hours; ``poor_rating`` +15 when the latest rating is 1 or 2;
  ``email_bounced`` +10; ``unsubscribed`` +15; ``email_silence`` +10 when at least 3 emails
  were sent and none was opened in the last 60 days.

Every term is non-decreasing while nothing happens, so with no new events the score can
only rise: falling levels happen only on events, and rising ones at times computed ahead
(``next_rise_at``), which is what lets the worker wake only the customers that are due.

Levels: ``high`` at or above the high threshold, ``medium`` at or above the medium one. A
level is only left downwards once the score is ``hysteresis`` points below its threshold,
so a score hovering at a threshold does not flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from streams.domain.btyd import NbdParams
from streams.domain.churn_rules import ChurnRules
from streams.domain.history import PurchaseHistory
from streams.domain.predict import Predictor
from streams.domain.state import CustomerState

LEVELS = ("low", "medium", "high")
POINTS = {
    "open_ticket": 10,
    "ticket_overdue": 10,
    "poor_rating": 15,
    "email_bounced": 10,
    "unsubscribed": 15,
    "email_silence": 10,
}
# What each reason means, in one line for a person (profiles, churn-risk events, the UI).
REASON_TEXT = {
    "purchase_silence": "has not bought for longer than their own rhythm predicts "
                        "(points: 100 x (1 - P(alive)))",
    "open_ticket": "has a support ticket open",
    "ticket_overdue": "their oldest open ticket is older than 72 hours",
    "poor_rating": "rated their latest support contact 1 or 2 out of 5",
    "email_bounced": "email to them bounced",
    "unsubscribed": "unsubscribed from email",
    "email_silence": "opened none of 3 or more emails in the last 60 days",
}
SILENCE_REASON_FROM = 20
TICKET_OVERDUE_AFTER = timedelta(hours=72)
EMAIL_SILENCE_AFTER = timedelta(days=60)
EMAIL_SILENCE_MIN_SENT = 3


@dataclass(frozen=True, slots=True)
class ChurnScore:
    score: int
    reasons: tuple[str, ...]  # largest contribution first
    points: tuple[int, ...]  # each reason's points, in the same order


def explain(score: ChurnScore) -> list[tuple[str, int, str]]:
    """Each reason of a score as (code, points, one-line text), largest first."""
    return [(code, points, REASON_TEXT[code])
            for code, points in zip(score.reasons, score.points, strict=True)]


def silence_points(p_alive: float | None) -> int:
    if p_alive is None:
        return 0
    return math.floor(100 * (1 - p_alive) + 1e-9)


def other_points(state: CustomerState, as_of: datetime) -> dict[str, int]:
    """Service and engagement terms that apply at ``as_of``."""
    points: dict[str, int] = {}
    oldest_open: datetime | None = None
    latest_rated_at: datetime | None = None
    latest_csat: int | None = None
    for ticket in state.tickets.values():
        if ticket.is_open:
            opened = ticket.opened_or_seen_at
            if oldest_open is None or opened < oldest_open:
                oldest_open = opened
        if ticket.rated_at is not None and (latest_rated_at is None
                                            or ticket.rated_at > latest_rated_at):
            latest_rated_at, latest_csat = ticket.rated_at, ticket.csat
    if oldest_open is not None:
        points["open_ticket"] = POINTS["open_ticket"]
        if as_of - oldest_open >= TICKET_OVERDUE_AFTER:
            points["ticket_overdue"] = POINTS["ticket_overdue"]
    if latest_csat is not None and latest_csat <= 2:
        points["poor_rating"] = POINTS["poor_rating"]
    emails = state.emails
    if emails.bounced:
        points["email_bounced"] = POINTS["email_bounced"]
    if emails.unsubscribed:
        points["unsubscribed"] = POINTS["unsubscribed"]
    if len(emails.sent) >= EMAIL_SILENCE_MIN_SENT and (
        emails.last_open_at is None or as_of - emails.last_open_at >= EMAIL_SILENCE_AFTER
    ):
        points["email_silence"] = POINTS["email_silence"]
    return points


def churn_score(state: CustomerState, p_alive: float | None, as_of: datetime) -> ChurnScore:
    points = other_points(state, as_of)
    total = sum(points.values())
    silence = silence_points(p_alive)
    total += silence
    if silence >= SILENCE_REASON_FROM:
        points = {"purchase_silence": silence, **points}
    ordered = sorted(points, key=lambda k: -points[k])  # stable: ties keep the order above
    return ChurnScore(score=min(100, total), reasons=tuple(ordered),
                      points=tuple(points[k] for k in ordered))


def level_after(previous: str, score: int, rules: ChurnRules) -> str:
    """The level for ``score``, leaving ``previous`` downwards only past the hysteresis."""
    rising = _level(score, rules.medium, rules.high)
    if LEVELS.index(rising) >= LEVELS.index(previous):
        return rising
    return _level(score, rules.medium - rules.hysteresis, rules.high - rules.hysteresis)


def _level(score: int, medium: int, high: int) -> str:
    return "high" if score >= high else "medium" if score >= medium else "low"


def next_rise_at(state: CustomerState, history: PurchaseHistory | None, level: str,
                 now: datetime, params: NbdParams, rules: ChurnRules) -> datetime | None:
    """The earliest moment after ``now`` at which the score may pass the next threshold up
    with no new events: when a service or engagement term switches on, or the day purchase
    silence alone gets there. ``None`` when nothing can raise the level any more."""
    if level == "high":
        return None
    target = rules.medium if level == "low" else rules.high
    candidates = [t for t in _term_switches(state) if t > now]
    if history is not None:
        needed = target - sum(other_points(state, now).values())
        day = _silence_day(history, needed, params)
        if day is not None:
            at = datetime.combine(history.first_day + timedelta(days=day), time(), UTC)
            candidates.append(max(at, _next_midnight(now)) if at <= now else at)
    return min(candidates, default=None)


def _term_switches(state: CustomerState) -> list[datetime]:
    times = [t.opened_or_seen_at + TICKET_OVERDUE_AFTER
             for t in state.tickets.values() if t.is_open]
    emails = state.emails
    if len(emails.sent) >= EMAIL_SILENCE_MIN_SENT and emails.last_open_at is not None:
        times.append(emails.last_open_at + EMAIL_SILENCE_AFTER)
    return times


def _silence_day(history: PurchaseHistory, needed: int, params: NbdParams) -> int | None:
    """The first age in days at which floor(100 (1 - P(alive))) >= needed, or None.

    1 - P(alive) >= q  <=>  (r+x) ln((alpha+T)/(alpha+t_x)) >= ln(q/(1-q)) - ln(a/(b+x)).
    """
    if needed <= 0:
        return history.recency_days
    if needed >= 100:
        return None
    q = needed / 100
    x, t_x = history.frequency, history.recency_days
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    bound = math.log(q / (1 - q)) - math.log(a / (b + x))
    age = (alpha + t_x) * math.exp(max(bound, 0.0) / (r + x)) - alpha
    return max(math.ceil(age - 1e-9), t_x)


def _next_midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date() + timedelta(days=1), time(), UTC)


@dataclass(frozen=True, slots=True)
class ChurnRisk:
    """The churn risk at a moment: level (after hysteresis), score and P(alive)."""

    level: str
    score: ChurnScore
    p_alive: float | None


@dataclass(frozen=True, slots=True)
class ChurnChange:
    previous_level: str
    risk: ChurnRisk


def current_churn(state: CustomerState, history: PurchaseHistory | None, as_of: datetime,
                  predictor: Predictor, rules: ChurnRules) -> ChurnRisk:
    """Level, score and P(alive) at ``as_of``, given the level the customer is at."""
    alive = predictor.p_alive(history, as_of) if history is not None else None
    score = churn_score(state, alive, as_of)
    return ChurnRisk(level_after(state.churn_level, score.score, rules), score, alive)


def assess_churn(state: CustomerState, history: PurchaseHistory | None, now: datetime,
                 predictor: Predictor, rules: ChurnRules) -> tuple[ChurnRisk, ChurnChange | None]:
    """Move the customer to the level of ``now`` and schedule the next check; return the
    risk now and the change of level, if there is one."""
    risk = current_churn(state, history, now, predictor, rules)
    previous = state.churn_level
    state.churn_level = risk.level
    state.churn_assessed_at = now
    state.churn_check_at = next_rise_at(state, history, risk.level, now,
                                        predictor.params.mbgnbd, rules)
    return risk, (ChurnChange(previous, risk) if risk.level != previous else None)
