"""Churn-risk events on a real worker, on the event clock: a customer who stops buying moves
to medium and then high at the moments the model says, one event each, with no new events of
their own; a customer hovering at a threshold does not flap; a restart neither repeats nor
misses anything; and new model parameters change served scores within 10 seconds."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from harness.kafka import Record, event, neighbours, produce, read_topic
from harness.waiting import wait_for
from streams.domain.btyd import NbdParams
from streams.domain.models import DEFAULT_PARAMS, dump_params

pytestmark = pytest.mark.kafka
DAY0 = datetime(2026, 1, 5, tzinfo=UTC)
MEDIUM, HIGH = 40, 70  # the default thresholds


def at(days: int, hours: int = 0) -> str:
    return (DAY0 + timedelta(days=days, hours=hours)).isoformat().replace("+00:00", "Z")


def silence_points(params: NbdParams, x: int, t_x: int, age: int) -> int:
    """floor(100 (1 - P(alive))), MBG/NBD closed form (Batislam et al. 2007)."""
    p = params
    alive = 1 / (1 + p.a / (p.b + x) * ((p.alpha + age) / (p.alpha + t_x)) ** (p.r + x))
    return math.floor(100 * (1 - alive) + 1e-9)


def first_age(x: int, t_x: int, threshold: int) -> int:
    return next(age for age in range(t_x, 10_000)
                if silence_points(DEFAULT_PARAMS.mbgnbd, x, t_x, age) >= threshold)


def order(customer: str, n: int, day: int) -> Record:
    return event("order.placed", f"{customer}-o{n}", customer, at(day, 9), order_id=f"o{n}",
                 currency="USD", lines=[{"sku": "tea", "quantity": 1, "unit_price": "12.00"}])


CLOCKWORK = sorted({*neighbours("quinn", 4, "clock"), *neighbours("hank", 4, "clock")})


def clock_days(first: int, last: int) -> list[Record]:
    """Other customers' daily events on quinn's and hank's partitions: the only thing that
    moves their partitions' event clocks."""
    return [event("email.sent", f"tick-{c}-{d}", c, at(d, 12), message_id=f"m{d}")
            for d in range(first, last + 1) for c in CLOCKWORK]


def churn_events(bootstrap: str, prefix: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in read_topic(bootstrap, f"{prefix}churn-risk")]


def test_churn_replay_on_the_event_clock(make_worker: Any, kafka_bootstrap: str,
                                         namespace: str) -> None:
    prefix = f"{namespace}-"
    worker = make_worker("w1", VALUESTREAM_CLOCK="event")
    # quinn buys on days 0, 10, 20 and then never again (x=2, t_x=20);
    # hank buys on days 0 and 10 and, on a day his score sits just above 30, opens and
    # resolves a ticket twice (+10 points while open).
    quinn_medium, quinn_high = first_age(2, 20, MEDIUM), first_age(2, 20, HIGH)
    hover = first_age(1, 10, MEDIUM - 9)
    assert 30 < silence_points(DEFAULT_PARAMS.mbgnbd, 1, 10, hover) < MEDIUM
    assert hover < quinn_medium < 100 < quinn_high < 170
    orders = [order("quinn", n, d) for n, d in enumerate((0, 10, 20))]
    orders += [order("hank", n, d) for n, d in enumerate((0, 10))]
    tickets = [event(f"ticket.{kind}", f"hank-t{hour}", "hank", at(hover, hour), ticket_id="t1")
               for hour, kind in enumerate(("opened", "resolved", "reopened", "resolved"), 1)]
    # Sent at once, in event-time order across the topics; the worker reads them in order.
    produce(kafka_bootstrap, prefix, orders + tickets + clock_days(hover + 1, 100))
    worker.wait(lambda: any(e["customer_id"] == "quinn" for e in
                            churn_events(kafka_bootstrap, prefix)), 60, "quinn's first change")
    worker.stop()  # a restart between the two changes
    worker.start()
    produce(kafka_bootstrap, prefix, clock_days(101, 170))
    worker.wait(lambda: sum(e["customer_id"] == "quinn" for e in
                            churn_events(kafka_bootstrap, prefix)) >= 2, 60,
                "quinn's second change")
    worker.wait(lambda: (worker.health()["now"] or "").startswith("2026-06-24"), 30,
                "the last clock event")

    events = churn_events(kafka_bootstrap, prefix)
    assert [(e["customer_id"], e["previous_level"], e["level"], e["occurred_at"])
            for e in events if e["customer_id"] == "quinn"] == [
        ("quinn", "low", "medium", at(quinn_medium)),
        ("quinn", "medium", "high", at(quinn_high)),
    ]
    assert [(e["previous_level"], e["level"], e["occurred_at"])
            for e in events if e["customer_id"] == "hank"] == [("low", "medium", at(hover, 1))]
    assert {e["customer_id"] for e in events} == {"quinn", "hank"}  # the clockwork stays low
    assert len({e["event_id"] for e in events}) == len(events)

    high = events[[e["customer_id"] for e in events].index("quinn") + 1]
    assert high["type"] == "churn_risk.changed" and high["score"] >= HIGH
    assert high["reasons"][0] == "purchase_silence"
    p = DEFAULT_PARAMS.mbgnbd
    alive = 1 / (1 + p.a / (p.b + 2) * ((p.alpha + quinn_high) / (p.alpha + 20)) ** (p.r + 2))
    assert high["p_alive"] == round(alive, 4)
    assert {"predicted_clv_365d", "value_tier"} <= set(high)


def test_new_model_parameters_change_served_scores_within_10_seconds(
        make_worker: Any, kafka_bootstrap: str, namespace: str) -> None:
    prefix = f"{namespace}-"
    worker = make_worker("w1")
    produce(kafka_bootstrap, prefix, [order("una", 0, 0), order("una", 1, 30)])
    as_of = at(90)
    worker.wait(lambda: worker.profile("una", as_of)[0] == 200, 30, "una's profile")
    before = worker.profile("una", as_of)[1]["p_alive"]

    fitted = NbdParams(r=2.0, alpha=20.0, a=3.0, b=1.5)
    params = DEFAULT_PARAMS.__class__(
        bgnbd=fitted, mbgnbd=fitted, gamma_gamma=DEFAULT_PARAMS.gamma_gamma,
        rfm=DEFAULT_PARAMS.rfm, tiers=DEFAULT_PARAMS.tiers,
        fitted_at=datetime(2026, 4, 1, tzinfo=UTC), n_customers=1234)
    expected = round(1 / (1 + 3.0 / 2.5 * ((20 + 90) / (20 + 30)) ** 3.0), 4)
    assert expected != before
    produce(kafka_bootstrap, prefix, [("model-params", b"params", dump_params(params))])
    wait_for(lambda: worker.profile("una", as_of)[1]["p_alive"] == expected, 10,
             "the served P(alive) to follow the new parameters")
    assert worker.metric("valuestream_model_fitted_timestamp_seconds") == datetime(
        2026, 4, 1, tzinfo=UTC).timestamp()
