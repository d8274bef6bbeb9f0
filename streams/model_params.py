"""The model parameters in force on this worker, following the ``model-params`` topic.

Every worker reads the whole (single-partition, compacted) topic itself, without a consumer
group, and keeps the latest valid record: a new fit is in force everywhere within about a
second. A record that does not parse is logged and ignored; the previous parameters stay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from streams.clients import async_options
from streams.domain.models import DEFAULT_PARAMS, load_params
from streams.domain.predict import Predictor
from streams.metrics import MODEL_FITTED
from streams.settings import Settings

log = logging.getLogger(__name__)


class ModelRegistry:
    """The predictor of the parameters in force (a new record replaces it whole)."""

    def __init__(self) -> None:
        self.predictor = Predictor(DEFAULT_PARAMS)

    def offer(self, raw: bytes | None) -> bool:
        """Take a record's parameters if it holds valid ones."""
        if raw is None:
            return False
        try:
            params = load_params(raw)
        except ValidationError as exc:
            log.warning("ignoring a model-params record that does not parse: %s", exc)
            return False
        self.predictor = Predictor(params)
        MODEL_FITTED.set(params.fitted_at.timestamp() if params.fitted_at else 0)
        log.info("model parameters fitted at %s on %d customers are in force",
                 params.fitted_at, params.n_customers)
        return True


async def follow_topic(settings: Settings, topic: str,
                       offer: Callable[[bytes | None], object]) -> None:
    """Read every record of a topic, from its beginning and for ever, without a consumer
    group (every worker reads it whole), handing each value to ``offer``."""
    consumer = AIOKafkaConsumer(
        topic,
        **async_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
    )
    await consumer.start()
    try:
        async for record in consumer:
            offer(record.value)
    finally:
        await consumer.stop()
