"""A loopback HTTP proxy in front of the emulator that breaks DynamoDB calls the way networks and AWS do.

Faked at the wire, not in our code: the gateway's own aioboto3 clients (with botocore's retries) talk to it.
Faults are queued per operation ("TransactWriteItems", "GetItem", ...) and used one per request. Any service
spoken in AWS's JSON protocol can go through it: pointed at by `AwsTarget.cognito_endpoint_url`, it breaks
Cognito's calls ("AdminRespondToAuthChallenge", ...) the same way.

    throttle        answer 400 ThrottlingException without forwarding (nothing applied)
    conflict        answer 400 TransactionConflictException without forwarding (a single-item write refused
                    because a transaction holds the item; nothing applied)
    cancel_conflict answer 400 TransactionCanceledException without forwarding, its first item contended
                    (CancellationReasons [TransactionConflict, None]; nothing applied)
    fail_before     answer 500 InternalServerError without forwarding (nothing applied, outcome unknown)
    drop_before     close the connection without forwarding or answering (nothing applied, outcome unknown)
    fail_after      forward, then answer 500 InternalServerError (applied, outcome unknown)
    drop_after      forward, then close the connection without an answer (applied, outcome unknown)
    in_progress_after  forward, then answer 400 TransactionInProgressException (what DynamoDB says when a
                    retry with the same ClientRequestToken arrives while the first try is still running)

`hold(operation, containing)` is a gate rather than a fault: the next call of `operation` whose body contains
`containing` waits at the proxy, not forwarded, until the test releases it; the test learns when it arrived.
It puts a caller in the middle of a sequence of writes, deterministically (no sleeps).

`slow(operation, seconds)` is latency, not a fault: every later call of `operation` waits that long at the proxy
before it is forwarded, as a call to a distant or busy provider does.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
from aiohttp import web

_JSON = "application/x-amz-json-1.0"
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "date", "server"}


def _aws_error(status: int, code: str, message: str, **fields: object) -> web.Response:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **fields})
    return web.Response(status=status, body=body.encode(), headers={"Content-Type": _JSON})


@dataclass
class Hold:
    """A call held at the proxy: `arrived` is set when it comes, and it is forwarded once `release` is set."""

    operation: str
    containing: bytes
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class FaultyDynamo:
    """`async with FaultyDynamo(upstream_url) as proxy:` serves on `proxy.url` until the block ends."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._faults: defaultdict[str, deque[str]] = defaultdict(deque)
        self._holds: list[Hold] = []  # not arrived yet
        self._gates: list[Hold] = []  # every hold: released when the proxy stops
        self._latency: dict[str, float] = {}
        self.seen: list[str] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Where the proxy listens."""
        return f"http://127.0.0.1:{self.port}"

    def inject(self, operation: str, *faults: str) -> None:
        """Break the next len(faults) calls of `operation`, in order."""
        self._faults[operation].extend(faults)

    def hold(self, operation: str, containing: bytes) -> Hold:
        """Hold the next call of `operation` whose request body contains `containing` (once)."""
        gate = Hold(operation, containing)
        self._holds.append(gate)
        self._gates.append(gate)
        return gate

    def slow(self, operation: str, seconds: float) -> None:
        """Make every later call of `operation` take `seconds` longer (held at the proxy, then forwarded)."""
        self._latency[operation] = seconds

    def pending(self, operation: str) -> int:
        """Faults not used yet."""
        return len(self._faults[operation])

    def clear(self, operation: str) -> None:
        """Drop the faults of `operation` not used yet."""
        self._faults[operation].clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.seen.append(operation)
        gate = next((h for h in self._holds if h.operation == operation and h.containing in body), None)
        if gate is not None:
            self._holds.remove(gate)
            gate.arrived.set()
            await gate.release.wait()
        if operation in self._latency:
            await asyncio.sleep(self._latency[operation])
        queue = self._faults[operation]
        fault = queue.popleft() if queue else ""
        if fault == "throttle":
            return _aws_error(400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
        if fault == "conflict":
            return _aws_error(400, "TransactionConflictException", "Transaction is ongoing for the item")
        if fault == "cancel_conflict":
            reasons = [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
                {"Code": "None"},
            ]
            message = "Transaction cancelled, please refer cancellation reasons for specific reasons"
            return _aws_error(400, "TransactionCanceledException", message, CancellationReasons=reasons)
        if fault == "fail_before":
            return _aws_error(500, "InternalServerError", "injected failure before the request was applied")
        if fault == "drop_before":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.post(self._upstream + request.path_qs, data=body, headers=headers) as upstream:
            payload = await upstream.read()
            status = upstream.status
            answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if fault == "fail_after":
            return _aws_error(500, "InternalServerError", "injected failure after the request was applied")
        if fault == "in_progress_after":
            return _aws_error(400, "TransactionInProgressException", "the transaction is still in progress")
        if fault == "drop_after":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        return web.Response(status=status, body=payload, headers=answer_headers)

    async def __aenter__(self) -> FaultyDynamo:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for gate in self._gates:
            gate.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
