"""The overview's aggregates and top lists, kept by the local store from the records' headers
as customers are written, changed, erased and restored, equal what a full scan of the records
finds (the overview itself never scans)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.codec import call_of, encode_state, micros, read_header
from streams.domain.churn import LEVELS
from streams.domain.predict import TIERS
from streams.domain.state import CustomerState, PendingFollowUp, Standing
from streams.store import Aggregates, Change, LocalStore
from streams.ui import Overview, local_overview, render_overview

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PARTITIONS = 2


def customer(rng: random.Random, n: int) -> CustomerState:
    state = CustomerState(f"c{n}", first_seen_at=NOW - timedelta(days=rng.randint(1, 300)))
    state.churn_level = rng.choice(LEVELS)
    state.value_tier = rng.choice((None, *TIERS))
    bought = rng.random() < 0.8
    state.standing = Standing(clv_cents=rng.randint(-500, 90_000) if bought else None,
                              r=rng.randint(1, 5) if bought else 0,
                              f=rng.randint(1, 5) if bought else 0, value=rng.randint(0, 100))
    for reason in rng.sample(["ticket_overdue", "win_back", "reorder_due"], rng.randint(0, 2)):
        due = NOW + timedelta(hours=rng.randint(-20, 72))
        state.followups[reason] = PendingFollowUp(reason, due, due + timedelta(days=3), "s")
    if rng.random() < 0.3:
        sent = NOW - timedelta(days=rng.randint(0, 5))
        state.last_follow_up = PendingFollowUp("vip_thank_you", sent, sent + timedelta(days=3),
                                               "s")
    return state


def scanned(store: LocalStore, partition: int) -> tuple[Aggregates, list[tuple[int, str]],
                                                          list[tuple[int, str]]]:
    """What a scan of every record finds: the aggregates, the high-risk customers by CLV and
    the calls of today (priority, customer)."""
    aggregates = Aggregates()
    at_risk, calls = [], []
    end_of_today = micros(datetime(2026, 6, 2, tzinfo=UTC))
    for name, record in store.customers(partition):
        header = read_header(record)
        aggregates.add(header, 1)
        if header.level == "high" and header.clv_cents is not None:
            at_risk.append((header.clv_cents, name.decode()))
        call = header.call
        if call is not None and call.expires_us > micros(NOW) and (
                call.sent or call.due_us <= end_of_today):
            calls.append((call.priority, call.due_us, name.decode()))
    return (aggregates, sorted(at_risk, key=lambda c: (-c[0], c[1]))[:20],
            [(p, c) for p, _, c in sorted(calls, key=lambda c: (-c[0], c[1], c[2]))[:20]])


def check(store: LocalStore) -> None:
    for partition in range(PARTITIONS):
        aggregates, at_risk, calls = scanned(store, partition)
        kept = store.counts[partition]
        assert (kept.levels, kept.at_risk_cents) == (aggregates.levels, aggregates.at_risk_cents)
        assert {t: c for t, c in kept.tiers.items() if any(c.values())} == aggregates.tiers
        assert {k: n for k, n in kept.rfm.items() if n} == aggregates.rfm
        assert store.most_valuable_at_risk(partition, 20) == at_risk
        listed = store.calls(partition, micros(NOW), micros(datetime(2026, 6, 2, tzinfo=UTC)),
                             20, 100_000)
        assert [(p, c) for p, _, _, c, _ in listed] == calls


def test_aggregates_follow_writes_changes_erasures_and_a_restore(tmp_path: Path) -> None:
    rng = random.Random(5)
    store = LocalStore(tmp_path / "a")
    for partition in range(PARTITIONS):
        store.load_counts(partition)
    records: dict[tuple[int, bytes], bytes] = {}

    def write(changes: list[tuple[int, bytes, bytes | None]]) -> None:
        store.commit([Change(p, name, record, read_header(records[p, name])
                             if (p, name) in records else None)
                      for p, name, record in changes], {})
        for p, name, record in changes:
            if record is None:
                records.pop((p, name), None)
            else:
                records[p, name] = record

    write([(n % PARTITIONS, f"c{n}".encode(), encode_state(customer(rng, n)))
           for n in range(400)])
    check(store)
    write([(n % PARTITIONS, f"c{n}".encode(), encode_state(customer(rng, n)))
           for n in rng.sample(range(400), 150)])  # changed
    write([(n % PARTITIONS, f"c{n}".encode(), None) for n in rng.sample(range(400), 40)])
    check(store)
    assert sum(sum(store.counts[p].levels.values()) for p in range(PARTITIONS)) == 360

    restored = LocalStore(tmp_path / "b")
    for partition in range(PARTITIONS):
        restored.wipe(partition)
        restored.restore(partition, {name: record for (p, name), record in records.items()
                                     if p == partition}, len(records))
    check(restored)

    # The page merges the partitions: its totals are the sums.
    page = render_overview(Overview(PARTITIONS, local_overview(store, range(PARTITIONS), NOW),
                                    NOW))
    assert '<b id="customers">360</b>' in page and 'id="missing"' not in page


def test_the_call_is_the_one_sent_else_the_pending_one_due_first() -> None:
    rng = random.Random(1)
    state = customer(rng, 1)
    state.followups = {
        "win_back": PendingFollowUp("win_back", NOW + timedelta(days=2), NOW + timedelta(days=9),
                                    "s"),
        "ticket_overdue": PendingFollowUp("ticket_overdue", NOW + timedelta(hours=1),
                                          NOW + timedelta(days=2), "t")}
    state.last_follow_up = None
    call = call_of(state)
    assert call is not None and (call.reason, call.sent) == ("ticket_overdue", False)
    state.last_follow_up = PendingFollowUp("vip_thank_you", NOW, NOW + timedelta(days=7), "s")
    call = call_of(state)
    assert call is not None and (call.reason, call.sent) == ("vip_thank_you", True)
