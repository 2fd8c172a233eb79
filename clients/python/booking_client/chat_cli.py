"""booking-chat: talk to the booking agent from a terminal.

    booking-chat                         # the gateway of `make run` on 127.0.0.1:50051, plaintext on loopback
    booking-chat --target gw.example.com:443 --root-certs ca.pem

The agent's text streams as it arrives; tool activity shows as one short line per tool. The sign-in is kept
between runs in a session file (see `--session-file`); commands: /login, /logout, /reservations, /new, /help,
/quit. Input is read line by line, so a script can drive it through a pipe, and a terminal works too.

Ctrl-C while the agent answers stops the answer (the turn is cancelled in the gateway, CancelTurn) and returns
to the prompt (at once while reconnecting, saying so when the gateway could not be told); Ctrl-C at the prompt,
or Ctrl-D, quits. A dropped connection shows one "reconnecting…" line and
the answer carries on where it was (turns run with keep_running and resume on their own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import math
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from booking.v1 import reservations_pb2
from booking_client._errors import (
    CallError,
    FailedPrecondition,
    InvalidArgument,
    RateLimited,
    SessionFileError,
    Unauthenticated,
    Unavailable,
)
from booking_client._events import (
    ChatEvent,
    DeliveryExpired,
    Reconnecting,
    SignedIn,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)
from booking_client.client import BookingClient, connect
from booking_client.session import FileSessionStore, MemorySessionStore, Session, SessionStore, default_session_path

DEFAULT_TARGET = "127.0.0.1:50051"
# The exit status of a chat quit with Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT = 130
TARGET_ENV = "BOOKING_GATEWAY_TARGET"
CONNECT_WAIT_SECONDS = 10.0
HELP = "Commands: /login, /logout, /reservations, /new (a new conversation), /help, /quit."
_STATUS_NAMES = {
    reservations_pb2.RESERVATION_STATUS_CONFIRMED: "confirmed",
    reservations_pb2.RESERVATION_STATUS_CANCELLED: "cancelled",
}


def is_loopback(target: str) -> bool:
    """True when `target` ("host:port", "[v6]:port") names this machine."""
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 or target.startswith("[") else target
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Lines:
    """Lines from a text stream, read by a daemon thread: a pending read never keeps the process alive."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, name="booking-chat-stdin", daemon=True).start()

    def _pump(self) -> None:
        try:
            for line in self._stream:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        except (RuntimeError, ValueError, OSError):
            return  # the loop is gone (we are exiting) or stdin was closed

    async def read(self) -> str | None:
        """The next line without its line ending, or None at end of input."""
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)  # stay at end of input for later reads
            return None
        return line.rstrip("\r\n")


class Console:
    """Output that knows whether the cursor is at the start of a line, and prompts that suit a terminal or a pipe."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self._out = out
        self.interactive = interactive
        self._at_line_start = True

    def write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._at_line_start = text.endswith("\n")

    def line(self, text: str = "") -> None:
        """Print `text` on a line of its own."""
        self.end_line()
        self.write(text + "\n")

    def end_line(self) -> None:
        if not self._at_line_start:
            self.write("\n")

    def clear_line(self) -> None:
        """Erase the current line of a terminal (a status line about to be replaced)."""
        self.write("\r\x1b[K")
        self._at_line_start = True

    def prompt(self, text: str) -> None:
        """A prompt: left open for typing on a terminal, a whole line on a pipe (so a script can wait for it)."""
        self.end_line()
        self.write(text if self.interactive else text.rstrip() + "\n")
        self._at_line_start = True


def _money(cents: int, currency: str) -> str:
    """The gateway's money format (the agent's text, approval summaries): "945.00 USD"."""
    sign, whole = ("-", -cents) if cents < 0 else ("", cents)
    return f"{sign}{whole // 100}.{whole % 100:02d} {currency}"


def _try_again(error: CallError) -> str:
    """When to try again: after the gateway's RetryInfo delay (whole seconds, at least 1) when it gave one."""
    if error.retry_after_seconds is None:
        return "try again later"
    return f"try again in {max(math.ceil(error.retry_after_seconds), 1)} s"


def _local_time(moment: datetime.datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def _who(session: Session) -> str:
    """The person a session signs in, for a line: their email, and their guest id when the gateway gave one (a
    sign-in whose profile the gateway could not store yet comes without)."""
    return f"{session.email} (guest {session.guest_id})" if session.guest_id else session.email


class ChatApp:
    """The terminal chat: one client, one conversation, commands."""

    def __init__(
        self,
        client: BookingClient,
        console: Console,
        lines: Lines,
        *,
        target: str,
        tls: bool,
        session_file: Path | None,
    ) -> None:
        self.client = client
        self.console = console
        self.lines = lines
        self.target = target
        self.tls = tls
        self.session_file = session_file
        self._answer: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop: asyncio.Task[bool] | None = None
        self._quit: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def interrupt(self) -> None:
        """Ctrl-C: stop the answer being written, or quit when there is none (or it is already stopping)."""
        answer = self._answer
        if answer is not None and not answer.done() and not self._stopping:
            self._stopping = True
            self._stop = asyncio.get_running_loop().create_task(self._stop_answer(answer))
        elif not self._quit.done():
            self._quit.set_result(None)

    async def _stop_answer(self, answer: asyncio.Task[None]) -> bool:
        """Stop `answer`: cancel its turn in the gateway (CancelTurn) and, when the stream is down or the cancel
        fails, stop reading at once. False when the gateway could not be told (the turn may still run there)."""
        # Created before the answer is cancelled, so it runs first: leaving the stream sends no second CancelTurn.
        cancelling = asyncio.ensure_future(self.client.cancel())
        if self.client.reconnecting:
            answer.cancel()  # the stream is down: stop resuming now, whatever becomes of the cancel
        try:
            if await cancelling:
                return True  # a live stream ends with TurnComplete(CANCELLED)
        except CallError:
            answer.cancel()
            return False
        answer.cancel()  # no kept turn to cancel yet: leaving the stream stops the turn
        return True

    async def _stopped(self) -> bool:
        """After an answer: say when its stop did not reach the gateway. False when Ctrl-C asked to quit first."""
        stop, self._stop = self._stop, None
        if stop is None:
            return True
        if not await self._until_quit(stop):
            stop.cancel()
            return False
        if not stop.result():
            self.console.line(
                "(the gateway could not be reached to stop the answer: the turn may still be running there, "
                "and ends by itself)"
            )
        return True

    async def _until_quit(self, awaitable: asyncio.Future[Any]) -> bool:
        """Wait for `awaitable`; False when Ctrl-C asked to quit first."""
        waiting: set[asyncio.Future[Any]] = {awaitable, self._quit}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        return awaitable in done

    async def ask(self, prompt: str) -> str | None:
        self.console.prompt(prompt)
        answer = await self.lines.read()
        return None if answer is None else answer.strip()

    def greet(self) -> None:
        mode = "TLS" if self.tls else "plaintext"
        self.console.line(f"booking-chat: gateway {self.target} ({mode}).")
        self.say_who()
        self.console.line(HELP)

    def say_who(self) -> None:
        session = self.client.session
        if session is None:
            self.console.line(
                "Not signed in. Ask about availability; to book, the agent asks for your email (or /login)."
            )
        else:
            self.console.line(f"Signed in as {_who(session)}.")

    def _signed_in_line(self, session: Session) -> None:
        where = f"; session saved to {self.session_file}" if self.session_file else ""
        self.console.line(f"✓ Signed in as {_who(session)}{where}.")

    async def run(self) -> int:
        self.greet()
        while True:
            if self.console.interactive:
                self.console.prompt("you> ")
            reading = asyncio.ensure_future(self.lines.read())
            if not await self._until_quit(reading):
                reading.cancel()
                self.console.end_line()
                return INTERRUPTED_EXIT
            text = reading.result()
            if text is None:
                self.console.end_line()
                return 0
            text = text.strip()
            if not text:
                continue
            was_signed_in = self.client.signed_in
            try:
                if text.startswith("/"):
                    if not await self.command(text):
                        return 0
                else:
                    self._stopping = False
                    answer = self._answer = asyncio.ensure_future(self.turn(text))
                    if not await self._until_quit(answer):
                        answer.cancel()
                        with contextlib.suppress(asyncio.CancelledError, CallError):
                            await answer
                        self.console.end_line()
                        return INTERRUPTED_EXIT
                    try:
                        answer.result()
                    except asyncio.CancelledError:
                        self.console.line("(stopped)")
            except CallError as error:
                self.report(error)
            if not await self._stopped():
                self.console.end_line()
                return INTERRUPTED_EXIT
            if was_signed_in and not self.client.signed_in and text != "/logout":
                self.console.line("You are signed out now (the session expired or was signed out elsewhere).")

    def report(self, error: CallError) -> None:
        if isinstance(error, Unavailable) and not error.reason:
            # No ErrorInfo: the gateway did not answer (it always gives a reason); the network or grpc said this.
            said = "make run" in error.message  # the client already says how to start it
            hint = " Is it running? (`make run`)" if is_loopback(self.target) and not said else ""
            self.console.line(f"! cannot reach the gateway at {self.target}: {error.message}.{hint}")
        elif isinstance(error, Unavailable):
            # The gateway answered: what it depends on (Cognito, the table, the model, its signing keys) is down,
            # or it is shutting down.
            self.console.line(f"! {error.message} ({error.reason}) — {_try_again(error)}.")
        elif isinstance(error, RateLimited) and error.retry_after_seconds is not None:
            self.console.line(f"! {error.message} — {_try_again(error)}.")
        else:
            reason = f" ({error.reason})" if error.reason else ""
            self.console.line(f"! {error.message}{reason}")

    async def turn(self, message: str) -> None:
        """One message, then the approvals its turn asks for: each summary with `[y/N]`, answered as a decision."""
        await self._show(self.client.chat(message))
        while (approval := self.client.pending_approval) is not None:
            answer = await self.ask(f"{approval.summary}? [y/N] ")
            if answer is None:
                return  # end of input: the approval stays pending until it expires
            if answer.lower() in ("y", "yes"):
                await self._show(self.client.approve(approval.approval_id))
            else:
                await self._show(self.client.decline(approval.approval_id))

    async def _show(self, events: AsyncIterator[ChatEvent]) -> None:
        console = self.console
        in_text = False
        pending_tool: str | None = None  # a terminal shows "  … name" while a tool runs, replaced when it ends

        def settle() -> None:
            nonlocal pending_tool
            if pending_tool is not None:
                console.clear_line()
                pending_tool = None

        try:
            async for event in events:
                if isinstance(event, Reconnecting):
                    if event.attempt == 1:
                        settle()
                        in_text = False
                        console.line("reconnecting…")
                    continue
                if isinstance(event, TextDelta):
                    settle()
                    if not in_text:
                        console.end_line()
                        console.write("agent> ")
                        in_text = True
                    console.write(event.text)
                elif isinstance(event, ToolCallStarted):
                    settle()
                    in_text = False
                    console.end_line()
                    if console.interactive:
                        console.write(f"  … {event.name}")
                        pending_tool = event.call_id
                elif isinstance(event, ToolCallFinished):
                    settle()
                    in_text = False
                    mark = "✓" if event.ok else "✗"
                    summary = f": {event.summary}" if event.summary else ""
                    console.line(f"  {mark} {event.name}{summary}")
                elif isinstance(event, SignedIn):
                    settle()
                    in_text = False
                    self._signed_in_line(event.session)
                elif isinstance(event, DeliveryExpired):
                    settle()
                    in_text = False
                    console.line("(a sign-in of this chat can no longer be delivered: /login to sign in again)")
                elif isinstance(event, TurnComplete):
                    settle()
                    console.end_line()
                    if event.stop_reason == "CANCELLED":
                        console.line("(stopped)")
                    elif event.stop_reason not in ("END_TURN", "AWAITING_APPROVAL"):
                        console.line(f"(the agent stopped early: {event.stop_reason})")
        finally:
            settle()
            console.end_line()

    async def command(self, text: str) -> bool:
        """Run a /command; False means quit."""
        name = text.split()[0].lower()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.console.line(HELP)
        elif name == "/login":
            await self.login()
        elif name == "/logout":
            await self.logout()
        elif name == "/reservations":
            await self.reservations()
        elif name == "/new":
            self.client.new_chat()
            self.console.line("New conversation.")
        else:
            self.console.line(f"Unknown command {name}. {HELP}")
        return True

    async def login(self) -> None:
        if self.client.session is not None:
            self.console.line(f"Already signed in as {self.client.session.email}; /logout first to switch.")
            return
        email = await self.ask("Email: ")
        if not email:
            self.console.line("Sign-in cancelled.")
            return
        try:
            challenge = await self.client.initiate_login(email)
        except InvalidArgument as error:
            self.console.line(f"! {error.message}")
            return
        self.console.line(
            f"A sign-in code was sent to {challenge.destination}; it works until {_local_time(challenge.expires_at)}."
        )
        if is_loopback(self.target):
            self.console.line(
                "Local gateway: the code is printed on its console, like `[dev mailbox] code for j***@example.com: …`."
            )
        while True:
            code = await self.ask("Code: ")
            if not code:
                self.console.line("Sign-in cancelled.")
                return
            try:
                session = await self.client.verify_otp(challenge.login_id, code.replace(" ", ""))
            except Unauthenticated as error:
                left = error.metadata.get("attempts_left", "")
                if left == "0":
                    # The sign-in is dead: asking for its code again would only fail.
                    self.console.line(
                        "That code is not right, and no attempts are left. Type /login to get a new code."
                    )
                    return
                count = f" ({left} attempt{'' if left == '1' else 's'} left)" if left.isdigit() else ""
                self.console.line(f"That code is not right{count}.")
                continue
            except InvalidArgument:
                self.console.line("A code is 6 to 8 digits.")
                continue
            except FailedPrecondition as error:
                self.console.line(f"! {error.message} ({error.reason}). Type /login to get a new code.")
                return
            self._signed_in_line(session)
            return

    async def logout(self) -> None:
        if not self.client.signed_in:
            self.console.line("Not signed in.")
            return
        try:
            await self.client.sign_out()
        finally:
            removed = f" and {self.session_file} removed" if self.session_file else ""
            self.console.line(f"Signed out{removed}.")

    async def reservations(self) -> None:
        if not self.client.signed_in:
            self.console.line("Not signed in; /login first (or ask the agent to book something).")
            return
        page = await self.client.list_reservations(page_size=20)
        if not page.reservations:
            self.console.line("You have no reservations.")
            return
        self.console.line("Your reservations, newest first:")
        for item in page.reservations:
            status = _STATUS_NAMES.get(item.status, "unknown")
            guests = f"{item.guests} guest{'s' if item.guests != 1 else ''}"
            self.console.line(
                f"  {item.reservation_id}  {item.property_name}  {item.check_in} → {item.check_out}  "
                f"{guests}  {status}  {_money(item.total_cents, item.currency)}"
            )
        if page.next_page_token:
            self.console.line("  (older reservations not shown)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="booking-chat", description="Talk to the booking agent of a booking gateway from a terminal."
    )
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"the gateway's gRPC address, host:port (env {TARGET_ENV}; default {DEFAULT_TARGET})",
    )
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--tls", dest="tls", action="store_true", default=None, help="use TLS (default off loopback)")
    security.add_argument(
        "--plaintext", dest="tls", action="store_false", help="no TLS (default on loopback, as `make run` serves)"
    )
    parser.add_argument("--root-certs", type=Path, help="PEM file of the CA certificates to trust (implies --tls)")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--session-file",
        type=Path,
        help=f"where to keep the sign-in between runs (env BOOKING_SESSION_FILE; default {default_session_path()})",
    )
    store.add_argument("--no-session-file", action="store_true", help="keep the sign-in in memory for this run only")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_WAIT_SECONDS,
        help=(
            f"seconds to wait for a connection at start (default {CONNECT_WAIT_SECONDS:g}); an address where nothing "
            "listens is reported at once"
        ),
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    tls = args.tls if args.tls is not None else (args.root_certs is not None or not is_loopback(args.target))
    if args.root_certs is not None and not tls:
        stdout.write("booking-chat: --root-certs needs TLS\n")
        return 2
    session_file: Path | None = None
    store: SessionStore
    if args.no_session_file:
        store = MemorySessionStore()
    else:
        session_file = args.session_file or default_session_path()
        store = FileSessionStore(session_file)
    console = Console(stdout, interactive=stdin.isatty())
    try:
        client = connect(
            args.target,
            tls=tls,
            root_certificates=args.root_certs.read_bytes() if args.root_certs else None,
            session_store=store,
        )
    except SessionFileError as error:
        console.line(f"booking-chat: {error}")
        return 2
    async with client:
        app = ChatApp(client, console, Lines(stdin), target=args.target, tls=tls, session_file=session_file)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Ctrl-C stops an answer instead of quitting (where signals can be handled: the main thread, POSIX).
            loop.add_signal_handler(signal.SIGINT, app.interrupt)
        try:
            await client.wait_until_ready(args.connect_timeout)
        except Unavailable as error:
            console.line(
                f"booking-chat: cannot reach the gateway at {args.target} ({error.message}). Start it with `make run` "
                "in the booking-gateway checkout, or point booking-chat at it with --target HOST:PORT "
                f"(or {TARGET_ENV})."
            )
            return 1
        return await app.run()


def main(argv: Sequence[str] | None = None) -> int:
    """The `booking-chat` command."""
    args = parse_args(argv)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    try:
        return asyncio.run(run(args, sys.stdin, sys.stdout))
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
