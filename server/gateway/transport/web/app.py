"""The web face's ASGI app: RPCs (Connect + gRPC-Web), the browser chat's static files, a health probe.

    request ─► origin guard ─► CORS (listed origins only) ─► /pkg.Service/Method  → connectrpc (transport/web/face.py)
                                                            /healthz              → SERVING / NOT_SERVING
                                                            anything else (GET)   → the built browser chat

The browser chat is served from the same origin as the RPCs, so it needs no CORS at all. A request whose
`Origin` is neither this origin nor one listed in `--web-allowed-origin` is refused with 403 before anything
runs; listed origins get preflight answers from Starlette's CORSMiddleware.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings_spec import is_loopback_host
from gateway.transport.web.face import WebFace

# What connect-web and grpc-web clients send and must be able to read (connectrpc.com/docs/cors).
CORS_ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
    "grpc-timeout",
    "grpc-accept-encoding",
    "x-grpc-web",
    "x-user-agent",
    "x-request-id",
)
CORS_EXPOSED_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "connect-content-encoding",
    "x-request-id",
)
CORS_MAX_AGE_SECONDS = 7200

# The bundle talks to its own origin only; nothing inline, nothing from elsewhere.
STATIC_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        b"form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)

NOT_BUILT_PAGE = """<!doctype html><meta charset="utf-8"><title>booking-gateway</title>
<p>The browser chat is not built. Run <code>make setup</code> (or <code>npm run build</code> in
<code>clients/web</code>) and restart the gateway. The RPCs (Connect and gRPC-Web) are served here all the same.</p>
"""


def _host_of(authority: str) -> str:
    """The host name of "host[:port]" or "[v6]:port", lower-cased."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class _StaticSite:
    """The built browser chat with security headers; a short explanation when it is not built."""

    def __init__(self, directory: Path | None) -> None:
        built = directory is not None and (directory / "index.html").is_file()
        self._files: ASGIApp | None = StaticFiles(directory=directory, html=True) if built else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await PlainTextResponse("method not allowed", status_code=405)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *STATIC_HEADERS]
            await send(message)

        if self._files is None:
            page = Response(NOT_BUILT_PAGE, status_code=503, media_type="text/html")
            await page(scope, receive, send_with_headers)
            return
        try:
            await self._files(scope, receive, send_with_headers)
        except HTTPException as exc:
            await PlainTextResponse(exc.detail, status_code=exc.status_code)(scope, receive, send_with_headers)


class WebApp:
    """The ASGI app of the web face (see the module docstring)."""

    def __init__(
        self,
        rpc: WebFace,
        *,
        static_dir: Path | None,
        allowed_origins: Sequence[str],
        is_serving: Callable[[], bool],
        loopback_only: bool = False,
    ) -> None:
        self._rpc = rpc
        self._allowed_origins = frozenset(allowed_origins)
        # Listening on loopback, the only names a request may use are loopback ones and the listed origins' hosts:
        # a page on another name that resolves to 127.0.0.1 (DNS rebinding) is then not "same origin".
        self._loopback_only = loopback_only
        self._allowed_hosts = frozenset(_host_of(origin.partition("://")[2]) for origin in self._allowed_origins)
        self._is_serving = is_serving
        self._static = _StaticSite(static_dir)
        self._cors: ASGIApp = CORSMiddleware(
            self._route,
            allow_origins=sorted(self._allowed_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=CORS_MAX_AGE_SECONDS,
        )

    def origin_allowed(self, scope: Scope, origin: str) -> bool:
        """Same origin as this request, or listed in `--web-allowed-origin`."""
        if origin in self._allowed_origins:
            return True
        host = _header(scope, b"host")
        return bool(host) and origin == f"{scope.get('scheme', 'http')}://{host}".lower()

    def host_allowed(self, scope: Scope) -> bool:
        """Any host name when listening beyond loopback; on loopback only loopback names and the listed origins'."""
        if not self._loopback_only:
            return True
        host = _host_of(_header(scope, b"host"))
        return is_loopback_host(host) or host in self._allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan (uvicorn runs with lifespan off), no websockets
        if sum(1 for key, _ in scope.get("headers", ()) if key == b"origin") > 1:
            await PlainTextResponse("send one Origin header", status_code=403)(scope, receive, send)
            return
        if not self.host_allowed(scope):
            refusal = PlainTextResponse("this gateway listens on loopback: use localhost or 127.0.0.1", status_code=403)
            await refusal(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        static_read = scope["method"] in ("GET", "HEAD") and not WebFace.is_rpc_path(scope["path"])
        if origin and not static_read and not self.origin_allowed(scope, origin):
            refusal = PlainTextResponse(f"origin {origin[:200]} is not allowed to call this gateway", status_code=403)
            await refusal(scope, receive, send)
            return
        if origin:
            await self._cors(scope, receive, send)
        else:
            await self._route(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if WebFace.is_rpc_path(path) and scope["method"] in ("POST", "GET"):
            await self._rpc(scope, receive, send)
            return
        if path == "/healthz":
            serving = self._is_serving()
            probe = PlainTextResponse("SERVING" if serving else "NOT_SERVING", status_code=200 if serving else 503)
            await probe(scope, receive, send)
            return
        await self._static(scope, receive, send)
