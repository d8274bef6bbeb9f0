"""Topic names and their creation (``valuestream topics``; also run by every worker)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas.events import CATALOG, REFERRALS
from schemas.events import TOPICS as INPUT_SCHEMAS
from streams.clients import connect, sync_options
from streams.settings import Settings

INPUT_TOPICS = tuple(schema.topic for schema in INPUT_SCHEMAS if not schema.internal)
CUSTOMER_VALUE = "customer-value"
CHURN_RISK = "churn-risk"
FOLLOW_UPS = "follow-ups"
DEAD_LETTERS = "dead-letters"
MODEL_PARAMS = "model-params"
# The state changelog is compacted often, so that a worker restoring from it reads about one
# record per customer (the latest) plus what changed in the last few minutes.
CHANGELOG_SEGMENT = timedelta(minutes=10)


class TopicError(RuntimeError):
    """Topics cannot be created, or exist with a layout valuestream cannot work with."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    copartitioned: bool = False  # must have exactly the configured number of partitions


def state_changelog_topic(settings: Settings) -> str:
    """Internal: every customer's latest state, keyed by customer id (``streams/codec.py``)."""
    return f"{settings.group_id}-customer-state"


def referrals_topic(settings: Settings) -> str:
    """Internal: what referred customers contribute, keyed by their referrer."""
    return f"{settings.group_id}-referrals"


def group_inputs(settings: Settings) -> dict[str, str]:
    """The topics the consumer group reads, each partition by the worker that owns it
    (full name -> schema name): the customer-keyed inputs and the internal referrals.
    ``catalog`` is not among them: every partition reads all of it."""
    keyed = {settings.topic(t): t for t in INPUT_TOPICS if t != CATALOG}
    return keyed | {referrals_topic(settings): REFERRALS}


def co_purchases_topic(settings: Settings) -> str:
    """Internal: what each placed order adds to the cross-sell model (SKUs only, no
    customer data), read whole by every worker."""
    return f"{settings.group_id}-co-purchases"


# How long co-purchases count in the cross-sell model. They hold no customer's data, so the
# erasure bound does not apply to them.
CO_PURCHASE_MEMORY = timedelta(days=365)


def _ms(duration: timedelta) -> str:
    return str(max(1, int(duration.total_seconds() * 1000)))


def kept_configs(bound: timedelta) -> dict[str, str]:
    """Topics whose records expire (inputs, churn-risk, follow-ups, dead-letters): a record
    is gone at most a tenth of the bound (its segment closing) plus half of it after it was
    written."""
    return {"cleanup.policy": "delete", "retention.ms": _ms(bound / 2),
            "segment.ms": _ms(bound / 10)}


def compacted_configs(bound: timedelta, segment: timedelta | None = None) -> dict[str, str]:
    """Topics keeping the latest record per customer (customer-value, the state changelog):
    a record replaced by a newer one, a tombstone among them, is compacted away within a
    fifth of the bound; a tombstone is kept another fifth for consumers to see, and removed
    by the next compaction, a fifth later at most (README, *Erasure*)."""
    fifth = bound / 5
    return {"cleanup.policy": "compact", "segment.ms": _ms(min(segment or bound, bound / 10)),
            "max.compaction.lag.ms": _ms(fifth), "delete.retention.ms": _ms(fifth),
            "min.compaction.lag.ms": "0"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic; all but ``model-params`` have the configured partition count, because a
    worker writes each customer's outputs to the partition number of its input events."""
    n, bound = settings.partitions, settings.erasure_bound
    # A write is acknowledged once this many replicas have it (acks=all): one broker may be
    # lost without losing an acknowledged record.
    durable = ({"min.insync.replicas": str(min(2, settings.replication_factor - 1))}
               if settings.replication_factor > 1 else {})
    kept = {**kept_configs(bound), **durable}
    changelog = {**compacted_configs(bound, CHANGELOG_SEGMENT), "min.cleanable.dirty.ratio": "0.2",
                 **durable}
    specs = [TopicSpec(settings.topic(t), n, kept, copartitioned=True) for t in INPUT_TOPICS]
    specs += [
        TopicSpec(state_changelog_topic(settings), n, changelog, copartitioned=True),
        TopicSpec(referrals_topic(settings), n, kept, copartitioned=True),
        TopicSpec(co_purchases_topic(settings), n,
                  {"cleanup.policy": "delete", "retention.ms": _ms(CO_PURCHASE_MEMORY),
                   **durable}, copartitioned=True),
        TopicSpec(settings.topic(CUSTOMER_VALUE), n, {**compacted_configs(bound), **durable},
                  copartitioned=True),
        TopicSpec(settings.topic(CHURN_RISK), n, kept, copartitioned=True),
        TopicSpec(settings.topic(FOLLOW_UPS), n, kept, copartitioned=True),
        TopicSpec(settings.topic(DEAD_LETTERS), n, kept, copartitioned=True),
        # No customer's data: the fitted model parameters.
        TopicSpec(settings.topic(MODEL_PARAMS), 1, {"cleanup.policy": "compact", **durable}),
    ]
    return specs


@dataclass
class TopicsReport:
    created: list[str] = field(default_factory=list)
    updated: dict[str, dict[str, str]] = field(default_factory=dict)  # topic -> settings set


def ensure_topics(settings: Settings) -> TopicsReport:
    """Create missing topics and bring the settings valuestream manages (retention and
    compaction, from the erasure bound) up to date on existing ones; report what changed.
    Existing co-partitioned topics must have the configured partition count, or a
    customer's events would meet on different workers."""
    specs = topic_specs(settings)
    admin = connect(settings, lambda: KafkaAdminClient(
        **sync_options(settings), client_id=f"{settings.group_id}-admin",
        request_timeout_ms=15_000))
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            with suppress(TopicAlreadyExistsError):  # another worker created it meanwhile
                admin.create_topics([NewTopic(spec.name, spec.partitions,
                                              settings.replication_factor,
                                              topic_configs=dict(spec.config))])
        present = [s for s in specs if s.name in existing]
        _check_partitions(admin, [s for s in present if s.copartitioned])
        _wait_for_leaders(admin, missing)
        return TopicsReport([s.name for s in missing], _update_configs(admin, present))
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, specs: list[TopicSpec],
                      timeout: float = 30.0) -> None:
    """Until every partition of the new topics has a leader: a consumer group formed before
    that would see some of its topics without partitions and assign nothing."""
    deadline = time.monotonic() + timeout
    while specs and time.monotonic() < deadline:
        described = admin.describe_topics([s.name for s in specs])
        led = {t.get("name", t.get("topic")): sum(p.get("leader_id", p.get("leader", -1)) >= 0
                                                   for p in t["partitions"])
               for t in described if not t.get("error_code")}
        if all(led.get(s.name) == s.partitions for s in specs):
            return
        time.sleep(0.2)


def _check_partitions(admin: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    described = {
        # kafka-python 3 calls the field "name", 2.x called it "topic".
        t.get("name", t.get("topic")): len(t["partitions"])
        for t in admin.describe_topics([s.name for s in specs])
    }
    for spec in specs:
        actual = described.get(spec.name)
        if actual is not None and actual != spec.partitions:
            raise TopicError(
                f"topic {spec.name} has {actual} partitions but VALUESTREAM_PARTITIONS is "
                f"{spec.partitions}; valuestream's topics must all have that count"
            )


def _update_configs(admin: KafkaAdminClient, specs: list[TopicSpec]) -> dict[str, dict[str, str]]:
    """Set the managed settings that differ on existing topics (other settings stay)."""
    if not specs:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name, list(s.config)) for s in specs]
    described = admin.describe_configs(resources, config_filter="all")
    updates: dict[str, dict[str, str]] = {}
    for spec in specs:
        current = {name: entry["value"] for name, entry in
                   described.get("topic", {}).get(spec.name, {}).items()}
        changed = {k: v for k, v in spec.config.items() if current.get(k) != v}
        if changed:
            updates[spec.name] = changed
    if updates:
        results = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, dict(changed))
             for name, changed in updates.items()])
        failed = {name: result for name, result in results.get("topic", {}).items()
                  if result != "OK"}
        if failed:
            raise TopicError("cannot update topic settings: " + "; ".join(
                f"{name}: {result}" for name, result in failed.items()))
    return updates
