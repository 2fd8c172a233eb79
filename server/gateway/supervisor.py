"""`gateway serve --workers N`: N worker processes on one port, under one supervisor.

One Python process uses about one core. Workers bind the same address with SO_REUSEPORT, so the kernel spreads
connections (not calls) across them. The supervisor runs the embedded emulator when no AWS is configured (one
emulator for all workers) and hands each worker its trust in the emulator's signing key down a pipe of its own
(`gateway.devstack.trust`; no variable can grant it), forwards SIGTERM/SIGINT to every worker and waits for them
to drain, and replaces a worker that dies on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from gateway.adapters.aws import AwsTarget
from gateway.config import Settings, parse_host_port

log = logging.getLogger(__name__)

_LISTENING = re.compile(r"gateway listening on ")
# Each worker announces the shared web port too; the supervisor says it once for all of them.
_BROWSER_CHAT = re.compile(r"^browser chat: open ")
Say = Callable[[str], None]
StartDevstack = Callable[[Settings, AsyncExitStack], Awaitable[tuple[Settings, AwsTarget]]]
RESTART_DELAY_SECONDS = 1.0


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket so the port is ours for the workers; port 0 picks one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Worker:
    """One `gateway serve` worker process and the task that relays its console lines."""

    def __init__(self, index: int, process: asyncio.subprocess.Process, ready: asyncio.Event) -> None:
        self.index = index
        self.process = process
        self.ready = ready


class Supervisor:
    """Starts, watches and drains the workers."""

    def __init__(self, settings: Settings, env: dict[str, str], say: Say, *, emulator_url: str | None = None) -> None:
        self.settings = settings
        self.env = env
        self.say = say
        # The embedded emulator this process runs, whose key every worker is handed trust in.
        self.emulator_url = emulator_url
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start_worker(self, index: int) -> Worker:
        env, granted = self.env, None
        if self.emulator_url is not None:
            from gateway.devstack import trust

            granted = trust.grant(self.emulator_url)
            env = {**env, **granted.environment}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "serve",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                pass_fds=granted.pass_fds if granted is not None else (),
            )
        finally:
            if granted is not None:
                granted.close()  # the worker holds its own copy of the pipe
        ready = asyncio.Event()
        worker = Worker(index, process, ready)
        self.workers[index] = worker
        task = asyncio.create_task(self._relay(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return worker

    async def _relay(self, worker: Worker) -> None:
        assert worker.process.stdout is not None
        while line := await worker.process.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if _LISTENING.search(text):
                worker.ready.set()
            elif _BROWSER_CHAT.search(text):
                continue
            else:
                self.say(f"[worker {worker.index}] {text}")
        code = await worker.process.wait()
        if not self.stopping:
            log.error("worker exited; starting a replacement", extra={"worker": worker.index, "exit_code": code})
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            if not self.stopping:
                await self.start_worker(worker.index)

    def signal_all(self, sig: int) -> None:
        for worker in self.workers.values():
            if worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def wait_all(self) -> int:
        codes = [await worker.process.wait() for worker in list(self.workers.values())]
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return 0 if all(code == 0 for code in codes) else 1


async def supervise(settings: Settings, say: Say, start_devstack: StartDevstack) -> int:
    """Run `settings.transport.workers` workers until SIGTERM/SIGINT; return the exit code.

    `start_devstack` starts the embedded emulator in this process when no AWS is configured and returns the
    Settings pointed at it (`gateway.__main__` passes the same function a single process uses).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    supervisor: Supervisor | None = None

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        stop.set()
        if signals_seen > 1 and supervisor is not None:
            supervisor.signal_all(signal.SIGTERM)  # a worker's second signal stops it at once

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    async with AsyncExitStack() as stack:
        env = dict(os.environ)
        emulator_url: str | None = None
        if settings.uses_devstack:
            settings, target = await start_devstack(settings, stack)
            emulator_url = target.endpoint_url
            # The emulator accepts any credentials; the workers use the devstack's dummy ones.
            env["AWS_ACCESS_KEY_ID"] = target.access_key_id or ""
            env["AWS_SECRET_ACCESS_KEY"] = target.secret_access_key or ""
        transport = settings.transport
        host, port = transport.listen_address
        try:
            reserved = _reserve_port(host, port)
        except OSError as exc:
            say(f"gateway: error: cannot listen on {transport.listen}: {exc.strerror}")
            return 1
        stack.callback(reserved.close)
        port = reserved.getsockname()[1]
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        web_listen = transport.web_listen
        if not transport.no_web:
            web_host, web_port = transport.web_listen_address
            try:
                reserved_web = _reserve_port(web_host, web_port)
            except OSError as exc:
                say(f"gateway: error: cannot listen on {transport.web_listen} (web face): {exc.strerror}")
                return 1
            stack.callback(reserved_web.close)
            web_port = reserved_web.getsockname()[1]
            web_listen = f"[{web_host}]:{web_port}" if ":" in web_host else f"{web_host}:{web_port}"
        worker_settings = settings.replace(listen=listen, web_listen=web_listen, workers=1, reuse_port=True)
        env.update(worker_settings.to_environment())
        supervisor = Supervisor(worker_settings, env, say, emulator_url=emulator_url)
        workers = [await supervisor.start_worker(index) for index in range(transport.workers)]
        ready: asyncio.Future[list[bool]] = asyncio.gather(*(worker.ready.wait() for worker in workers))
        stopped: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
        waiters: list[asyncio.Future[Any]] = [ready, stopped]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            scheme = "TLS" if transport.tls_cert else "plaintext"
            say(f"gateway listening on {host}:{port} ({scheme} gRPC, {transport.workers} workers)")
            if not transport.no_web:
                web_host, web_port = parse_host_port(web_listen)
                shown = f"[{web_host}]" if ":" in web_host else web_host
                url = f"{'https' if transport.tls_cert else 'http'}://{shown}:{web_port}/"
                say(f"browser chat: open {url} (web face: Connect + gRPC-Web, {scheme})")
            await stop.wait()
        stopped.cancel()
        ready.cancel()
        supervisor.stopping = True
        say("gateway: draining all workers")
        supervisor.signal_all(signal.SIGTERM)
        code = await supervisor.wait_all()
    say("gateway: stopped")
    return code
