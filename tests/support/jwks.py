"""A JWKS served on loopback from test keys (`gateway.testing.SigningKey`); keys can rotate, the server can fail."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.testing import SigningKey


class JwksServer:
    """Serves a JWKS on 127.0.0.1:PORT/jwks.json; keys can rotate, the server can fail on purpose."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        # JWKS entries served as they are, after the keys' own (any JSON a JWKS endpoint might answer).
        self.raw_entries: list[dict[str, Any]] = []
        self.fetches = 0
        self.failing = False
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    async def _serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.failing:
            return web.Response(status=503, text="down")
        return web.json_response({"keys": [key.jwk() for key in self.keys] + self.raw_entries})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/jwks.json", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
