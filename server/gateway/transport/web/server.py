"""The web face's HTTP server: uvicorn (HTTP/1.1, h11) on the gateway's own event loop.

uvicorn's `serve()` would take over SIGTERM and SIGINT; the gateway owns its signals and drains both faces
together, so this drives uvicorn's startup and shutdown steps itself, on a socket it binds itself (port 0 is
known as soon as `start` returns).

Requests still open when a drain's grace period ends are ended from the app's side (`OpenRequests.cut`), not
by uvicorn: uvicorn would cancel their tasks and log each one at ERROR with a CancelledError traceback, as an
application failure. Cut from inside, a stream unwinds the same way (the chat turn records itself, connectrpc
writes its `canceled` end-of-stream message) and then returns normally, so uvicorn finds nothing left to cancel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

# Like the gRPC face's metadata limit: an oversized bearer must reach the auth step and get TOKEN_MALFORMED,
# not a bare 400 from the HTTP parser (h11's default is 16 KiB).
MAX_HEADER_BYTES = 80 * 1024
# How long requests cut at the end of a drain may take to unwind (a chat turn records itself) before uvicorn's
# own deadline cancels them after all.
DEFAULT_UNWIND_SECONDS = 5.0


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on host:port (port 0 = pick one). Raises OSError when it cannot be had.

    `reuse_port` lets `--workers` processes share the port the supervisor reserved (SO_REUSEPORT).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class OpenRequests:
    """The web face's ASGI app, wrapped so that every open HTTP request can be ended from inside (`cut`).

    Each request runs under its own `asyncio.timeout` with no deadline; cutting moves the deadline to now. The
    request's task is cancelled where it waits, its code unwinds as for any cancellation, and the timeout ends
    the cancellation where it began, so the request returns to uvicorn normally: its task was never cancelled
    from outside. A client that goes away still cancels the request as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._open: set[asyncio.Timeout] = set()

    @property
    def count(self) -> int:
        """Requests in progress."""
        return len(self._open)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(None) as deadline:
                self._open.add(deadline)
                try:
                    await self._app(scope, receive, send)
                finally:
                    self._open.discard(deadline)
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own, not our cut
            log.debug("request cut at the end of the drain", extra={"path": scope.get("path", "")})

    def cut(self) -> None:
        """End every open request now (each sees a cancellation where it waits)."""
        now = asyncio.get_running_loop().time()
        for deadline in list(self._open):
            if not deadline.expired():
                deadline.reschedule(now)


class WebServer:
    """uvicorn serving one ASGI app on one socket; `drain` lets open requests finish like grpc's `stop(grace)`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.reuse_port = reuse_port
        self.requested_port = port
        self.port = 0
        self.tls = tls_cert is not None
        self.requests = OpenRequests(app)
        self.config = uvicorn.Config(
            self.requests,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,  # the call pipeline writes the access log, for both faces alike
            proxy_headers=False,  # never trust X-Forwarded-For: rate limits key on the real peer
            server_header=False,
            date_header=False,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self.server = uvicorn.Server(self.config)
        self._socket: socket.socket | None = None
        self._stopped = False

    @property
    def scheme(self) -> str:
        """ "https" with TLS, else "http"."""
        return "https" if self.tls else "http"

    async def start(self) -> None:
        """Bind and accept connections. Raises OSError when the address cannot be bound."""
        self._socket = bind_socket(self.host, self.requested_port, reuse_port=self.reuse_port)
        self.port = self._socket.getsockname()[1]
        self.config.load()
        self.server.lifespan = self.config.lifespan_class(self.config)
        await self.server.startup(sockets=[self._socket])

    async def drain(self, grace_seconds: float, *, unwind_seconds: float = DEFAULT_UNWIND_SECONDS) -> None:
        """Refuse new connections, let open requests finish for `grace_seconds`, then cut what is left and give
        it `unwind_seconds` to end (each gets an end-of-stream message or error answer, as for a cancellation).

        uvicorn's own deadline, which cancels requests from outside and logs each at ERROR, only comes after
        that, for a request that does not end when cut.
        """
        if self._stopped or not self.server.started:
            return
        self._stopped = True
        grace = max(grace_seconds, 0.0)
        self.config.timeout_graceful_shutdown = math.ceil(grace + unwind_seconds)
        if grace <= 0:
            self.stop_now()
        shutdown = asyncio.ensure_future(self.server.shutdown(sockets=[self._socket] if self._socket else None))
        try:
            done, _ = await asyncio.wait({shutdown}, timeout=grace)
            if not done:
                log.info("grace period over; ending open web requests", extra={"open": self.requests.count})
                self.requests.cut()
            await shutdown
        finally:
            shutdown.cancel()  # only if this drain was cancelled itself
        # Should uvicorn have cancelled anything after all, it does not wait for it to unwind.
        leftovers = list(self.server.server_state.tasks)
        if leftovers:
            await asyncio.wait(leftovers, timeout=unwind_seconds)

    def stop_now(self) -> None:
        """End every open request at once (a second signal): cut from inside, as at the end of a drain."""
        self.server.force_exit = True
        self.requests.cut()
        for connection in list(self.server.server_state.connections):
            connection.shutdown()
