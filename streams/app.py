"""The Faust application of one worker: settings, clock, topics and tables.

Importing this module reads the settings from the environment (raising ConfigError on a bad
value). Agents (``agents/``) and web views (``streams/web.py``) attach to ``app``.
"""

from __future__ import annotations

from datetime import timedelta

import faust

from streams.clock import Clock
from streams.domain.churn_rules import ChurnRules
from streams.domain.rules import Rules
from streams.settings import Settings
from streams.topics import (
    CHURN_RISK,
    CUSTOMER_VALUE,
    DEAD_LETTERS,
    FOLLOW_UPS,
    INPUT_TOPICS,
    TABLES,
    ticks_topic,
)

settings = Settings.from_env()
clock = Clock(settings.clock)
rules = Rules(
    currency=settings.currency,
    fx_rates=settings.fx_rates,
    default_margin=settings.default_margin,
    ticket_cost=settings.ticket_cost,
    dedup_window=timedelta(days=settings.dedup_days),
    orphan_ttl=timedelta(days=settings.orphan_days),
    churn=ChurnRules(medium=settings.churn_medium, high=settings.churn_high,
                     hysteresis=settings.churn_hysteresis),
    follow_ups=settings.follow_ups,
)

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
    store="rocksdb://" if settings.store == "rocksdb" else "memory://",
    datadir=str(settings.data_dir),
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    canonical_url=f"http://{settings.web_host}:{settings.web_port}",
    topic_partitions=settings.partitions,
    processing_guarantee="at_least_once",
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    autodiscover=False,
    web_enabled=True,
    # A killed worker's partitions move after this long (the broker's minimum is 6 s).
    broker_session_timeout=settings.session_timeout,
    broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
)


# Keys and values stay bytes everywhere: decoding and encoding are the agent's job.
def raw_topic(*names: str) -> faust.TopicT:
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


TICKS_TOPIC = ticks_topic(settings)
INPUT_NAMES = {settings.topic(name): name for name in INPUT_TOPICS}

# One agent reads every input topic and the tick topic; all have the same partition count,
# so one partition number holds all of a customer's events, state and due work.
inputs = raw_topic(*INPUT_NAMES, TICKS_TOPIC)
ticks = raw_topic(TICKS_TOPIC)
customer_value = raw_topic(settings.topic(CUSTOMER_VALUE))
dead_letters = raw_topic(settings.topic(DEAD_LETTERS))
churn_risk = raw_topic(settings.topic(CHURN_RISK))
follow_ups = raw_topic(settings.topic(FOLLOW_UPS))


# RocksDB per table partition. Faust's defaults (a 2 GiB block cache and up to three 64 MiB
# memtables per partition) let memory grow with the number of customers until it is many
# GiB; these keep it bounded. Reads the cache misses come from the OS page cache.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 2**20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 2**20,
    "block_cache_size": 4 * 2**20,
}


def raw_table(name: str) -> faust.Table:
    assert name in TABLES  # streams.topics creates the changelogs of exactly these
    return app.Table(name, default=None, key_type=bytes, value_type=bytes,
                     partitions=settings.partitions, options=dict(ROCKSDB_OPTIONS))


# customer_id -> the customer's state (streams.domain.state.dump_state bytes).
customers = raw_table("customers")
# Counters per partition, e.g. customers by churn-risk level (streams.counts).
counts = raw_table("counts")
# Due-time index of time-driven work, per partition (streams.schedule).
schedule = raw_table("schedule")
