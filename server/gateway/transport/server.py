"""Serves the handler table on the gateway's two faces through one call pipeline: the grpc.aio server (the table,
health, reflection) and the web face (Connect + gRPC-Web + the browser chat); TLS and graceful shutdown for both.

It takes the table, the pipeline and its own settings; the composition root (`gateway.app`) builds them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from types import TracebackType
from typing import Protocol

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from gateway.errors import GatewayError
from gateway.observability import MetricsServer
from gateway.settings_spec import is_loopback_host
from gateway.transport.grpc_face import GrpcFace
from gateway.transport.pipeline import Pipeline
from gateway.transport.settings import TransportSettings
from gateway.transport.table import HandlerTable
from gateway.transport.web import WebApp, WebFace, WebServer

log = logging.getLogger(__name__)


class Lifecycle(Protocol):
    """What the server asks of the application around it."""

    async def warm_up(self) -> None:
        """Load what calls need before the gateway reports SERVING; raise a GatewayError when it cannot yet."""
        ...

    async def settle(self) -> None:
        """Return once work cut off by a drain (chat turns) has recorded itself; the server bounds the wait."""
        ...


class _Ready:
    """A lifecycle with nothing to warm up or settle."""

    async def warm_up(self) -> None:
        return None

    async def settle(self) -> None:
        return None


# grpc core refuses metadata over 8 KiB (soft) / 16 KiB (hard) with a bare RESOURCE_EXHAUSTED. Accept up to
# 80 KiB so an oversized bearer (the verifier's own limit is 8 KiB) is refused by us with TOKEN_MALFORMED.
MAX_METADATA_BYTES = 80 * 1024


def server_options(*, reuse_port: bool = False) -> list[tuple[str, int]]:
    """grpc.aio server options shared by the gateway and the tests' probe servers."""
    return [
        # SO_REUSEPORT is grpc's default; off unless asked, so a port already in use is an error, not a
        # silent second listener.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ]


WARM_UP_RETRY_SECONDS = 2.0
# After the grace period: how long calls cut off by the stop may take to record themselves (by default).
DEFAULT_SETTLE_SECONDS = 3.0

# The browser chat's build output in a checkout (server/gateway/transport/server.py -> clients/web/dist).
DEFAULT_STATIC_DIR = Path(__file__).resolve().parents[3] / "clients" / "web" / "dist"


class BindError(RuntimeError):
    """The listen address could not be bound (in use, or not an address of this machine).

    `setting` names the option that moves it ("listen", "web_listen", "metrics_listen"), so that the message a
    person reads can say which flag or variable to change.
    """

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class GatewayServer:
    """The gateway's faces as an async context manager.

    `async with GatewayServer(table, pipeline, settings) as server:` binds both faces, starts them and reports
    SERVING; `server.port` is the gRPC port and `server.web_port` the web face's (useful with port 0). Leaving the
    block drains: health goes NOT_SERVING, then open calls on either face get `grace_seconds` to finish.
    """

    def __init__(
        self,
        table: HandlerTable,
        pipeline: Pipeline,
        settings: TransportSettings,
        *,
        lifecycle: Lifecycle | None = None,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        metrics_server: MetricsServer | None = None,
    ) -> None:
        self.table = table
        self.pipeline = pipeline
        self.settings = settings
        self.lifecycle: Lifecycle = lifecycle or _Ready()
        self.settle_seconds = settle_seconds
        self.metrics_server = metrics_server
        self.health = HealthServicer()
        self.limiter = pipeline.limiter
        self.service_names = table.service_names
        # The grpc.aio server with the table mounted; health and reflection register through it, behind the
        # same pipeline. No other handle on the inner server is kept (nothing may bypass the pipeline).
        self.server = GrpcFace(pipeline, table).server(
            aio.server(options=server_options(reuse_port=settings.reuse_port))
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.web: WebServer | None = None
        if not settings.no_web:
            web_host, web_port = settings.web_listen_address
            web_app = WebApp(
                WebFace(pipeline, table),
                static_dir=settings.web_static_dir or DEFAULT_STATIC_DIR,
                allowed_origins=settings.web_allowed_origin,
                is_serving=lambda: self.serving,
                loopback_only=is_loopback_host(web_host),
            )
            self.web = WebServer(
                web_app,
                host=web_host,
                port=web_port,
                tls_cert=settings.tls_cert,
                tls_key=settings.tls_key,
                reuse_port=settings.reuse_port,
            )
        self.port = 0
        self.serving = False
        self._stopped = False
        self._warm_up_task: asyncio.Task[None] | None = None

    @property
    def web_port(self) -> int:
        """The web face's bound port (0 when it is off or not started)."""
        return self.web.port if self.web is not None else 0

    @property
    def web_url(self) -> str:
        """Where a browser opens the chat, like "http://127.0.0.1:8080/" ("" when the web face is off)."""
        if self.web is None:
            return ""
        host, _ = self.settings.web_listen_address
        shown = f"[{host}]" if ":" in host else host
        return f"{self.web.scheme}://{shown}:{self.web.port}/"

    def _bind(self) -> int:
        host, port = self.settings.listen_address
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self.settings.tls_cert is not None and self.settings.tls_key is not None:
                credentials = grpc.ssl_server_credentials(
                    [(self.settings.tls_key.read_bytes(), self.settings.tls_cert.read_bytes())]
                )
                bound = self.server.add_secure_port(address, credentials)
            else:
                bound = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise BindError(f"cannot listen on {self.settings.listen}: {exc}", setting="listen") from exc
        if bound == 0:
            raise BindError(
                f"cannot listen on {self.settings.listen}: address in use or not available", setting="listen"
            )
        return bound

    async def start(self) -> None:
        """Bind and start serving; report SERVING once the app is warmed up (signing keys loaded).

        If warming up fails (the JWKS endpoint is down, say), health stays NOT_SERVING and a background task
        keeps trying; calls are served meanwhile and get UNAVAILABLE where they need what is missing.
        """
        self.port = self._bind()
        if self.web is not None:
            try:
                await self.web.start()
            except OSError as exc:
                await self.server.stop(0)
                reason = exc.strerror or exc
                raise BindError(
                    f"cannot listen on {self.settings.web_listen} (web face): {reason}", setting="web_listen"
                ) from exc
        await self.server.start()
        if self.metrics_server is not None:
            try:
                await self.metrics_server.start()
            except OSError as exc:
                await self.server.stop(0)
                where = self.metrics_server.address
                raise BindError(
                    f"cannot listen on {where} (metrics): {exc.strerror}", setting="metrics_listen"
                ) from exc
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            await self.lifecycle.warm_up()
        except GatewayError:
            log.warning("warm-up failed; health stays NOT_SERVING until it succeeds")
            self._warm_up_task = asyncio.create_task(self._keep_warming_up(), name="warm-up")
        else:
            await self._report_serving()
        if self.settings.gc_freeze:
            # Start-up leaves ~120,000 long-lived objects (botocore's service models, modules) that every full
            # collection would walk again: a 75 ms pause of the event loop, felt by every open stream.
            gc.collect()
            gc.freeze()

    async def _report_serving(self) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.serving = True

    async def _keep_warming_up(self) -> None:
        while not self._stopped:
            await asyncio.sleep(WARM_UP_RETRY_SECONDS)
            try:
                await self.lifecycle.warm_up()
            except GatewayError:
                continue
            if not self._stopped:
                await self._report_serving()
            return

    async def drain(self, grace_seconds: float | None = None) -> None:
        """Health NOT_SERVING, wait the drain delay, then stop both faces: open calls get `grace_seconds`."""
        if self._stopped:
            return
        self._stopped = True
        self.serving = False
        if self._warm_up_task is not None:
            self._warm_up_task.cancel()
        grace = self.settings.grace_seconds if grace_seconds is None else grace_seconds
        await self.health.enter_graceful_shutdown()
        log.info("draining", extra={"grace_seconds": grace})
        if self.settings.drain_delay_seconds:
            await asyncio.sleep(self.settings.drain_delay_seconds)
        if self.web is None:
            await self.server.stop(grace)
        else:
            await asyncio.gather(self.server.stop(grace), self.web.drain(grace))
        await self._settle()
        if self.metrics_server is not None:
            await self.metrics_server.stop()

    async def _settle(self) -> None:
        """Wait (bounded) until the chat turns cut off at the end of the grace period have recorded themselves.

        grpc cancels the calls still open when the grace ends but does not wait for them to clean up. An
        interrupted turn records what it did and frees its session; if the app's clients closed under it, the
        session would stay leased until its lease ran out and the turn would be lost.
        """
        try:
            async with asyncio.timeout(self.settle_seconds):
                await self.lifecycle.settle()
        except TimeoutError:
            log.warning("calls cut off by the stop still unsettled after the grace period")

    async def stop_now(self) -> None:
        """Cancel every open call on both faces at once (a second signal during a drain)."""
        if self.web is not None:
            self.web.stop_now()
        await self.server.stop(0)

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.drain()
