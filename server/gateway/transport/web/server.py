"""The web face's HTTP server: uvicorn (HTTP/1.1, h11) on the gateway's own event loop.

uvicorn's `serve()` would take over SIGTERM and SIGINT; the gateway owns its signals and drains both faces
together, so this drives uvicorn's startup and shutdown steps itself, on a socket it binds itself (port 0 is
known as soon as `start` returns).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

# Like the gRPC face's metadata limit: an oversized bearer must reach the auth step and get TOKEN_MALFORMED,
# not a bare 400 from the HTTP parser (h11's default is 16 KiB).
MAX_HEADER_BYTES = 80 * 1024


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
        self.config = uvicorn.Config(
            app,
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

    async def drain(self, grace_seconds: float) -> None:
        """Refuse new connections, let open requests finish for `grace_seconds`, then cancel what is left."""
        if self._stopped or not self.server.started:
            return
        self._stopped = True
        self.config.timeout_graceful_shutdown = math.ceil(max(grace_seconds, 0.0))
        if grace_seconds <= 0:
            self.stop_now()
        await self.server.shutdown(sockets=[self._socket] if self._socket else None)
        # uvicorn cancels what outlives the grace period but does not wait for it to unwind.
        leftovers = list(self.server.server_state.tasks)
        if leftovers:
            await asyncio.wait(leftovers, timeout=5.0)

    def stop_now(self) -> None:
        """Cancel every open request at once (a second signal)."""
        self.server.force_exit = True
        for task in list(self.server.server_state.tasks):
            task.cancel()
        for connection in list(self.server.server_state.connections):
            connection.shutdown()
