"""Chat benchmark servers, each run in its own process, all streaming the same tokens (`bench.text`).

    python -m bench.chat_servers PORTFILE REPORTFILE gateway --dynamodb URL --jwks URL [--max-concurrent-rpcs N]
                                                          [--processes N] [--bedrock URL]
    python -m bench.chat_servers PORTFILE REPORTFILE bare [--max-concurrent-rpcs N]
    python -m bench.chat_servers PORTFILE REPORTFILE sse
    (each takes --event-loop uvloop|asyncio: uvloop by default, the loop `gateway serve` runs on)

- gateway: the real gateway (`open_app` + `GatewayServer`: both faces, the call pipeline, ChatService with its
  task group and coalescer) with the benchmark model (`bench.model`); PORTFILE gets the gRPC and the web port.
  DynamoDB is the wire-level fake (`bench.fakes`); sign-in is not configured (Chat is OPTIONAL; the benchmark
  calls carry no bearer). Like `gateway serve`, it freezes what start-up allocated (`--gc-freeze`).
  `--bedrock URL` replaces the benchmark model by the real Bedrock one against `bench.bedrock`'s paced fake.
  `--processes N` runs N such gateways on the same two ports (SO_REUSEPORT), as `gateway serve --workers N`
  does: the process started first runs the others and stops them when it is stopped.
- bare: a bare grpc.aio server with the same `ChatService.Chat` method, no interceptor: a SessionStarted, one
  message per token, a TurnComplete. `--max-concurrent-rpcs` is grpc's own `maximum_concurrent_rpcs`.
- sse: the seed's transport, HTTP Server-Sent Events from a minimal aiohttp endpoint (`POST /chat` with
  `{"message": ...}`), one JSON event per token.

Every server reports when each tagged turn's token stream closed and when the turn's tasks ended
(`bench.recorder`) in REPORTFILE when it is stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from bench.model import BenchModel
from bench.recorder import Recorder
from bench.serving import quiet_logging, serve_until_terminated
from bench.text import TurnSpec
from booking.v1 import chat_pb2, chat_pb2_grpc
from gateway.adapters.aws import AwsTarget
from gateway.app import gateway_server, open_app
from gateway.config import Settings
from gateway.testing import CLIENT_ID, ISSUER
from gateway.transport.server import server_options


def gateway_settings(
    dynamodb_url: str, jwks_url: str, max_concurrent_rpcs: int, *, port: int = 0, web_port: int = 0
) -> Settings:
    """Settings of a benchmarked gateway: loopback (both faces on the ports given, or picked at start), the
    wire fake for DynamoDB, the benchmark's JWKS."""
    return Settings.build(
        listen=f"127.0.0.1:{port}",
        web_listen=f"127.0.0.1:{web_port}",
        aws_endpoint_url=dynamodb_url,
        table_name="bench",
        issuer=ISSUER,
        jwks_url=jwks_url,
        allowed_client_ids=(CLIENT_ID,),
        max_concurrent_rpcs=max_concurrent_rpcs,
        grace_seconds=1.0,
        # Every benchmark stream comes from 127.0.0.1: the per-client chat limits would refuse most of them. The
        # limits still run (their DynamoDB calls are part of every turn), only their numbers are out of reach.
        chat_anonymous_turns_per_minute=1_000_000_000,
        chat_anonymous_sessions_per_hour=1_000_000_000,
        chat_guest_turns_per_minute=1_000_000_000,
        chat_client_tokens_per_day=10**15,
        chat_gateway_tokens_per_day=10**15,
    )


def fake_target(dynamodb_url: str) -> AwsTarget:
    """The wire fake as an AWS endpoint, with dummy credentials (it checks no signature)."""
    return AwsTarget(
        region="us-east-1",
        endpoint_url=dynamodb_url,
        access_key_id="bench",
        secret_access_key="bench",  # noqa: S106 (the fake's dummy credentials)
    )


async def serve_gateway(args: argparse.Namespace, recorder: Recorder) -> None:
    limit = args.max_concurrent_rpcs or 10_000
    settings = gateway_settings(args.dynamodb, args.jwks, limit, port=args.port, web_port=args.web_port)
    # Several processes share the ports as `gateway serve --workers` does (SO_REUSEPORT); the limit is per process.
    if args.processes > 1 or args.port != 0:
        settings = settings.replace(reuse_port=True)
    # `--bedrock URL`: the real Bedrock model (aioboto3, event-stream parsing) against the paced fake at URL.
    bedrock = None
    if args.bedrock:
        settings = settings.replace(agent_model="bedrock")
        bedrock = AwsTarget(
            region="us-east-1",
            endpoint_url=args.bedrock,
            access_key_id="bench",
            secret_access_key="bench",  # noqa: S106 (the fake checks no signature)
        )
    async with (
        open_app(
            settings, fake_target(args.dynamodb), bedrock=bedrock, model=None if bedrock else BenchModel(recorder)
        ) as app,
        gateway_server(app, settings) as server,
        _more_processes(args, server.port, server.web_port),
    ):
        recorder.mark_idle()
        await serve_until_terminated(server.port, args.port_file, server.web_port)


@asynccontextmanager
async def _more_processes(args: argparse.Namespace, port: int, web_port: int) -> AsyncIterator[None]:
    """`args.processes - 1` more gateway processes on the same ports, running until the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        processes = []
        try:
            for index in range(1, args.processes):
                port_file = Path(tmp) / f"port-{index}"
                command = [*_gateway_command(args), "--port", str(port), "--web-port", str(web_port)]
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.chat_servers", str(port_file), str(Path(tmp) / "report"), *command
                )
                processes.append(process)
                async with asyncio.timeout(60):
                    while not port_file.exists():
                        if process.returncode is not None:
                            raise RuntimeError(f"gateway process {index} exited with {process.returncode}")
                        await asyncio.sleep(0.02)
            yield
        finally:
            for process in processes:
                if process.returncode is None:
                    process.terminate()
            for process in processes:
                await process.wait()


def _gateway_command(args: argparse.Namespace) -> list[str]:
    return [
        "gateway",
        "--dynamodb",
        args.dynamodb,
        "--jwks",
        args.jwks,
        "--max-concurrent-rpcs",
        str(args.max_concurrent_rpcs),
        *(["--bedrock", args.bedrock] if args.bedrock else []),
        "--event-loop",
        args.event_loop,
    ]


def _event(sequence: int, **kind: Any) -> chat_pb2.ChatResponse:
    return chat_pb2.ChatResponse(event=chat_pb2.ChatEvent(sequence=sequence, **kind))


class BareChat(chat_pb2_grpc.ChatServiceServicer):
    """ChatService.Chat with nothing in between: one message per token, as the model writes it."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ChatResponse]:
        spec = TurnSpec.parse(request.message)
        record = self._recorder.opened(spec.tag)
        sequence = 1
        try:
            yield _event(sequence, session_started=chat_pb2.SessionStarted(session_id=secrets.token_urlsafe(16)))
            async with aclosing(spec.tokens_iter()) as tokens:
                async for token in tokens:
                    sequence += 1
                    yield _event(sequence, text_delta=chat_pb2.TextDelta(text=token))
            usage = chat_pb2.TokenUsage(input_tokens=1, output_tokens=sequence - 1)
            yield _event(
                sequence + 1,
                turn_complete=chat_pb2.TurnComplete(stop_reason=chat_pb2.STOP_REASON_END_TURN, usage=usage),
            )
        finally:
            if record is not None:
                record.model_closed()

    async def ResumeChat(
        self, request: chat_pb2.ResumeChatRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ResumeChatResponse]:
        """Not part of the bare baseline."""
        nothing: tuple[chat_pb2.ResumeChatResponse, ...] = ()
        for response in nothing:  # an async generator that never yields
            yield response
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare server does not keep turns")

    async def CancelTurn(
        self, request: chat_pb2.CancelTurnRequest, context: aio.ServicerContext[Any, Any]
    ) -> chat_pb2.CancelTurnResponse:
        """Not part of the bare baseline."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare server does not keep turns")


async def serve_bare(args: argparse.Namespace, recorder: Recorder) -> None:
    limit = args.max_concurrent_rpcs
    server = aio.server(options=server_options(), maximum_concurrent_rpcs=limit if limit else None)
    chat_pb2_grpc.add_ChatServiceServicer_to_server(BareChat(recorder), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    recorder.mark_idle()
    try:
        await serve_until_terminated(port, args.port_file)
    finally:
        await server.stop(1.0)


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def serve_sse(args: argparse.Namespace, recorder: Recorder) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        spec = TurnSpec.parse(str(body.get("message", "")))
        record = recorder.opened(spec.tag)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        sequence = 1
        try:
            await response.write(_sse({"type": "session_started", "sequence": 1, "session_id": secrets.token_hex(8)}))
            async with aclosing(spec.tokens_iter()) as tokens:
                async for token in tokens:
                    sequence += 1
                    await response.write(_sse({"type": "text_delta", "sequence": sequence, "text": token}))
            await response.write(_sse({"type": "turn_complete", "sequence": sequence + 1, "stop_reason": "END_TURN"}))
        finally:
            if record is not None:
                record.model_closed()
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/chat", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.mark_idle()
    try:
        await serve_until_terminated(runner.addresses[0][1], args.port_file)
    finally:
        await runner.cleanup()


SERVERS = {"gateway": serve_gateway, "bare": serve_bare, "sse": serve_sse}


async def serve(args: argparse.Namespace) -> None:
    recorder = Recorder()
    try:
        await SERVERS[args.kind](args, recorder)
    finally:
        args.report_file.write_text(json.dumps(recorder.report()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port_file", type=Path)
    parser.add_argument("report_file", type=Path)
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--dynamodb", default="")
    parser.add_argument("--jwks", default="")
    parser.add_argument("--max-concurrent-rpcs", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1, help="gateway processes sharing the ports")
    parser.add_argument("--port", type=int, default=0, help="the gRPC port to share (set for the extra processes)")
    parser.add_argument("--web-port", type=int, default=0, help="the web port to share (with --port)")
    parser.add_argument("--bedrock", default="", help="the Bedrock model against this endpoint (bench.bedrock's fake)")
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the server's event loop: uvloop by default, as `gateway serve` runs (every kind, the bare one too)",
    )
    args = parser.parse_args()
    quiet_logging()
    if args.event_loop == "uvloop":
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
