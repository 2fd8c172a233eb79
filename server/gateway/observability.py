"""What an operator watches: Prometheus metrics and OpenTelemetry traces.

Metrics live in a registry per gateway (several gateways can share a process in tests) and are served on their
own port (`--metrics-listen`, off by default). Labels are method names, status codes, error reasons, AWS
operations and error codes: never a token, code, session, address or email.

Tracing is off unless `--otlp-endpoint` is set; then every call on either face is a server span (with the
request id as an attribute), and every AWS call inside it a client span.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import Token
from typing import TYPE_CHECKING, Any

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from aiobotocore.client import AioBaseClient

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTP_SEND_OPERATIONS = frozenset({"AdminInitiateAuth", "InitiateAuth", "RespondToAuthChallenge"})


def split_method(method: str) -> tuple[str, str]:
    """ "/booking.v1.ChatService/Chat" -> ("booking.v1.ChatService", "Chat")."""
    service, _, name = method.strip("/").partition("/")
    return service, name


class _CountersCollector(Collector):
    """Exposes counters kept elsewhere (the bearer verifier's cache) at scrape time."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for name, documentation, value in self._read():
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], value)
            yield family


class _CallStats(Collector):
    """Calls by method, status and face, their durations and the calls in flight: kept as plain numbers.

    They change on every call of either face, always on the event loop's thread, so they need none of
    prometheus_client's per-value locks; they become metric families when scraped (on the same thread).
    """

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.finished: dict[tuple[str, str, str], int] = {}
        # (method, face) -> [count per bucket (the last is +Inf), sum of durations]
        self.durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def started(self, method: str) -> None:
        self.in_flight[method] = self.in_flight.get(method, 0) + 1

    def ended(self, method: str, code: str, face: str, seconds: float) -> None:
        self.in_flight[method] -= 1
        key = (method, code, face)
        self.finished[key] = self.finished.get(key, 0) + 1
        histogram = self.durations.get((method, face))
        if histogram is None:
            histogram = self.durations[(method, face)] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        histogram[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "gateway_calls",
            "Finished calls by method, status code and face",
            labels=["service", "method", "code", "face"],
        )
        for (method, code, face), count in sorted(self.finished.items()):
            calls.add_metric([*split_method(method), code, face], count)
        yield calls
        seconds = HistogramMetricFamily(
            "gateway_call_duration_seconds",
            "Call duration (streams: until the last event)",
            labels=["service", "method", "face"],
        )
        bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
        for (method, face), (counts, total) in sorted(self.durations.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            seconds.add_metric([*split_method(method), face], buckets, total[0])
        yield seconds
        in_flight = GaugeMetricFamily(
            "gateway_calls_in_flight",
            "Calls in progress (for ChatService/Chat: open chat streams)",
            labels=["service", "method"],
        )
        for method, count in sorted(self.in_flight.items()):
            in_flight.add_metric(list(split_method(method)), count)
        yield in_flight


class Metrics:
    """The gateway's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.call_stats = _CallStats()
        r.register(self.call_stats)
        self.errors = Counter(
            "gateway_call_errors",
            "Failed calls by ErrorInfo reason (RATE_LIMITED, OTP_*, TOKEN_*, ...)",
            ["method", "reason"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_duration_seconds",
            "AWS call duration",
            ["service", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Failed AWS calls by error code (or exception type when unreachable)",
            ["service", "operation", "error"],
            registry=r,
        )
        self.otp_sends = Counter("gateway_otp_sends", "One-time codes Cognito was asked to email", registry=r)
        self.otp_failures = Counter("gateway_otp_failures", "Wrong one-time codes (Cognito CodeMismatch)", registry=r)
        self.otp_lockouts = Counter(
            "gateway_otp_lockouts", "Logins refused for too many wrong codes (OTP_ATTEMPTS_EXHAUSTED)", registry=r
        )
        self.rate_limited = Counter(
            "gateway_rate_limit_rejections", "Calls refused by a rate limit (RATE_LIMITED)", ["method"], registry=r
        )

    def expose(self, read: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        """Publish counters read at scrape time (name, help, value)."""
        self.registry.register(_CountersCollector(read))

    def call_started(self, method: str) -> None:
        self.call_stats.started(method)

    def call_finished(self, method: str, code: str, face: str, seconds: float, reason: str | None) -> None:
        self.call_stats.ended(method, code, face, seconds)
        if reason:
            name = split_method(method)[1]
            self.errors.labels(name, reason).inc()
            if reason == "RATE_LIMITED":
                self.rate_limited.labels(name).inc()
            elif reason == "OTP_ATTEMPTS_EXHAUSTED":
                self.otp_lockouts.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class Tracing:
    """Server spans for calls and client spans for AWS calls; a no-op unless a provider is configured."""

    def __init__(self, provider: trace.TracerProvider | None) -> None:
        self.enabled = provider is not None
        self.tracer = (provider or trace.NoOpTracerProvider()).get_tracer("booking-gateway")

    def start_call(self, method: str, request_id: str, face: str) -> trace.Span | None:
        if not self.enabled:
            return None
        service, name = split_method(method)
        return self.tracer.start_span(
            method.strip("/"),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "booking.request_id": request_id,
                "booking.face": face,
            },
        )


def tracer_provider(otlp_endpoint: str | None) -> TracerProvider | None:
    """An OTLP/gRPC exporting provider for `otlp_endpoint` ("http://collector:4317"), or None (tracing off)."""
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "booking-gateway"}))
    insecure = otlp_endpoint.startswith("http://")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=insecure)))
    return provider


def instrument_aws_client(client: AioBaseClient, metrics: Metrics, tracing: Tracing) -> None:
    """Time every call of an aiobotocore client, count its errors and wrap it in a client span."""
    service = client.meta.service_model.service_id.hyphenize()
    events = client.meta.events

    def before(model: Any, context: dict[str, Any], **_: Any) -> None:
        context["_gateway_started"] = time.perf_counter()
        context["_gateway_operation"] = model.name
        if tracing.enabled:
            context["_gateway_span"] = tracing.tracer.start_span(
                f"{service}.{model.name}",
                kind=SpanKind.CLIENT,
                attributes={"rpc.system": "aws-api", "rpc.service": service, "rpc.method": model.name},
            )

    def _end(context: dict[str, Any], error: str | None) -> None:
        operation = context.get("_gateway_operation", "?")
        started = context.get("_gateway_started")
        if started is not None:
            metrics.upstream_seconds.labels(service, operation).observe(time.perf_counter() - started)
        if error is not None:
            metrics.upstream_errors.labels(service, operation, error).inc()
        span: trace.Span | None = context.get("_gateway_span")
        if span is not None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()

    def after(http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        error = None
        if http_response.status_code >= 300:
            error = str(parsed.get("Error", {}).get("Code") or http_response.status_code)
            if error == "CodeMismatchException":
                metrics.otp_failures.inc()
        elif model.name in OTP_SEND_OPERATIONS and parsed.get("ChallengeName") == "EMAIL_OTP":
            metrics.otp_sends.inc()
        _end(context, error)

    def after_error(exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        _end(context, type(exception).__name__)

    events.register(f"before-call.{service}", before)
    events.register(f"after-call.{service}", after)
    events.register(f"after-call-error.{service}", after_error)


class MetricsServer:
    """Serves `/metrics` on its own port with aiohttp, in the gateway's event loop."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """HOST:PORT as configured (the port may be 0 before the start)."""
        return f"{self._host}:{self._port}"

    async def _serve(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def attach(span: trace.Span | None) -> Token[Context] | None:
    """Make `span` current for the rest of the call's task (AWS spans nest under it); token for `detach`."""
    if span is None:
        return None
    return otel_context.attach(trace.set_span_in_context(span))


def detach(token: Token[Context] | None) -> None:
    """Undo `attach`."""
    if token is not None:
        otel_context.detach(token)
