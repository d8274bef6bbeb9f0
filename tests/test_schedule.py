"""The due-time index: only what is due comes out, in order, and the cursor never skips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.schedule import DueIndex

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_pops_only_what_is_due_in_due_order() -> None:
    index = DueIndex({})
    index.add(0, "late", at(3600), now=at(0))
    index.add(0, "soon", at(30), now=at(0))
    index.add(0, "sooner", at(10), now=at(0))
    assert index.pop_due(0, at(5)) == []
    assert index.pop_due(0, at(45)) == ["sooner", "soon"]
    assert index.pop_due(0, at(45)) == []
    assert index.pop_due(0, at(7200)) == ["late"]


def test_partitions_are_separate_and_customers_come_once() -> None:
    index = DueIndex({})
    index.add(0, "a", at(10), now=at(0))
    index.add(0, "a", at(20), now=at(0))
    index.add(1, "b", at(10), now=at(0))
    assert index.pop_due(0, at(100)) == ["a"]
    assert index.pop_due(1, at(100)) == ["b"]


def test_work_already_due_lands_where_the_next_tick_looks() -> None:
    index = DueIndex({})
    index.add(0, "x", at(600), now=at(0))
    assert index.pop_due(0, at(600)) == ["x"]
    index.add(0, "overdue", at(10), now=at(900))  # due in the past
    assert index.pop_due(0, at(901)) == ["overdue"]


def test_an_entry_added_behind_the_cursor_is_not_lost() -> None:
    """After a rebalance the new owner's clock may lag the old owner's cursor."""
    table: dict[str, bytes | None] = {}
    DueIndex(table).pop_due(0, at(0))
    DueIndex(table).add(0, "seed", at(0), now=at(0))
    DueIndex(table).pop_due(0, at(3600))  # the old owner drained to minute 60
    DueIndex(table).add(0, "c", at(120), now=at(60))  # a lagging clock
    assert DueIndex(table).pop_due(0, at(3601)) == ["c"]


def test_empty_buckets_and_past_days_are_removed() -> None:
    table: dict[str, bytes | None] = {}
    index = DueIndex(table)
    for n in range(50):
        index.add(0, f"c{n}", at(n * 3600), now=at(0))
    index.pop_due(0, at(50 * 3600))
    assert set(table) == {"0:cursor", "0:days"}
    today = int(at(50 * 3600).timestamp()) // 86400
    assert table["0:days"] == f"[{today}]".encode()  # only today is left


class CountingTable(dict[str, bytes | None]):
    reads = 0

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        CountingTable.reads += 1
        return super().get(key, default)


def test_an_idle_tick_before_the_clock_is_set_leaves_no_cursor() -> None:
    """The event clock reads 1970 until the first event: no cursor may be set from it."""
    table = CountingTable()
    index = DueIndex(table)
    assert index.pop_due(0, datetime(1970, 1, 1, tzinfo=UTC)) == []
    assert table == {}


def test_work_after_a_long_jump_reads_only_days_with_entries() -> None:
    table = CountingTable()
    index = DueIndex(table)
    index.add(0, "early", at(60), now=at(0))
    index.add(0, "late", at(3 * 365 * 86400), now=at(0))  # three years on
    CountingTable.reads = 0
    assert index.pop_due(0, at(3 * 365 * 86400 + 60)) == ["early", "late"]
    assert CountingTable.reads < 2 * 1440 + 10  # two days of minutes, not three years
