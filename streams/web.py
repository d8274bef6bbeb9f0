"""HTTP views of a worker: profiles (routed to the key's owner), health and metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError

from schemas.events import Timestamp
from streams.app import TICKS_TOPIC, app, clock, customers, rules, settings
from streams.domain.profile import build_profile
from streams.domain.state import load_state
from streams.model_params import models

_AS_OF = TypeAdapter(Timestamp)


def json_response(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def parse_as_of(text: str | None) -> datetime:
    """The ``as_of`` query parameter: an RFC 3339 timestamp with an offset; default now."""
    if text is None:
        return clock.now()
    return _AS_OF.validate_python(text)


@app.page("/customers/{customer_id}")
@app.table_route(table=customers, match_info="customer_id")
async def customer_profile(view: View, request: Request, customer_id: str) -> Response:
    try:
        as_of = parse_as_of(request.query.get("as_of"))
    except ValidationError:
        return json_response(
            view,
            {"error": "bad_as_of", "message": "as_of must be an RFC 3339 timestamp with an offset"},
            status=400,
        )
    stored = customers.get(customer_id)
    state = load_state(stored) if stored else None
    if state is None or not state.has_profile:
        return json_response(
            view,
            {"error": "not_found", "message": f"no profile for customer {customer_id!r}"},
            status=404,
        )
    return json_response(view, build_profile(state, as_of, rules, models.current))


@app.page("/health")
async def health(view: View, request: Request) -> Response:
    recovering = app.tables.recovery.in_recovery
    body = {
        "status": "recovering" if recovering else "ok",
        "app_id": settings.app_id,
        "clock": settings.clock,
        "now": clock.now().isoformat(),
        "active_partitions": sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == TICKS_TOPIC
        ),
    }
    return json_response(view, body, status=503 if recovering else 200)


@app.page("/metrics")
async def metrics(view: View, request: Request) -> Response:
    # Prometheus' text format; aiohttp refuses a charset inside content_type.
    return view.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
