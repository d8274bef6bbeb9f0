"""Prometheus metrics of one worker (names are part of the contract: README, *HTTP and
metrics*)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only add noise to dashboards

EVENTS = Counter(
    "valuestream_events",
    "Input messages by topic, event type and what happened to them when they were processed",
    ["topic", "type", "outcome"],
)
LATE_EVENTS = Counter(
    "valuestream_late_events",
    "Events processed after their partition's clock had passed their time",
    ["topic"],
)
BATCH_SECONDS = Histogram(
    "valuestream_batch_seconds",
    "Time to process one batch: decode, decide, write outputs and state, commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_EVENTS = Histogram(
    "valuestream_batch_events",
    "Input messages per batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
PROCESSING_ERRORS = Counter(
    "valuestream_processing_errors",
    "Messages or due work whose processing raised (a bug): messages go to dead-letters",
    ["topic"],
)
EMITTED = Counter(
    "valuestream_emitted", "Records written to output topics", ["topic", "kind"]
)
DEAD_LETTERS_WRITTEN = Counter(
    "valuestream_dead_letters", "Dead letters written, by source topic and code", ["topic", "code"]
)
RECORDS_SKIPPED = Counter(
    "valuestream_records_skipped",
    "Output records larger than a Kafka record may be, logged and not sent (a bug: every "
    "record valuestream writes is bounded)",
    ["topic"],
)
FOLLOW_UPS_DROPPED = Counter(
    "valuestream_follow_ups_dropped",
    "Follow-ups not emitted when due, by reason and cause (condition, cool_down, cap, expired)",
    ["reason", "cause"],
)
PARKED_RESOLVED = Counter(
    "valuestream_parked_resolved",
    "Parked order events that were later applied or expired",
    ["result"],
)
DUE_WORK = Counter(
    "valuestream_due_work",
    "Customers whose time-driven work was done without an event of their own, per partition",
    ["partition"],
)
PARTITION_CLOCK = Gauge(
    "valuestream_partition_clock_seconds",
    "How far each owned partition's time-driven work has run (seconds since 1970)",
    ["partition"],
)
REFERRALS_REFUSED = Counter(
    "valuestream_referrals_refused",
    "referred_by of an order.placed not taken (the order is applied), by code",
    ["code"],
)
CO_PURCHASES_LEARNED = Counter(
    "valuestream_co_purchases_learned",
    "Co-purchase records taken into this worker's cross-sell model",
)
RESTORED = Counter(
    "valuestream_restored_records",
    "State changelog records applied while restoring partitions",
)
RESTORE_SECONDS = Histogram(
    "valuestream_restore_seconds",
    "Time to restore the state of newly assigned partitions from the changelog",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CUSTOMERS = Gauge(
    "valuestream_customers", "Customers owned by this worker, by churn-risk level", ["churn_risk"]
)
CONSUMER_LAG = Gauge(
    "valuestream_consumer_lag", "Messages not yet processed, per input partition",
    ["topic", "partition"],
)
MODEL_FITTED = Gauge(
    "valuestream_model_fitted_timestamp_seconds",
    "When the model parameters in use were fitted (0: documented defaults)",
)
FOLLOW_UPS_EMITTED = Counter(
    "valuestream_follow_ups_emitted", "follow_up.due events written, by reason", ["reason"]
)
CHURN_CHANGES = Counter(
    "valuestream_churn_changes", "churn_risk.changed events written, by level before and after",
    ["previous_level", "level"],
)
BUILD_INFO = Gauge(
    "valuestream_build_info", "Always 1: the version of valuestream and Python a worker runs",
    ["version", "python"],
)

# ``valuestream forward`` (README, *Webhooks*): served on its own --metrics-port.
FORWARD_EVENTS = Counter(
    "valuestream_forward_events",
    "Events taken by the forwarder, by topic and outcome (delivered: a 2xx; rejected: a "
    "status not worth retrying; failed: the retry budget spent; both of these dead letters)",
    ["topic", "outcome"],
)
FORWARD_ATTEMPTS = Counter(
    "valuestream_forward_attempts",
    "Posts to the webhook, by topic and result (2xx, 4xx, 5xx, timeout, error)",
    ["topic", "result"],
)
FORWARD_SECONDS = Histogram(
    "valuestream_forward_post_seconds",
    "Time from a post to the webhook's answer",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FORWARD_COMMITTED = Gauge(
    "valuestream_forward_committed_offset",
    "The offset committed after the latest delivered round, per partition",
    ["topic", "partition"],
)
