"""The dev mailbox over HTTP on loopback, for test scripts in other processes (Node, the browser test).

GET /code?email=ADDRESS&after=N   ->  200 with the newest code once more than N codes reached ADDRESS
                                      404 when none arrives within the wait
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from gateway.devstack.mailbox import DevMailbox

WAIT_SECONDS = 10.0


@asynccontextmanager
async def mailbox_server(mailbox: DevMailbox) -> AsyncIterator[str]:
    """Serve `mailbox` on 127.0.0.1 (a port picked at run time); yields its base URL."""

    async def code(request: web.Request) -> web.Response:
        email = request.query.get("email", "")
        after = int(request.query.get("after", "0"))
        try:
            found = await mailbox.wait_for_code(email, after=after, wait_seconds=WAIT_SECONDS)
        except TimeoutError:
            return web.Response(status=404, text="no code arrived")
        return web.Response(text=found)

    app = web.Application()
    app.router.add_get("/code", code)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
