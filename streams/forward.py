"""``valuestream forward TOPIC --url URL``: each ``churn-risk`` or ``follow-ups`` event
posted to a webhook, for marketing tools that do not speak Kafka (README, *Webhooks*).

At least once, in order per customer: a partition's events are posted one after another
(partitions side by side), and the consumer group's offsets are committed only once every
event before them has been answered with a 2xx or written as a dead letter. A forwarder
killed in between posts again what it had not committed; the ``Idempotency-Key`` header (the
event's ``event_id``) lets the receiver drop the repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
import orjson
import urllib3
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import start_http_server

from streams.clients import connect, sync_options
from streams.deadletters import dead_letter
from streams.domain.state import Source
from streams.metrics import (
    FORWARD_ATTEMPTS,
    FORWARD_COMMITTED,
    FORWARD_EVENTS,
    FORWARD_SECONDS,
)
from streams.settings import ConfigError, Settings
from streams.topics import DEAD_LETTERS, ensure_topics

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Valuestream-Signature"
MAX_PAUSE = 30.0  # seconds: the longest wait between two attempts
POLL_RECORDS = 200  # events taken per round, over all partitions
# Statuses worth another attempt: the receiver is down, overloaded or timed out. Any other
# non-2xx answer (400, 401, 404, ...) will not change by asking again: a dead letter at once.
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
WEBHOOK_REJECTED = "webhook_rejected"
WEBHOOK_FAILED = "webhook_failed"


@dataclass(frozen=True)
class Webhook:
    """Where and how events are posted."""

    url: str
    secret: bytes | None
    attempts: int  # the retry budget: posts of one event before it is a dead letter
    timeout: float  # seconds for one post, connecting included
    first_pause: float  # seconds before the second attempt; doubled for each further one

    def pause(self, attempt: int, retry_after: float | None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based): the receiver's
        ``Retry-After`` when it gave one, else exponential backoff; never above MAX_PAUSE."""
        wanted = retry_after if retry_after is not None else self.first_pause * 2 ** (attempt - 1)
        return min(wanted, MAX_PAUSE)


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def read_secret(path: Path) -> bytes:
    """The signing secret: the file's content without surrounding white space."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"--secret-file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise ConfigError(f"--secret-file {path}: the file is empty")
    return secret


def check_url(url: str) -> str:
    parsed = urllib3.util.parse_url(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"--url {url!r}: expected an http:// or https:// address")
    return url


@dataclass(frozen=True)
class Answer:
    """How one event's delivery ended: ``delivered``, ``rejected`` (a non-retryable status)
    or ``failed`` (the retry budget spent); ``detail`` says what the last attempt got."""

    outcome: str
    detail: str


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def post(http: urllib3.PoolManager, webhook: Webhook, topic: str, body: bytes,
         sleep: Callable[[float], None] = time.sleep) -> Answer:
    """Post one event until a 2xx, a non-retryable status or the end of the retry budget."""
    try:
        event_id = str(orjson.loads(body)["event_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Answer("rejected", "the record is not an event with an event_id")
    headers = {"Content-Type": "application/json", "Idempotency-Key": event_id,
               "X-Valuestream-Topic": topic}
    if webhook.secret is not None:
        headers[SIGNATURE_HEADER] = signature(webhook.secret, body)
    detail = ""
    for attempt in range(1, webhook.attempts + 1):
        started = time.perf_counter()
        retry_after = None
        try:
            response = http.request("POST", webhook.url, body=body, headers=headers,
                                    timeout=webhook.timeout, retries=False, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            FORWARD_ATTEMPTS.labels(topic, "timeout" if isinstance(
                exc, urllib3.exceptions.TimeoutError) else "error").inc()
            detail = f"attempt {attempt}: {type(exc).__name__}"
        else:
            FORWARD_SECONDS.labels(topic).observe(time.perf_counter() - started)
            status = response.status
            FORWARD_ATTEMPTS.labels(topic, f"{status // 100}xx").inc()
            if 200 <= status < 300:
                return Answer("delivered", f"HTTP {status}")
            detail = f"attempt {attempt}: HTTP {status}"
            if status not in RETRYABLE:
                return Answer("rejected", detail)
            retry_after = _retry_after(response)
        if attempt < webhook.attempts:
            sleep(webhook.pause(attempt, retry_after))
    return Answer("failed", detail)


class Forwarder:
    """One consumer in the group ``group`` on ``topic``; dead letters to ``dead-letters``."""

    def __init__(self, settings: Settings, topic: str, webhook: Webhook, group: str,
                 from_beginning: bool) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.webhook = webhook
        self.dead_letters = settings.topic(DEAD_LETTERS)
        self.stopping = False
        self.http = urllib3.PoolManager(maxsize=settings.partitions)
        self.consumer = connect(settings, lambda: KafkaConsumer(
            self.topic, **sync_options(settings), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            max_poll_records=POLL_RECORDS, max_poll_interval_ms=3_600_000,
            session_timeout_ms=int(settings.session_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.session_timeout / 3) * 1000)))
        self.producer = connect(settings, lambda: KafkaProducer(
            **sync_options(settings), acks="all", max_request_size=settings.max_message_bytes))

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=self.settings.partitions,
                                thread_name_prefix="forward") as lanes:
            while not self.stopping:
                polled = self.consumer.poll(timeout_ms=1000)
                if not polled:
                    continue
                # One lane per partition: its events in order; the partitions side by side.
                done = dict(lanes.map(self._deliver_partition, polled.items()))
                self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)
                                      for tp, offset in done.items()})
                for tp, offset in done.items():
                    FORWARD_COMMITTED.labels(self.topic, str(tp.partition)).set(offset)

    def _deliver_partition(self, item: tuple[TopicPartition, Iterable[Any]]
                           ) -> tuple[TopicPartition, int]:
        tp, records = item
        offset = -1
        for record in records:
            offset = record.offset
            if record.value is None:
                continue  # a deletion, nothing to tell
            answer = post(self.http, self.webhook, self.topic, record.value or b"")
            FORWARD_EVENTS.labels(self.topic, answer.outcome).inc()
            if answer.outcome != "delivered":
                self._dead_letter(record, answer)
        return tp, offset + 1

    def _dead_letter(self, record: Any, answer: Answer) -> None:
        code = WEBHOOK_REJECTED if answer.outcome == "rejected" else WEBHOOK_FAILED
        source = Source(record.topic, record.partition, record.offset, record.key, record.value)
        letter = dead_letter(source, code, f"{self.webhook.url}: {answer.detail}",
                             datetime.now(UTC), self.settings.max_message_bytes)
        log.warning("event at %s[%d]@%d not delivered (%s): %s", record.topic,
                    record.partition, record.offset, code, answer.detail)
        self.producer.send(self.dead_letters, key=record.key,
                           value=msgspec.json.encode(letter)).get(timeout=60)

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """On SIGTERM or SIGINT: finish the round in hand, commit it, end."""
        self.stopping = True

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        self.producer.close()


def run_forward(settings: Settings, topic: str, url: str, secret_file: Path | None,
                group: str | None, from_beginning: bool, attempts: int, timeout: float,
                first_pause: float, metrics_port: int | None) -> int:
    webhook = Webhook(check_url(url), read_secret(secret_file) if secret_file else None,
                      attempts, timeout, first_pause)
    ensure_topics(settings)
    if metrics_port is not None:
        start_http_server(metrics_port)
    forwarder = Forwarder(settings, topic, webhook,
                          group or f"{settings.group_id}-forward-{topic}", from_beginning)
    signal.signal(signal.SIGTERM, forwarder.stop)
    signal.signal(signal.SIGINT, forwarder.stop)
    log.info("forwarding %s to %s", forwarder.topic, url)
    try:
        forwarder.run()
    finally:
        forwarder.close()
    return 0
