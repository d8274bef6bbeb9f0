"""Prometheus metrics of one worker (names are part of the contract, SPEC section 10)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only add noise to dashboards

EVENTS = Counter(
    "valuestream_events",
    "Input messages by topic, event type and what happened to them when they arrived",
    ["topic", "type", "outcome"],
)
PROCESSING_SECONDS = Histogram(
    "valuestream_event_processing_seconds",
    "Time to process one input message",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
PROCESSING_ERRORS = Counter(
    "valuestream_processing_errors",
    "Messages or ticks whose processing raised (a bug): messages go to dead-letters",
    ["topic"],
)
EMITTED = Counter(
    "valuestream_emitted", "Messages written to output topics", ["topic", "kind"]
)
DEAD_LETTERS = Counter(
    "valuestream_dead_letters", "Dead letters written, by source topic and code", ["topic", "code"]
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
TICKS_PROCESSED = Counter(
    "valuestream_ticks", "Clock ticks processed (time-driven work checked), per partition",
    ["partition"],
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
