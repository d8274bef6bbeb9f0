"""Topic names and their creation (``valuestream topics``; also run by every worker)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.events import TOPICS as INPUT_SCHEMAS
from streams.settings import Settings

INPUT_TOPICS = tuple(schema.topic for schema in INPUT_SCHEMAS)
CUSTOMER_VALUE = "customer-value"
CHURN_RISK = "churn-risk"
FOLLOW_UPS = "follow-ups"
DEAD_LETTERS = "dead-letters"
MODEL_PARAMS = "model-params"
# The state changelog is compacted often, so that a worker restoring from it reads about one
# record per customer (the latest) plus what changed in the last few minutes.
STATE_CHANGELOG_CONFIG = {"cleanup.policy": "compact", "segment.ms": str(10 * 60 * 1000),
                          "min.cleanable.dirty.ratio": "0.2"}


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


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic; all but ``model-params`` have the configured partition count, because a
    worker writes each customer's outputs to the partition number of its input events."""
    n = settings.partitions
    compacted = {"cleanup.policy": "compact"}
    specs = [TopicSpec(settings.topic(t), n, copartitioned=True) for t in INPUT_TOPICS]
    specs += [
        TopicSpec(state_changelog_topic(settings), n, STATE_CHANGELOG_CONFIG, copartitioned=True),
        TopicSpec(settings.topic(CUSTOMER_VALUE), n, compacted, copartitioned=True),
        TopicSpec(settings.topic(CHURN_RISK), n, copartitioned=True),
        TopicSpec(settings.topic(FOLLOW_UPS), n, copartitioned=True),
        TopicSpec(settings.topic(DEAD_LETTERS), n, copartitioned=True),
        TopicSpec(settings.topic(MODEL_PARAMS), 1, compacted),
    ]
    return specs


def ensure_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create missing topics; return the names created. Existing co-partitioned topics must
    have the configured partition count, or a customer's events would meet on different
    workers."""
    specs = topic_specs(settings)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{settings.group_id}-admin",
            request_timeout_ms=15_000,
        )
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            with suppress(TopicAlreadyExistsError):  # another worker created it meanwhile
                admin.create_topics([NewTopic(spec.name, spec.partitions, replication_factor,
                                              topic_configs=dict(spec.config))])
        _check_partitions(admin, [s for s in specs if s.copartitioned and s.name in existing])
        return [s.name for s in missing]
    finally:
        admin.close()


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
