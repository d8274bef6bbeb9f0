"""The Faust application of one worker, built from settings read once at start-up.

Faust runs the worker: its lifecycle and signals, the web server (profiles, health,
metrics), timers and background tasks. The customer agent (``agents/customers.py``) is a
service of the app with its own consumer group membership; Faust's own consumer and producer
are not started (nothing else of the app reads or writes Kafka through them).
"""

from __future__ import annotations

import platform

import faust
from faust.app.base import BootStrategy

from agents.customers import CustomerAgent
from streams import __version__
from streams.clients import faust_credentials
from streams.metrics import BUILD_INFO
from streams.model_params import ModelRegistry, follow_topic
from streams.settings import Settings
from streams.topics import MODEL_PARAMS, co_purchases_topic
from streams.web import register_views


class _WorkerBoot(BootStrategy):
    enable_kafka_consumer = False
    enable_kafka_producer = False


class _App(faust.App):
    BootStrategy = _WorkerBoot


def create_app(settings: Settings) -> tuple[faust.App, CustomerAgent]:
    url = f"http://{settings.web_host}:{settings.web_port}"
    app = _App(
        settings.group_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        datadir=str(settings.data_dir / "faust"),
        web_host=settings.web_host,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        canonical_url=url,
        autodiscover=False,
        web_enabled=True,
        web_router_enabled=False,  # Faust's own pages would show internals, unauthenticated
        web_tables_enabled=False,
    )
    BUILD_INFO.labels(__version__, platform.python_version()).set(1)
    models = ModelRegistry()
    agent = CustomerAgent(settings, models, url)

    @app.task
    async def start_agent() -> None:
        await app.add_runtime_dependency(agent)

    @app.task
    async def follow_models() -> None:
        await follow_topic(settings, settings.topic(MODEL_PARAMS), models.offer)

    @app.task
    async def follow_co_purchases() -> None:
        await follow_topic(settings, co_purchases_topic(settings), agent.decider.learn)

    @app.timer(5.0)
    async def refresh_gauges() -> None:
        agent.refresh_gauges()

    register_views(app, agent, settings)
    return app, agent
