"""``valuestream watch TOPIC``: print an output topic's records as they arrive."""

from __future__ import annotations

import os
import sys

from kafka import KafkaConsumer

from streams.clients import connect, sync_options
from streams.settings import Settings


def watch(settings: Settings, topic: str, from_beginning: bool) -> int:
    consumer = connect(settings, lambda: KafkaConsumer(
        settings.topic(topic),
        **sync_options(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
    ))
    try:
        for record in consumer:
            key = record.key.decode(errors="replace") if record.key else None
            value = record.value.decode(errors="replace") if record.value is not None else "null"
            print(f"{key}\t{value}", flush=True)
    except BrokenPipeError:  # the reader went away (``| head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        consumer.close()
    return 0
