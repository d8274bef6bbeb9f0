"""Time to follow up: which follow-ups a customer has pending, and which fall due.

Each reason has a rule for when it falls due and a condition that must still hold then
(see ``REASONS`` and the README's table). The engine keeps at most one pending follow-up per
customer and reason. After every event it drops the pending ones whose condition stopped
holding and adds new candidates; when one falls due it is emitted only if its condition
still holds, it has not expired, its reason is out of its cool-down, and the customer's cap
(at most ``cap`` follow-ups in any ``cap_window``) leaves room. When several fall due at once
the highest priority goes first; one that finds the cap full is deferred to when the cap
frees a slot, or dropped if that is after its expiry.

priority = round((value + urgency) / 2), where value = min(100, 100 x predicted CLV / the
platinum cut-off) and urgency is the reason's own (``REASONS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from schemas.events import ProductPublished
from streams.domain.churn import ChurnRisk, explain
from streams.domain.history import PurchaseHistory
from streams.domain.interests import matches
from streams.domain.money import money
from streams.domain.state import ZERO, CustomerState, Order, PendingFollowUp, Ticket

TOP_TIERS = ("gold", "platinum")
DONE_MEMORY = timedelta(days=120)  # longer than any due date stays relevant
MATCHED = "matched:"  # a new_in_favourite's detail: "matched:<interest>" -> why
# Whether a cross_sell goes out depends on the co-purchase model, which every worker learns
# live from all partitions' orders: a replay can see it at another stage than a live run
# did. So that it cannot move any other follow-up (which stay exactly replayable), it is
# outside the cap (neither held by it nor counted in it), and is made pending after every
# order whatever its cool-down (checked when it falls due): its due times, and so the
# customer's decision times, do not depend on the model (README, *Cross-sell*).
LIVE_MODEL = frozenset({"cross_sell"})


@dataclass(frozen=True, slots=True)
class Reason:
    urgency: int
    valid_for: timedelta  # expires_at = due_at + valid_for
    suggested_action: str


REASONS: dict[str, Reason] = {
    "poor_rating_recovery": Reason(90, timedelta(days=2),
                                   "Call the customer about the poor rating and make it right"),
    "ticket_overdue": Reason(85, timedelta(days=2),
                             "Escalate the open ticket and tell the customer what happens next"),
    "win_back": Reason(80, timedelta(days=14),
                       "Send a personal note from the owner with a reason to come back"),
    "ticket_follow_up": Reason(60, timedelta(days=5),
                               "Check that the resolved ticket really solved the problem"),
    "reorder_due": Reason(55, timedelta(days=14),
                          "Remind the customer that their usual reorder time has come"),
    "warm_lead": Reason(50, timedelta(days=7),
                        "Reach out with the products the customer has been clicking on"),
    "first_order_check_in": Reason(40, timedelta(days=7),
                                   "Ask how the first order went and offer help"),
    "vip_thank_you": Reason(30, timedelta(days=14),
                            "Thank the customer personally for being one of the best"),
    "referral_thank_you": Reason(65, timedelta(days=7),
                                 "Thank the customer for the friend who just placed a "
                                 "first order"),
    "ask_for_referral": Reason(25, timedelta(days=14),
                               "Ask the happy customer to recommend the shop to a friend"),
    "cross_sell": Reason(35, timedelta(days=7),
                         "Suggest the products that go with what the customer bought"),
    "new_in_favourite": Reason(45, timedelta(days=7),
                               "Tell the customer about the new product in a category or "
                               "brand they like"),
}


@dataclass(frozen=True, slots=True)
class FollowUpRules:
    check_in_after: timedelta = timedelta(days=7)
    reorder_min_interval: timedelta = timedelta(days=7)
    ticket_follow_up_after: timedelta = timedelta(days=2)
    overdue_urgent: timedelta = timedelta(hours=24)  # priority high or urgent
    overdue_other: timedelta = timedelta(hours=72)
    warm_lead_clicks: int = 2
    warm_lead_window: timedelta = timedelta(days=14)
    warm_lead_quiet: timedelta = timedelta(days=30)
    cross_sell_after: timedelta = timedelta(days=14)
    cross_sell_min_score: float = 0.25  # of a recommendation (``copurchase``)
    cooldown: timedelta = timedelta(days=30)
    cap: int = 2
    cap_window: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ValueFacts:
    """What the rest of the decision knows about the customer at its moment."""

    live: list[Order]  # non-cancelled orders, oldest first
    history: PurchaseHistory | None
    clv: Decimal | None  # rounded to cents
    currency: str  # of every amount
    tier: str | None
    platinum_cut: float
    became_high_risk: bool  # the churn level changed to high in this decision
    churn: ChurnRisk | None  # the risk at the decision (for a win-back's context)
    referred_clv: Decimal = ZERO  # the CLV of the customers this one brought


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up to emit now."""

    reason: str
    due_at: datetime
    expires_at: datetime
    priority: int
    subject: str
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str
    cause: str  # condition, cool_down, cap, expired


def plan(state: CustomerState, at: datetime, facts: ValueFacts,
         rules: FollowUpRules) -> list[Dropped]:
    """After an event or a time step at ``at``: drop pending follow-ups whose condition no
    longer holds, and add the new candidates (one pending per reason)."""
    dropped = [Dropped(r, "condition") for r, p in state.followups.items()
               if not _holds(state, p, at, facts, rules)]
    for item in dropped:
        del state.followups[item.reason]
    for reason, due_at, subject in _candidates(state, at, facts, rules):
        offer(state, reason, due_at, subject, rules)
    state.value_tier = facts.tier
    horizon = at - DONE_MEMORY
    if any(d <= horizon for d in state.followups_done.values()):
        state.followups_done = {k: d for k, d in state.followups_done.items() if d > horizon}
    return dropped


def offer(state: CustomerState, reason: str, due_at: datetime, subject: str,
          rules: FollowUpRules, detail: dict[str, str] | None = None) -> bool:
    """Make a follow-up pending unless one is pending for its reason, its reason is in its
    cool-down at ``due_at``, or the same one was handled already. Returns whether it was."""
    if reason in state.followups:
        return False
    last = state.followups_sent.get(reason)
    if last is not None and due_at < last + rules.cooldown and reason not in LIVE_MODEL:
        return False  # in its cool-down: not even pending
    candidate = PendingFollowUp(reason=reason, due_at=due_at,
                                expires_at=due_at + REASONS[reason].valid_for,
                                subject=subject, detail=detail)
    if candidate.key in state.followups_done:
        return False
    state.followups[reason] = candidate
    return True


def new_in_favourite(state: CustomerState, product: ProductPublished,
                     rules: FollowUpRules) -> bool:
    """A published product the customer may like: pending at once (due at the product's
    time) if it matches (``interests.matches``). Returns whether it was offered."""
    matched = matches(state, product)
    if not matched:
        return False
    detail = {name: value for name in ("sku", "title", "category", "brand", "currency")
              if (value := getattr(product, name)) is not None}
    if product.price is not None:
        detail["price"] = money(product.price)
    detail.update((f"{MATCHED}{name}", why) for name, why in matched)
    return offer(state, "new_in_favourite", product.occurred_at, product.sku, rules, detail)


def fire(state: CustomerState, at: datetime, now: datetime, facts: ValueFacts,
         rules: FollowUpRules) -> tuple[list[FollowUp], list[Dropped]]:
    """The follow-ups falling due at ``at`` (processor time ``now``, later after an outage or
    during a replay): emitted, deferred or dropped, highest priority first."""
    due = sorted((p for p in state.followups.values() if p.due_at <= at),
                 key=lambda p: (-priority(p.reason, facts), p.reason))
    emitted: list[FollowUp] = []
    dropped: list[Dropped] = []
    for pending in due:
        del state.followups[pending.reason]
        state.followups_done[pending.key] = pending.due_at
        last = state.followups_sent.get(pending.reason)
        if now >= pending.expires_at:
            dropped.append(Dropped(pending.reason, "expired"))
        elif not _holds(state, pending, at, facts, rules):
            dropped.append(Dropped(pending.reason, "condition"))
        elif last is not None and at < last + rules.cooldown:
            dropped.append(Dropped(pending.reason, "cool_down"))
        elif pending.reason not in LIVE_MODEL and (
                free_at := _cap_frees_at(state, at, rules)) is not None:
            if free_at < pending.expires_at:
                state.followups[pending.reason] = PendingFollowUp(
                    reason=pending.reason, due_at=free_at, expires_at=pending.expires_at,
                    subject=pending.subject, detail=pending.detail)
            else:
                dropped.append(Dropped(pending.reason, "cap"))
        else:
            state.followups_sent[pending.reason] = at
            if pending.reason not in LIVE_MODEL:
                state.followup_times = [t for t in state.followup_times
                                        if t > at - rules.cap_window] + [at]
                _remember_sent(state, pending, at, facts)
            emitted.append(FollowUp(
                reason=pending.reason, due_at=pending.due_at, expires_at=pending.expires_at,
                priority=priority(pending.reason, facts), subject=pending.subject,
                context=_context(state, pending, facts, rules)))
    return emitted, dropped


def priority(reason: str, facts: ValueFacts) -> int:
    return priority_of(reason, priority_value(facts))


def priority_value(facts: ValueFacts) -> float:
    """The value half of a priority: 100 x relationship value / the platinum cut, 0-100."""
    relationship = (facts.clv or ZERO) + facts.referred_clv  # README, *Referrals*
    if facts.platinum_cut <= 0:
        return 0.0
    return min(100.0, 100.0 * max(float(relationship), 0.0) / facts.platinum_cut)


def priority_of(reason: str, value: float) -> int:
    return round((value + REASONS[reason].urgency) / 2)


def _remember_sent(state: CustomerState, sent: PendingFollowUp, at: datetime,
                   facts: ValueFacts) -> None:
    """Keep the follow-up sent last for the overview's calls, unless one of higher priority
    sent before is still valid. (Not cross-sell's: it depends on a live model, and the state
    must be what a replay makes.)"""
    kept = state.last_follow_up
    if (kept is None or kept.expires_at <= at
            or priority(sent.reason, facts) >= priority(kept.reason, facts)):
        state.last_follow_up = PendingFollowUp(reason=sent.reason, due_at=sent.due_at,
                                               expires_at=sent.expires_at, subject=sent.subject)


def _cap_frees_at(state: CustomerState, at: datetime, rules: FollowUpRules) -> datetime | None:
    """``None`` if the cap has room at ``at``; else when the oldest counted one leaves."""
    recent = sorted(t for t in state.followup_times if t > at - rules.cap_window)
    if len(recent) < rules.cap:
        return None
    return recent[-rules.cap] + rules.cap_window


# --- the rules of each reason ------------------------------------------------------------


def _candidates(state: CustomerState, at: datetime, facts: ValueFacts,
                rules: FollowUpRules) -> list[tuple[str, datetime, str]]:
    found: list[tuple[str, datetime, str]] = []
    live, history = facts.live, facts.history
    if len(live) == 1 and not _ticket_opened_since(state, live[0].placed_at):
        found.append(("first_order_check_in", live[0].placed_at + rules.check_in_after, "first"))
    if history is not None and history.purchase_days >= 2:
        days = sorted(history.net_by_day)
        gaps = sorted((b - a).days for a, b in pairwise(days))
        middle = len(gaps) // 2
        median = gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
        interval = max(timedelta(days=median), rules.reorder_min_interval)
        last = live[-1].placed_at
        found.append(("reorder_due", last + interval, last.isoformat()))
    if state.tickets:
        _ticket_candidates(state, rules, found)
    if facts.became_high_risk and facts.tier in TOP_TIERS:
        found.append(("win_back", at, "high"))
    if _warm(state, at, facts, rules):
        found.append(("warm_lead", at, "clicks"))
    if facts.tier == "platinum" and state.value_tier != "platinum":
        found.append(("vip_thank_you", at, "platinum"))
    if live:
        last = live[-1].placed_at
        found.append(("cross_sell", last + rules.cross_sell_after, last.isoformat()))
    if (facts.tier in TOP_TIERS and facts.churn is not None and facts.churn.level == "low"
            and _ready_to_refer(state)):
        found.append(("ask_for_referral", at, "ask"))
    return found


def _ready_to_refer(state: CustomerState) -> bool:
    """Satisfied (no open ticket, and the latest rating, if any, 4 or 5) and has brought
    nobody yet."""
    if state.referrals or any(t.is_open for t in state.tickets.values()):
        return False
    rated = [t for t in state.tickets.values() if t.rated_at is not None]
    latest = max(rated, key=lambda t: t.rated_at) if rated else None  # type: ignore[arg-type, return-value]
    return latest is None or (latest.csat is not None and latest.csat >= 4)


def _ticket_candidates(state: CustomerState, rules: FollowUpRules,
                       found: list[tuple[str, datetime, str]]) -> None:
    resolved = [(tid, t) for tid, t in state.tickets.items() if not t.is_open]
    if resolved:
        tid, ticket = max(resolved, key=lambda item: item[1].status_at)
        found.append(("ticket_follow_up", ticket.status_at + rules.ticket_follow_up_after,
                      tid))
    rated = [(tid, t) for tid, t in state.tickets.items() if t.rated_at is not None]
    if rated:
        tid, ticket = max(rated, key=lambda item: item[1].rated_at)  # type: ignore[arg-type, return-value]
        if ticket.csat is not None and ticket.csat <= 2:
            found.append(("poor_rating_recovery", ticket.rated_at, tid))  # type: ignore[arg-type]
    open_tickets = [(tid, t) for tid, t in state.tickets.items() if t.is_open]
    if open_tickets:
        tid, ticket = min(open_tickets, key=lambda item: _overdue_at(item[1], rules))
        found.append(("ticket_overdue", _overdue_at(ticket, rules), tid))


def _holds(state: CustomerState, pending: PendingFollowUp, at: datetime, facts: ValueFacts,
           rules: FollowUpRules) -> bool:
    """Does the reason's condition still hold at ``at``?"""
    reason, subject = pending.reason, pending.subject
    live = facts.live
    if reason == "first_order_check_in":
        return len(live) == 1 and not _ticket_opened_since(state, live[0].placed_at)
    if reason == "reorder_due":
        return bool(live) and live[-1].placed_at.isoformat() == subject
    if reason == "cross_sell":  # no order since, and something worth suggesting
        return (bool(live) and live[-1].placed_at.isoformat() == subject
                and bool(_cross_sell(state, rules)))
    ticket = state.tickets.get(subject)
    if reason == "ticket_follow_up":
        return ticket is not None and not ticket.is_open
    if reason == "poor_rating_recovery":
        return ticket is not None and ticket.csat is not None and ticket.csat <= 2
    if reason == "ticket_overdue":
        return ticket is not None and ticket.is_open
    if reason == "win_back":
        return state.churn_level == "high"
    if reason == "warm_lead":
        return _warm(state, at, facts, rules)
    if reason == "ask_for_referral":
        return (state.value_tier in TOP_TIERS and state.churn_level == "low"
                and _ready_to_refer(state))
    if reason == "referral_thank_you":
        referred = state.referrals.get(subject)
        return referred is not None and referred.first_order_at is not None
    if reason == "new_in_favourite":
        return pending.detail is not None and bool(matches(state, pending.detail))
    return state.value_tier == "platinum"  # vip_thank_you


def _cross_sell(state: CustomerState, rules: FollowUpRules) -> list[tuple[str, float]]:
    """The customer's recommended products that score at least the threshold."""
    return [(sku, score) for sku, score in state.recommended
            if score >= rules.cross_sell_min_score]


def _overdue_at(ticket: Ticket, rules: FollowUpRules) -> datetime:
    """When an open ticket is overdue: its deadline after opening, or the moment it was
    reopened if that is later (it was not open at its deadline then)."""
    urgent = ticket.priority in ("high", "urgent")
    deadline = ticket.opened_or_seen_at + (rules.overdue_urgent if urgent else rules.overdue_other)
    return max(deadline, ticket.status_at)


def _ticket_opened_since(state: CustomerState, moment: datetime) -> bool:
    return any(t.opened_or_seen_at > moment for t in state.tickets.values())


def _warm(state: CustomerState, at: datetime, facts: ValueFacts, rules: FollowUpRules) -> bool:
    clicks = state.emails.click_times
    if len(clicks) < rules.warm_lead_clicks:
        return False
    recent = sum(1 for t in clicks if at - rules.warm_lead_window < t <= at)
    recent_order = any(at - rules.warm_lead_quiet < o.placed_at <= at for o in facts.live)
    return recent >= rules.warm_lead_clicks and not recent_order


def _context(state: CustomerState, pending: PendingFollowUp, facts: ValueFacts,
             rules: FollowUpRules) -> dict[str, Any]:
    """The facts behind the reason, enough to act without a second lookup."""
    clv = money(facts.clv) if facts.clv is not None else None
    context: dict[str, Any] = {"value_tier": facts.tier, "predicted_clv_365d": clv}
    ticket = state.tickets.get(pending.subject)
    if ticket is not None:
        context.update(ticket_id=pending.subject, ticket_priority=ticket.priority,
                       ticket_open=ticket.is_open, csat=ticket.csat)
    if facts.live:
        context.update(orders=len(facts.live), last_order_at=facts.live[-1].placed_at)
    if pending.reason == "win_back" and facts.churn is not None:
        score = facts.churn.score
        context["churn_risk"] = {
            "level": facts.churn.level, "score": score.score, "reasons": list(score.reasons),
            "reason_details": [{"code": code, "points": points, "text": text}
                               for code, points, text in explain(score)]}
    if pending.reason == "warm_lead":
        context["recent_clicks"] = len(state.emails.click_times)
    if pending.reason == "referral_thank_you" and (
            referred := state.referrals.get(pending.subject)) is not None:
        context.update(referred_customer_id=pending.subject,
                       referred_net_revenue=money(referred.net_revenue))
    if pending.reason == "cross_sell":
        context["products"] = [{"sku": sku, "score": score}
                               for sku, score in _cross_sell(state, rules)]
    if pending.reason == "new_in_favourite" and pending.detail is not None:
        detail = pending.detail
        context["product"] = {k: v for k, v in detail.items() if not k.startswith(MATCHED)}
        context["matched"] = [{"interest": k.removeprefix(MATCHED), "why": why}
                              for k, why in detail.items() if k.startswith(MATCHED)]
    return context
