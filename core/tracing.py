"""OpenTelemetry tracing: REST request → Temporal workflow → activities → provider HTTP calls.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: then
spans go by OTLP over HTTP/protobuf, configured by the standard `OTEL_*` variables
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, headers, timeouts).
When off, nothing is wrapped: no middleware, no interceptor, no transport, and the SDK is not
even imported, so an untraced deployment pays nothing.

The pieces, each a no-op object when tracing is off:
- `TracingMiddleware` (ASGI): a SERVER span per HTTP request, named by its route template,
  current while the route runs, so the workflow it starts or signals is its child;
- `temporal_interceptors()`: Temporal's `TracingInterceptor` for `Client.connect`; a worker
  built on that client traces its workflows and activities (local ones too) with it;
- `traced_transport()`: a CLIENT span around every request of an httpx client (the providers'),
  with the W3C `traceparent` header sent along.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from temporalio.contrib.opentelemetry import TracingInterceptor

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACER_NAME = "autosync"


@dataclass
class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None


_state = _State()


def tracing_enabled() -> bool:
    return _state.provider is not None


def setup_tracing(
    service_name: str,
    *,
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Turn tracing on when an OTLP endpoint is configured, or `exporter` is given (tests).

    Returns whether tracing is on. Idempotent: a second call keeps the first provider unless
    it brings its own exporter. `service_name` applies unless `OTEL_SERVICE_NAME` names one.
    """
    env = os.environ if environ is None else environ
    if exporter is None and (
        _state.provider is not None or not any(env.get(v) for v in ENDPOINT_VARS)
    ):
        return _state.provider is not None
    # Imported here: an untraced process never loads the SDK or the exporter.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.provider, _state.tracer = provider, provider.get_tracer(TRACER_NAME)
    return True


def flush_tracing() -> None:
    """Export the spans still queued (the SDK also does it at exit)."""
    if _state.provider is not None:
        _state.provider.force_flush()


def shutdown_tracing() -> None:
    """Flush the spans not yet exported and turn tracing off (tests turn it off again)."""
    provider = _state.provider
    _state.provider = _state.tracer = None
    if provider is not None:
        provider.shutdown()


def tracer() -> trace.Tracer:
    """Our tracer (a no-op one when tracing is off); never the process-global provider's, so
    a library that sets its own global provider can't redirect or drop our spans."""
    return _state.tracer or trace.NoOpTracer()


def temporal_interceptors() -> list[TracingInterceptor]:
    """For `Client.connect(interceptors=...)`: its workers inherit them (never add them twice)."""
    if not tracing_enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


# --- HTTP server spans ------------------------------------------------------------------------


def route_template(scope: Scope) -> str | None:
    """The route's path template (`/v1/jobs/{job_id}`), or None when no route matches.

    Routing writes the route into the scope the middlewares share, so it is there once the
    app has answered. A request answered before routing (a 429, a 413) is matched against
    the paths of the app's OpenAPI schema (public, unlike the router's inner structure).
    Never the raw path: that would make one series per job id.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    if app is None or not hasattr(app, "openapi"):
        return None
    patterns = _schema_paths.get(app)
    if patterns is None:
        # Here, not at the top: the worker imports this module and serves no HTTP.
        from starlette.routing import compile_path

        try:
            templates = list(app.openapi().get("paths", {}))
        except Exception:  # a schema that can't be built must not fail the request
            templates = []
        patterns = _schema_paths[app] = [(compile_path(t)[0], t) for t in templates]
    return next((t for regex, t in patterns if regex.match(scope["path"])), None)


_schema_paths: WeakKeyDictionary[Any, list[tuple[re.Pattern[str], str]]] = WeakKeyDictionary()


class TracingMiddleware:
    """A SERVER span per HTTP request, continuing an incoming W3C `traceparent` if any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        status: list[int] = []

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        with tracer().start_as_current_span(
            method,
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, send_observed)
            finally:
                route = route_template(scope)
                if route is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status[0])
                    if status[0] >= 500:
                        span.set_status(Status(StatusCode.ERROR))


# --- HTTP client spans ------------------------------------------------------------------------


class TracedTransport(httpx.AsyncBaseTransport):
    """Wraps an httpx transport: a CLIENT span per request, its context sent as `traceparent`."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "server.address": url.host,
            "url.full": str(url.copy_with(query=None)),  # queries may carry tokens
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        with tracer().start_as_current_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            headers: dict[str, str] = {}
            inject(headers)
            request.headers.update(headers)
            response = await self.inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def traced_transport(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """`inner`, wrapped when tracing is on (decided when the client is built)."""
    return TracedTransport(inner) if tracing_enabled() else inner


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span current here, or None (for log lines)."""
    span_context = trace.get_current_span(otel_context.get_current()).get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
