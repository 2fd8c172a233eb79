"""moto's AWS emulator served over HTTP on a loopback port, one request at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger(__name__)
# werkzeug logs every emulator request at INFO; the gateway logs its own AWS failures.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SerializedApp:
    """Runs a WSGI app under one lock, including reading its whole response body.

    moto's backends are not thread-safe: concurrent DynamoDB `TransactWriteItems` were seen to answer HTTP 500
    and to leave the losing transaction's writes behind. The body is drained inside the lock because a WSGI
    response may be computed lazily while it is iterated.
    """

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self._lock:
            result = self._app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class EmulatorServer:
    """moto's server on `host:port` (port 0 = picked by the OS) in a daemon thread.

    A context manager: the port is bound when `__enter__` returns, and `url` says where it listens. `wrap`, when
    given, wraps the serialised app (it sees each request with its whole response already computed).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, wrap: Callable[[WsgiApp], WsgiApp] | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._wrap = wrap
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The emulator's base URL, like "http://127.0.0.1:41523"."""
        if self._server is None:
            raise RuntimeError("emulator is not running")
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host_text}:{port}"

    def start(self) -> None:
        """Bind the port and start serving; raises OSError if the port is taken."""
        app: WsgiApp = SerializedApp(DomainDispatcherApplication(create_backend_app))
        if self._wrap is not None:
            app = self._wrap(app)
        self._server = make_server(self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-emulator", daemon=True)
        self._thread.start()
        log.info("aws emulator listening", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
