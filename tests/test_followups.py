"""Follow-up rules as pure functions: priority, cool-down, cap, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from streams.domain.followups import (
    REASONS,
    FollowUpRules,
    ValueFacts,
    fire,
    plan,
    priority,
)
from streams.domain.profile import pending_follow_ups
from streams.domain.state import CustomerState, Ticket

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
RULES = FollowUpRules()


def facts(clv: str | int | None = "0.00", tier: str | None = "bronze") -> ValueFacts:
    return ValueFacts(live=[], history=None, clv=Decimal(str(clv)) if clv is not None else None,
                      currency="USD", tier=tier, platinum_cut=300.0, became_high_risk=False,
                      churn={})


def rated(state: CustomerState, ticket: str, at: datetime, csat: int) -> None:
    state.tickets[ticket] = Ticket(opened_at=at - timedelta(hours=1), priority="normal",
                                   is_open=False, status_at=at, csat=csat, rated_at=at)


def test_priority_halves_value_and_urgency() -> None:
    assert priority("vip_thank_you", facts(clv=600)) == round((100 + 30) / 2)
    assert priority("poor_rating_recovery", facts(clv=None)) == 45
    assert priority("first_order_check_in", facts(clv=150)) == round((50 + 40) / 2)
    assert {r: REASONS[r].urgency for r in ("win_back", "warm_lead")} == {
        "win_back": 80, "warm_lead": 50}


def test_a_poor_rating_is_due_at_once_and_then_cools_down() -> None:
    state = CustomerState("c", first_seen_at=T0)
    rated(state, "t1", T0, csat=2)
    plan(state, T0, facts(), RULES)
    emitted, dropped = fire(state, T0, T0, facts(), RULES)
    assert [f.reason for f in emitted] == ["poor_rating_recovery"] and dropped == []
    later = T0 + timedelta(days=10)
    rated(state, "t2", later, csat=1)
    plan(state, later, facts(), RULES)
    assert "poor_rating_recovery" not in state.followups  # within the 30-day cool-down
    much_later = T0 + timedelta(days=31)
    rated(state, "t3", much_later, csat=1)
    plan(state, much_later, facts(), RULES)
    assert fire(state, much_later, much_later, facts(), RULES)[0][0].subject == "t3"


def test_a_follow_up_handled_after_its_expiry_is_dropped_not_sent() -> None:
    state = CustomerState("c", first_seen_at=T0)
    rated(state, "t1", T0, csat=1)
    plan(state, T0, facts(), RULES)
    now = T0 + REASONS["poor_rating_recovery"].valid_for
    emitted, dropped = fire(state, T0, now, facts(), RULES)
    assert emitted == [] and [(d.reason, d.cause) for d in dropped] == [
        ("poor_rating_recovery", "expired")]
    plan(state, now, facts(), RULES)
    assert "poor_rating_recovery" not in state.followups  # handled once: not pending again


def capped(sent_days_ago: int) -> tuple[CustomerState, list[str], list[tuple[str, str]]]:
    """A poor rating (urgency 90) and an overdue urgent ticket (85) fall due together while
    one follow-up sent ``sent_days_ago`` days ago still counts against the cap of 2."""
    state = CustomerState("c", first_seen_at=T0)
    state.followup_times = [T0 - timedelta(days=sent_days_ago)]
    rated(state, "t1", T0, csat=1)
    state.tickets["t2"] = Ticket(opened_at=T0 - timedelta(hours=25), priority="urgent",
                                 is_open=True, status_at=T0 - timedelta(hours=25))
    plan(state, T0, facts(), RULES)
    emitted, dropped = fire(state, T0, T0, facts(), RULES)
    return state, [f.reason for f in emitted], [(d.reason, d.cause) for d in dropped]


def test_the_cap_defers_the_lower_priority_to_the_first_free_slot() -> None:
    state, emitted, dropped = capped(sent_days_ago=6)
    assert emitted == ["poor_rating_recovery"] and dropped == []
    assert state.followups["ticket_overdue"].due_at == T0 + timedelta(days=1)  # 6 + 1 = 7


def test_the_cap_drops_what_could_only_go_after_its_expiry() -> None:
    state, emitted, dropped = capped(sent_days_ago=2)  # a slot frees in 5 days: too late
    assert emitted == ["poor_rating_recovery"]
    assert dropped == [("ticket_overdue", "cap")]
    assert "ticket_overdue" not in state.followups


def test_the_profile_lists_only_follow_ups_not_expired_at_its_as_of() -> None:
    state = CustomerState("c", first_seen_at=T0)
    rated(state, "t1", T0 + timedelta(days=1), csat=1)  # a poor rating of a closed ticket
    plan(state, T0, facts(), RULES)

    def listed(day: int) -> list[str]:
        return [f.reason for f in pending_follow_ups(state, T0 + timedelta(days=day))]

    # poor_rating_recovery: due day 1, expires day 3; ticket_follow_up: due 3, expires 8.
    assert listed(2) == ["poor_rating_recovery", "ticket_follow_up"]
    assert listed(3) == ["ticket_follow_up"]
    assert listed(8) == []
