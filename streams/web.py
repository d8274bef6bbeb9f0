"""HTTP views of a worker: profiles (forwarded to the owner of the customer's partition),
health and metrics."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
RETRY_AFTER_SECONDS = 5  # about a rebalance after a worker joins or leaves


def json_response(view: View, body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                      headers=headers)


def error(view: View, status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> Response:
    return json_response(view, {"error": code, "message": message}, status=status,
                         headers=headers)


def unavailable(view: View, code: str, message: str) -> Response:
    """503 for a customer whose partition is moving: ask again in a few seconds."""
    return error(view, 503, code, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def refusal(request: Request, settings: Settings) -> tuple[int, str, str] | None:
    """Why a request for customer data is refused (``None``: it is not): a Host header
    that is not one of the configured names (a DNS-rebinding page), or no valid token."""
    if settings.allowed_hosts is not None:
        host = urlsplit(f"//{request.headers.get('Host', '')}").hostname or ""
        if host not in settings.allowed_hosts:
            return 421, "unknown_host", f"this worker does not answer for host {host!r}"
    if settings.api_token is not None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), settings.api_token.encode()):
            return 401, "unauthorized", "a valid bearer token is required"
    return None


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
        headers = {FORWARDED: "1"}
        if settings.api_token is not None:
            headers["Authorization"] = f"Bearer {settings.api_token}"
        try:
            async with client.get(f"{owner}{request.path_qs}", headers=headers) as reply:
                body = await reply.read()
                return view.bytes(body, content_type=reply.content_type, status=reply.status)
        except (aiohttp.ClientError, TimeoutError) as exc:  # the owner died or is moving
            return unavailable(view, "owner_unreachable",
                               f"the owner of this customer's partition did not answer ({exc!r})")

    @app.page("/customers/{customer_id}")
    async def customer_profile(view: View, request: Request, customer_id: str) -> Response:
        if (refused := refusal(request, settings)) is not None:
            status, code, message = refused
            challenge = {"WWW-Authenticate": 'Bearer realm="valuestream"'}
            return error(view, status, code, message, challenge if status == 401 else None)
        text = request.query.get("as_of")
        try:
            as_of = _AS_OF.validate_python(text) if text is not None else None
        except ValidationError:
            return error(view, 400, "bad_as_of",
                         "as_of must be an RFC 3339 timestamp with an offset, from 1970 to 2999")
        partition = agent.partition_of(customer_id)
        if partition in agent.restoring:
            return unavailable(view, "recovering", f"partition {partition} is being restored")
        if partition not in agent.partitions:
            owner = agent.assignor.owners.get(partition)
            if owner is None or owner == agent.assignor.url or request.headers.get(FORWARDED):
                return unavailable(view, "no_owner", f"no worker owns partition {partition} now")
            return await forward(view, request, owner)
        state = agent.lookup(customer_id)
        if state is None or not state.has_profile:
            if partition in agent.catching_up:  # its events may be in that backlog
                return unavailable(view, "catching_up", f"partition {partition} is catching up "
                                   "with the events it had when this worker took it over")
            return error(view, 404, "not_found", f"no profile for customer {customer_id!r}")
        if as_of is not None and state.first_seen_at is not None and as_of < state.first_seen_at:
            return error(view, 404, "before_first_event",
                         f"customer {customer_id!r} has no events before {timestamp(as_of)}")
        profile = build_profile(state, as_of or now_of(partition), agent.rules,
                                agent.models.predictor)
        return view.bytes(msgspec.json.encode(profile), content_type="application/json")

    @app.page("/health")
    async def health(view: View, request: Request) -> Response:
        """Everything about the worker's state; 503 while anything keeps it from working."""
        problems = agent.problems()
        clocks = {p: t.clock for p, t in sorted(agent.partitions.items()) if t.clock != NEVER}
        now = datetime.now(UTC) if settings.clock == "wall" else max(clocks.values(),
                                                                     default=None)
        silent = agent.broker_silent_for()
        body = {
            "status": "ok" if not problems else "recovering" if not agent.ready else "degraded",
            "problems": problems,
            # nothing buffered, time-driven work up to the clocks done
            "settled": agent.settled(),
            "app_id": settings.app_id,
            "clock": settings.clock,
            "now": timestamp(now) if now is not None else None,
            "active_partitions": sorted(agent.partitions),
            "restoring_partitions": sorted(agent.restoring),
            "catching_up_partitions": sorted(agent.catching_up),
            "broker_silent_seconds": round(silent, 1) if silent is not None else None,
            "partition_clocks": {str(p): timestamp(c) for p, c in clocks.items()},
        }
        return json_response(view, body, status=503 if problems else 200)

    @app.page("/ready")
    async def ready(view: View, request: Request) -> Response:
        """For load balancers and Kubernetes: 200 when the worker can serve and process."""
        problems = agent.problems()
        return json_response(view, {"ready": not problems, "problems": problems},
                             status=503 if problems else 200)

    @app.page("/metrics")
    async def metrics(view: View, request: Request) -> Response:
        # Prometheus' text format; aiohttp refuses a charset inside content_type.
        return view.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
