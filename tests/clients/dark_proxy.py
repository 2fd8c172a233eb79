"""A cuttable loopback proxy that can also go dark: connections made meanwhile are accepted and left unanswered,
as when the network between client and gateway is down (a client's calls then wait for their deadline)."""

from __future__ import annotations

import asyncio
from types import TracebackType

from tests.support.tcp_cut import CuttableProxy


class DarkableProxy(CuttableProxy):
    """`go_dark()` cuts every open connection and holds new ones unanswered; `go_light()` forwards the held ones
    (what the client sent meanwhile arrives then) and new ones again."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self._light = asyncio.Event()
        self._light.set()
        self._held: set[asyncio.StreamWriter] = set()

    def go_dark(self) -> None:
        self._light.clear()
        self.cut()

    def go_light(self) -> None:
        self._light.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self._light.is_set():
            self._held.add(client_writer)
            await self._light.wait()
            self._held.discard(client_writer)
            if client_writer.is_closing():
                return
        await super()._accept(client_reader, client_writer)

    async def __aenter__(self) -> DarkableProxy:
        await super().__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for writer in self._held:
            writer.transport.abort()
        self._light.set()
        await super().__aexit__(exc_type, exc, tb)
