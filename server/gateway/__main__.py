"""The `gateway` command: `gateway serve` runs the gateway's gRPC and web faces (with the embedded local AWS when
no pool is set)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

from gateway.adapters.aws import AwsTarget
from gateway.app import gateway_server, open_app
from gateway.config import ConfigError, Settings, argument_parser, started_by_devstack_supervisor
from gateway.logs import configure_logging
from gateway.settings_spec import env_key, flag
from gateway.transport.server import BindError, GatewayServer

log = logging.getLogger(__name__)


def _say(line: str) -> None:
    """A line for the person at the console (stdout), apart from the structured logs on stderr."""
    print(line, flush=True)


async def _with_devstack(settings: Settings, stack: AsyncExitStack) -> tuple[Settings, AwsTarget]:
    from gateway.devstack import DevStack

    host, port = settings.devstack.listen_address
    devstack = await stack.enter_async_context(
        DevStack.running(
            host=host,
            port=port,
            table_name=settings.aws.table_name,
            demo_data=settings.devstack.demo_data,
            otp_length=settings.devstack.otp_length,
            # One-time codes are shown to the person at this console, never written to the logs.
            announce=_say,
        )
    )
    endpoints = devstack.endpoints
    _say(f"local AWS emulator (moto) listening on {endpoints.endpoint_url}")
    return endpoints.configure(settings), endpoints.target


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; the first signal drains, a second stops at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    server: GatewayServer | None = None
    forced_stops: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            stop.set()
        elif server is not None:
            log.warning("second signal: stopping now")
            task = loop.create_task(server.stop_now())
            forced_stops.add(task)
            task.add_done_callback(forced_stops.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    async with AsyncExitStack() as stack:
        target: AwsTarget | None = None
        if settings.uses_devstack:
            settings, target = await _with_devstack(settings, stack)
        # The emulator's key is trusted only where the emulator runs: here, or in the process that started this
        # one and proves it down an inherited pipe (gateway.devstack.trust); never by configuration.
        trust = target is not None
        handed = started_by_devstack_supervisor(settings)
        if not trust and handed is not None:
            from gateway.devstack.trust import confirm

            trust = await confirm(settings, handed)
        app = await stack.enter_async_context(open_app(settings, target, trust_emulator_keys=trust))
        server = gateway_server(app, settings)
        try:
            await server.start()
        except BindError as exc:
            _say(
                f"gateway: error: {exc}; choose another address with {flag(exc.setting)} HOST:PORT "
                f"(or {env_key(exc.setting)}; port 0 picks a free one)"
            )
            return 1
        host, _ = settings.transport.listen_address
        scheme = "TLS" if settings.transport.tls_cert else "plaintext"
        _say(f"gateway listening on {host}:{server.port} ({scheme} gRPC)")
        if server.web is not None:
            _say(f"browser chat: open {server.web_url} (web face: Connect + gRPC-Web, {scheme})")
        if settings.transport.insecure and settings.transport.tls_cert is None:
            _say("gateway: --insecure: serving plaintext on a non-loopback address; put TLS in front of it")
        await stop.wait()
        _say("gateway: draining (health NOT_SERVING), open calls may finish")
        await server.drain()
    _say("gateway: stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="gateway", description="booking-gateway: gRPC gateway for a booking agent")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        parents=[argument_parser(add_help=False)],
        help="serve the gateway (starts the embedded local AWS when no user pool is configured)",
    )
    namespace = parser.parse_args(args)
    try:
        settings = Settings.from_environment(args[1:])
    except ConfigError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    if namespace.command == "serve":
        if settings.transport.workers > 1:
            from gateway.supervisor import supervise

            return asyncio.run(supervise(settings, _say, _with_devstack))
        if settings.transport.event_loop == "uvloop":
            import uvloop

            return uvloop.run(serve(settings))
        return asyncio.run(serve(settings))
    return 2


if __name__ == "__main__":
    sys.exit(main())
