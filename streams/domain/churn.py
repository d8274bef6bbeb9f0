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
from operator import attrgetter

from streams.domain.btyd import NbdParams
from streams.domain.churn_rules import ChurnRules
from streams.domain.history import PurchaseHistory, purchase_history
from streams.domain.models import ModelParams
from streams.domain.predict import p_alive
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
SILENCE_REASON_FROM = 20
TICKET_OVERDUE_AFTER = timedelta(hours=72)
EMAIL_SILENCE_AFTER = timedelta(days=60)
EMAIL_SILENCE_MIN_SENT = 3


@dataclass(frozen=True, slots=True)
class ChurnScore:
    score: int
    reasons: tuple[str, ...]  # largest contribution first


def silence_points(p_alive: float | None) -> int:
    if p_alive is None:
        return 0
    return math.floor(100 * (1 - p_alive) + 1e-9)


def other_points(state: CustomerState, as_of: datetime) -> dict[str, int]:
    """Service and engagement terms that apply at ``as_of``."""
    reasons: list[str] = []
    open_since = [t.opened_at or t.status_at for t in state.tickets.values() if t.is_open]
    if open_since:
        reasons.append("open_ticket")
        if as_of - min(open_since) >= TICKET_OVERDUE_AFTER:
            reasons.append("ticket_overdue")
    rated = [t for t in state.tickets.values() if t.csat is not None]
    if rated and max(rated, key=attrgetter("rated_at")).csat <= 2:  # type: ignore[operator]
        reasons.append("poor_rating")
    emails = state.emails
    if emails.bounced:
        reasons.append("email_bounced")
    if emails.unsubscribed:
        reasons.append("unsubscribed")
    if len(emails.sent) >= EMAIL_SILENCE_MIN_SENT and (
        emails.last_open_at is None or as_of - emails.last_open_at >= EMAIL_SILENCE_AFTER
    ):
        reasons.append("email_silence")
    return {reason: POINTS[reason] for reason in reasons}


def churn_score(state: CustomerState, p_alive: float | None, as_of: datetime) -> ChurnScore:
    points = other_points(state, as_of)
    silence = silence_points(p_alive)
    if silence >= SILENCE_REASON_FROM:
        points = {"purchase_silence": silence, **points}
    total = silence + sum(v for k, v in points.items() if k != "purchase_silence")
    ordered = sorted(points, key=lambda k: -points[k])  # stable: ties keep the order above
    return ChurnScore(score=min(100, total), reasons=tuple(ordered))


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
    times = [(t.opened_at or t.status_at) + TICKET_OVERDUE_AFTER
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
class ChurnChange:
    previous_level: str
    level: str
    score: ChurnScore
    p_alive: float | None


def current_churn(state: CustomerState, as_of: datetime, params: ModelParams,
                  rules: ChurnRules, history: PurchaseHistory | None = None
                  ) -> tuple[str, ChurnScore, float | None]:
    """Level, score and P(alive) at ``as_of``, given the level the customer is at
    (``history``: the customer's purchase history, if the caller has it already)."""
    history = history or purchase_history(state)
    alive = p_alive(history, as_of, params) if history else None
    score = churn_score(state, alive, as_of)
    return level_after(state.churn_level, score.score, rules), score, alive


def assess_churn(state: CustomerState, now: datetime, params: ModelParams,
                 rules: ChurnRules) -> ChurnChange | None:
    """Move the customer to the level of ``now`` and schedule the next check; return the
    change of level, if there is one."""
    history = purchase_history(state)
    level, score, alive = current_churn(state, now, params, rules, history)
    previous = state.churn_level
    state.churn_level = level
    state.churn_assessed_at = now
    state.churn_check_at = next_rise_at(state, history, level, now, params.mbgnbd, rules)
    if level == previous:
        return None
    return ChurnChange(previous_level=previous, level=level, score=score, p_alive=alive)


def decision_time(state: CustomerState, occurred_at: datetime, now: datetime) -> datetime:
    """When an event's effect on churn risk is decided: at the event's own time (so a fast
    replay decides as live did), never before the customer's last assessment, never after
    the processor's now."""
    moment = occurred_at
    if state.churn_assessed_at is not None and state.churn_assessed_at > moment:
        moment = state.churn_assessed_at
    return min(moment, now)
