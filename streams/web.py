"""HTTP views of a worker: profiles (forwarded to the owner of the customer's partition),
health and metrics."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp
import faust
import msgspec
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError

from schemas.events import Timestamp
from schemas.outputs import Profile
from streams import ui
from streams.domain.profile import build_profile, timestamp
from streams.domain.state import CustomerState
from streams.ordering import NEVER
from streams.settings import Settings

if TYPE_CHECKING:
    from agents.customers import CustomerAgent

_AS_OF = TypeAdapter(Timestamp)
FORWARDED = "X-Valuestream-Forwarded"
TOKEN_COOKIE = "valuestream_token"
RETRY_AFTER_SECONDS = 5  # about a rebalance after a worker joins or leaves


def json_response(view: View, body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                      headers=headers)


def error(view: View, status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> Response:
    return json_response(view, {"error": code, "message": message}, status=status,
                         headers=headers)


Failure = Callable[[View, int, str, str], Response]


def json_failure(view: View, status: int, code: str, message: str) -> Response:
    """A refusal of the JSON API: 401 with a challenge, 503 with Retry-After."""
    if status == 503:
        return unavailable(view, code, message)
    challenge = {"WWW-Authenticate": 'Bearer realm="valuestream"'} if status == 401 else None
    return error(view, status, code, message, challenge)


def page_failure(view: View, status: int, code: str, message: str) -> Response:
    """A refusal on the shop's pages, as a page (401: with the login form)."""
    title = {401: "Log in", 404: "Not found", 503: "Not available just now"}.get(
        status, "Cannot show this")
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    body = ui.render_page(title, message[:1].upper() + message[1:] + ".",
                          login=status == 401)
    return view.bytes(body.encode(), content_type="text/html", status=status, headers=headers)


def html(view: View, body: str) -> Response:
    return view.bytes(body.encode(), content_type="text/html")


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
        if scheme.lower() != "bearer":  # a browser on the shop's pages: the login cookie
            token = request.cookies.get(TOKEN_COOKIE, "") if request.path.startswith(
                "/ui") else ""
        if not token or not hmac.compare_digest(token.strip().encode(),
                                                settings.api_token.encode()):
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

    def client() -> aiohttp.ClientSession:
        if "client" not in session:
            session["client"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return session["client"]

    async def forward(view: View, request: Request, owner: str) -> Response:
        headers = {FORWARDED: "1"}
        if settings.api_token is not None:
            headers["Authorization"] = f"Bearer {settings.api_token}"
        try:
            async with client().get(f"{owner}{request.path_qs}", headers=headers) as reply:
                body = await reply.read()
                return view.bytes(body, content_type=reply.content_type, status=reply.status)
        except (aiohttp.ClientError, TimeoutError) as exc:  # the owner died or is moving
            return unavailable(view, "owner_unreachable",
                               f"the owner of this customer's partition did not answer ({exc!r})")

    async def resolve(view: View, request: Request, customer_id: str, fail: Failure
                      ) -> Response | tuple[CustomerState, datetime, Profile]:
        """A customer's state, the as_of asked (default: the processor's now) and the profile
        then, when this worker owns the customer; else the answer: the owner's (forwarded),
        or ``fail``'s."""
        if (refused := refusal(request, settings)) is not None:
            return fail(view, *refused)
        text = request.query.get("as_of")
        try:
            as_of = _AS_OF.validate_python(text) if text is not None else None
        except ValidationError:
            return fail(view, 400, "bad_as_of",
                        "as_of must be an RFC 3339 timestamp with an offset, from 1970 to 2999")
        partition = agent.partition_of(customer_id)
        if partition in agent.restoring:
            return fail(view, 503, "recovering", f"partition {partition} is being restored")
        if partition not in agent.partitions:
            owner = agent.assignor.owners.get(partition)
            if owner is None or owner == agent.assignor.url or request.headers.get(FORWARDED):
                return fail(view, 503, "no_owner", f"no worker owns partition {partition} now")
            return await forward(view, request, owner)
        state = agent.lookup(customer_id)
        if state is None or not state.has_profile:
            if partition in agent.catching_up:  # its events may be in that backlog
                return fail(view, 503, "catching_up", f"partition {partition} is catching up "
                            "with the events it had when this worker took it over")
            return fail(view, 404, "not_found", f"no profile for customer {customer_id!r}")
        if as_of is not None and state.first_seen_at is not None and as_of < state.first_seen_at:
            return fail(view, 404, "before_first_event",
                        f"customer {customer_id!r} has no events before {timestamp(as_of)}")
        as_of = as_of or now_of(partition)
        return state, as_of, build_profile(state, as_of, agent.rules, agent.models.predictor)

    @app.page("/customers/{customer_id}")
    async def customer_profile(view: View, request: Request, customer_id: str) -> Response:
        found = await resolve(view, request, customer_id, json_failure)
        if not isinstance(found, tuple):  # refused, failed or forwarded
            return found
        return view.bytes(msgspec.json.encode(found[2]), content_type="application/json")

    # --- the shop's pages (README, *The shop's pages*) --------------------------------------

    @app.page("/ui/customers/{customer_id}")
    async def customer_page(view: View, request: Request, customer_id: str) -> Response:
        found = await resolve(view, request, customer_id, page_failure)
        if not isinstance(found, tuple):
            return found
        return html(view, ui.render_customer(*found, agent.rules, agent.models.predictor))

    @app.page("/ui/customers")
    async def find_customer(view: View, request: Request) -> Response:
        """The search box: to the page of the customer id typed."""
        customer_id = request.query.get("id", "").strip()
        if not customer_id:
            return page_failure(view, 400, "no_id", "Type a customer id to open their page.")
        return view.bytes(b"", status=303,
                          headers={"Location": f"/ui/customers/{quote(customer_id, safe='')}"})

    @app.page("/ui")
    async def overview(view: View, request: Request) -> Response:
        if (refused := refusal(request, settings)) is not None:
            return page_failure(view, *refused)
        now = processor_now()
        parts = ui.local_overview(agent.store, sorted(agent.partitions), now)
        others = {url for p, url in agent.assignor.owners.items()
                  if url != agent.assignor.url and str(p) not in parts}
        for url in sorted(others):
            parts.update({p: part for p, part in (await overview_of(url)).items()
                          if p not in parts})
        return html(view, ui.render_overview(ui.Overview(settings.partitions, parts, now)))

    @app.page("/ui/overview.json")
    async def overview_part(view: View, request: Request) -> Response:
        """This worker's share of the overview, for the worker that renders it."""
        if (refused := refusal(request, settings)) is not None:
            return error(view, *refused)
        return json_response(view, ui.local_overview(agent.store, sorted(agent.partitions),
                                                     processor_now()))

    async def overview_of(url: str) -> dict[str, Any]:
        """Another worker's share (empty if it does not answer: the page says what is
        missing)."""
        headers = {FORWARDED: "1"}
        if settings.api_token is not None:
            headers["Authorization"] = f"Bearer {settings.api_token}"
        try:
            async with client().get(f"{url}/ui/overview.json", headers=headers) as reply:
                if reply.status == 200:
                    return dict(await reply.json())
        except (aiohttp.ClientError, TimeoutError):
            pass
        return {}

    @app.page("/ui/login")
    class Login(View):  # type: ignore[misc]
        """The API token as a cookie, for browsers (which cannot send a bearer header)."""

        async def post(self, request: Request) -> Response:
            form = await request.post()
            token = str(form.get("token", ""))
            if settings.api_token is None or not hmac.compare_digest(
                    token.encode(), settings.api_token.encode()):
                return page_failure(self, 401, "unauthorized", "That is not the API token.")
            return self.bytes(b"", status=303, headers={
                "Location": "/ui",
                "Set-Cookie": f"{TOKEN_COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict"})

    def processor_now() -> datetime:
        """The wall clock, or on the event clock the latest of the partitions' clocks."""
        if settings.clock == "wall":
            return datetime.now(UTC)
        clocks = [t.clock for t in agent.partitions.values() if t.clock != NEVER]
        return max(clocks, default=datetime.now(UTC))

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
