"""The FastAPI app: `uvicorn api.main:create_app --factory` (OpenAPI docs at /docs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from api.auth import KeyRing, ensure_keys
from api.errors import ERRORS_DESCRIPTION, install_error_handlers
from api.event_hub import EventHub
from api.exit_signal import on_exit_signal
from api.limits import BodyLimit, RateLimit
from api.metrics import ApiMetrics
from api.request_metrics import RequestMetrics
from api.routes import (
    api_keys,
    dashboard,
    events,
    health,
    jobs,
    me,
    projects,
    pull_sync,
    recovery,
    schedules,
    sync_cursors,
    sync_runs,
    usage,
    webhooks,
)
from api.routes.metrics import router as metrics_router
from api.text_guard import UnstorableText
from core.db import libpq_dsn, make_engine, make_sessionmaker
from core.logs import configure_logging
from core.settings import Settings, get_settings
from core.tracing import (
    TracingMiddleware,
    flush_tracing,
    setup_tracing,
    temporal_interceptors,
    traced_transport,
    tracing_enabled,
)
from providers import registry
from storage.factory import build_storage


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging()  # LOG_FORMAT=json: one JSON object per line
    setup_tracing("autosync-api")  # only with an OTLP endpoint set

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.signing_secret()  # refuse to start without SECRET_KEY, with the reason
        registry.configure(settings)  # PROVIDER_MODULES, and a DEFAULT_PROVIDER among them
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        listed = await ensure_keys(sessions, settings.bootstrap_keys())
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(15.0, connect=5.0),
            transport=traced_transport(httpx.AsyncHTTPTransport()),
        ) as http:
            app.state.settings = settings
            app.state.sessions = sessions
            app.state.keyring = KeyRing(sessions, listed)
            app.state.storage = build_storage(settings)
            # lazy: the API starts (and /v1/health reports) even while Temporal is down
            app.state.temporal = await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                lazy=True,
                interceptors=temporal_interceptors(),
            )
            app.state.providers = registry.build_providers(settings, http)
            app.state.webhook_verifiers = registry.build_webhook_verifiers(settings, http)
            app.state.event_hub = hub = EventHub(
                sessions,
                listen_dsn=libpq_dsn(settings.database_url),
                poll_interval=settings.events_poll_interval_seconds,
            )
            app.state.metrics.watch(hub)
            await hub.start()
            try:
                with on_exit_signal(hub.close):  # streams end when the server is told to stop
                    yield
            finally:
                await hub.stop()
        await engine.dispose()
        flush_tracing()

    app = FastAPI(
        title="autosync",
        version="0.1.0",
        description=f"Durable AI media jobs and data sync runs on Temporal.\n\n{ERRORS_DESCRIPTION}",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.state.metrics = ApiMetrics()  # before the lifespan: it watches the event hub
    app.include_router(recovery.router)
    app.include_router(jobs.adopt_router)
    app.include_router(jobs.router)
    app.include_router(sync_runs.router)
    app.include_router(sync_cursors.router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(events.router)
    app.include_router(projects.router)
    app.include_router(me.router)
    app.include_router(usage.router)
    app.include_router(api_keys.router)
    app.include_router(dashboard.router)
    app.include_router(pull_sync.router)
    app.include_router(pull_sync.seed_router)
    # The last added runs first: a throttled key is answered before its body is read.
    app.add_middleware(UnstorableText)  # reads the body BodyLimit has capped
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        RateLimit,
        per_second=settings.api_rate_limit_per_second,
        burst=settings.api_rate_limit_burst,
    )
    # Outermost: a throttled or oversized request is counted and traced too.
    app.add_middleware(RequestMetrics, registry=app.state.metrics.registry)
    if tracing_enabled():
        app.add_middleware(TracingMiddleware)
    return app
