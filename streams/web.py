"""HTTP views of a worker: profiles (forwarded to the owner of the customer's partition),
health and metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
import msgspec
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError

from schemas.events import Timestamp
from streams.domain.profile import build_profile, timestamp
from streams.ordering import NEVER
from streams.settings import Settings

if TYPE_CHECKING:
    from agents.customers import CustomerAgent

_AS_OF = TypeAdapter(Timestamp)
FORWARDED = "X-Valuestream-Forwarded"


def json_response(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def error(view: View, status: int, code: str, message: str) -> Response:
    return json_response(view, {"error": code, "message": message}, status=status)


def register_views(app: faust.App, agent: CustomerAgent, settings: Settings) -> None:
    session: dict[str, aiohttp.ClientSession] = {}

    def now_of(partition: int) -> datetime:
        """The processor's now for a partition: the wall clock, or its event clock."""
        if settings.clock == "wall":
            return datetime.now(UTC)
        time_ = agent.partitions.get(partition)
        return time_.clock if time_ is not None and time_.clock != NEVER else datetime.now(UTC)

    async def forward(view: View, request: Request, owner: str) -> Response:
        client = session.get("client")
        if client is None:
            client = session["client"] = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10))
        async with client.get(f"{owner}{request.path_qs}", headers={FORWARDED: "1"}) as reply:
            body = await reply.read()
            return view.bytes(body, content_type=reply.content_type, status=reply.status)

    @app.page("/customers/{customer_id}")
    async def customer_profile(view: View, request: Request, customer_id: str) -> Response:
        text = request.query.get("as_of")
        try:
            as_of = _AS_OF.validate_python(text) if text is not None else None
        except ValidationError:
            return error(view, 400, "bad_as_of",
                         "as_of must be an RFC 3339 timestamp with an offset, from 1970 to 2999")
        partition = agent.partition_of(customer_id)
        if partition in agent.restoring:
            return error(view, 503, "recovering", f"partition {partition} is being restored")
        if partition not in agent.partitions:
            owner = agent.assignor.owners.get(partition)
            if owner is None or owner == agent.assignor.url or request.headers.get(FORWARDED):
                return error(view, 503, "no_owner", f"no worker owns partition {partition} now")
            return await forward(view, request, owner)
        state = agent.lookup(customer_id)
        if state is None or not state.has_profile:
            return error(view, 404, "not_found", f"no profile for customer {customer_id!r}")
        profile = build_profile(state, as_of or now_of(partition), agent.rules,
                                agent.models.predictor)
        return view.bytes(msgspec.json.encode(profile), content_type="application/json")

    @app.page("/health")
    async def health(view: View, request: Request) -> Response:
        recovering = not agent.ready
        clocks = {p: t.clock for p, t in sorted(agent.partitions.items()) if t.clock != NEVER}
        now = datetime.now(UTC) if settings.clock == "wall" else max(clocks.values(),
                                                                     default=None)
        body = {
            "status": "recovering" if recovering else "ok",
            # nothing buffered, time-driven work up to the clocks done
            "settled": agent.settled(),
            "app_id": settings.app_id,
            "clock": settings.clock,
            "now": timestamp(now) if now is not None else None,
            "active_partitions": sorted(agent.partitions),
            "restoring_partitions": sorted(agent.restoring),
            "partition_clocks": {str(p): timestamp(c) for p, c in clocks.items()},
        }
        return json_response(view, body, status=503 if recovering else 200)

    @app.page("/metrics")
    async def metrics(view: View, request: Request) -> Response:
        # Prometheus' text format; aiohttp refuses a charset inside content_type.
        return view.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
