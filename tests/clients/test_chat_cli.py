"""booking-chat end to end: a subprocess driven through its stdin (and once through a pseudo-terminal)."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import stat
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from booking_client import FileSessionStore, connect
from gateway.adapters.dynamodb.guest_store import MAX_ID_TRIES
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.redact import mask_email
from tests.support.auth import gateway_with
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in
from tests.support.interactive import Interactive
from tests.support.ports import refusing_port
from tests.support.processes import GatewayProcess, start_gateway
from tests.support.reservations import days_ahead
from tests.support.sessions import session_from
from tests.support.tcp_cut import CuttableProxy

BOOKING_CHAT = str(Path(sys.executable).parent / "booking-chat")
MAILBOX = re.compile(r"\[dev mailbox\] code for (\S+): (\d{6,8})$")


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[GatewayProcess]:
    """`gateway serve` as a person runs it (what `make run` starts): codes go to its console."""
    gateway = await start_gateway("--log-format", "text")
    try:
        yield gateway
    finally:
        await gateway.stop()


async def console_code(gateway: GatewayProcess, email: str, *, after: int = 0) -> str:
    """The newest code the console shows for `email`, once more than `after` have been shown."""
    masked = mask_email(email)

    def newest() -> str | None:
        codes = [m.group(2) for line in gateway.stdout_lines if (m := MAILBOX.search(line)) and m.group(1) == masked]
        return codes[-1] if len(codes) > after else None

    return await gateway.printed(newest, timeout=10)


async def chat_cli(target: str, session_file: Path, *args: str, terminal: bool = False) -> Interactive:
    return await Interactive.start(
        BOOKING_CHAT, "--target", target, "--session-file", str(session_file), *args, terminal=terminal
    )


async def test_a_saved_session_is_used_and_reservations_are_listed(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    session_file = tmp_path / "config" / "session.json"
    store = FileSessionStore(session_file)
    store.save(session_from(await emulator_sign_in(devstack), email="cli-guest@example.com"))
    async with connect(gateway.target, tls=False, session_store=store) as client:
        booked = await client.create_reservation("garden-cottage", days_ahead(200), days_ahead(203), guests=3)
    cli = await chat_cli(gateway.target, session_file)
    try:
        await cli.expect(r"Signed in as cli-guest@example\.com \(guest GST-TEST-0000\)\.")
        cli.send("/reservations")
        line = await cli.expect(rf"{booked.reservation_id}  Garden Cottage  .*\n")
        assert f"{days_ahead(200).isoformat()} → {days_ahead(203).isoformat()}" in line.group(0)
        assert "3 guests  confirmed" in line.group(0)
        cli.send("/login")
        await cli.expect("Already signed in as cli-guest@example.com")
        cli.send("/frobnicate")
        await cli.expect("Unknown command /frobnicate")
        cli.send("/quit")
        assert await cli.wait() == 0
    finally:
        await cli.stop()
    assert "eyJ" not in cli.output  # no token is ever printed


async def test_a_cancellation_answered_n_is_declined_and_nothing_is_cancelled(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    session_file = tmp_path / "config" / "session.json"
    store = FileSessionStore(session_file)
    store.save(session_from(await emulator_sign_in(devstack), email="cli-decline@example.com"))
    async with connect(gateway.target, tls=False, session_store=store) as client:
        booked = await client.create_reservation("garden-cottage", days_ahead(210), days_ahead(212), guests=2)
    cli = await chat_cli(gateway.target, session_file)
    try:
        await cli.expect(r"Signed in as cli-decline@example\.com")
        cli.send(f"cancel {booked.reservation_id}")
        await cli.expect(rf"Cancel {booked.reservation_id}: Garden Cottage, .*, 2 nights, 2 guests, .*\? \[y/N\]")
        cli.send("")  # Enter alone: the default, No
        await cli.expect(r"  ✗ cancel_reservation: declined: nothing was cancelled")
        await cli.expect(r"agent> OK, I haven't cancelled anything")
        cli.send("/reservations")
        await cli.expect(rf"{booked.reservation_id}  Garden Cottage  .*confirmed")
        cli.send("/quit")
        assert await cli.wait() == 0
    finally:
        await cli.stop()


async def test_not_signed_in_commands_say_so_and_end_of_input_exits(gateway: RunningGateway, tmp_path: Path) -> None:
    cli = await chat_cli(gateway.target, tmp_path / "session.json")
    try:
        await cli.expect(r"booking-chat: gateway 127\.0\.0\.1:\d+ \(plaintext\)\.")
        await cli.expect("Not signed in.")
        cli.send("/reservations")
        await cli.expect(r"Not signed in; /login first")
        cli.send("/logout")
        await cli.expect("Not signed in.")
        cli.send("/login")
        await cli.expect("Email:")
        cli.send("")
        await cli.expect("Sign-in cancelled.")
        cli.close_input()
        assert await cli.wait() == 0
    finally:
        await cli.stop()
    assert not (tmp_path / "session.json").exists()


async def test_an_unsafe_session_file_stops_the_chat_with_a_clear_message(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    session_file = tmp_path / "session.json"
    session_file.write_text('{"format": "booking-gateway-session", "version": 1, "access_token": ')
    os.chmod(session_file, 0o600)
    cli = await chat_cli(gateway.target, session_file)
    try:
        assert await cli.wait() == 2
    finally:
        await cli.stop()
    assert f"session file {session_file} is corrupt" in cli.output
    assert "Delete it and sign in again." in cli.output


async def test_an_address_where_nothing_listens_is_reported_at_once_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A refused connection is known at once: the minute of --connect-timeout is not waited out.
    cli = await chat_cli(f"127.0.0.1:{port}", tmp_path / "session.json", "--connect-timeout", "60")
    try:
        assert await cli.wait(timeout=10) == 1
    finally:
        await cli.stop()
    assert f"cannot reach the gateway at 127.0.0.1:{port} (nothing answers at that address)" in cli.output
    assert "make run" in cli.output
    assert "--target HOST:PORT" in cli.output


async def test_a_gateway_whose_upstream_is_down_is_not_reported_as_unreachable_and_an_unreachable_one_is(
    gateway: RunningGateway, settings: Settings, tmp_path: Path
) -> None:
    with refusing_port() as port:
        no_cognito = dataclasses.replace(
            gateway.devstack.endpoints.target, cognito_endpoint_url=f"http://127.0.0.1:{port}"
        )
        async with gateway_with(gateway, settings, target=no_cognito) as cut_off:
            async with CuttableProxy(cut_off.server.port) as proxy:
                cli = await chat_cli(proxy.target, tmp_path / "session.json")
                try:
                    await cli.expect("Not signed in.")
                    cli.send("/login")
                    await cli.expect("Email:")
                    cli.send("upstream-down@example.com")
                    said = await cli.expect(r"! .*\(UPSTREAM_UNAVAILABLE\) — try again in \d+ s\.\n")
                    assert "cannot reach" not in cli.output
                    assert "make run" not in cli.output
                except BaseException:
                    await cli.stop()
                    raise
            # The proxy is closed: nothing listens at the address booking-chat uses now.
            try:
                cli.send("hello")
                await cli.expect(rf"! cannot reach the gateway at {re.escape(proxy.target)}: ")
                cli.close_input()
                assert await cli.wait() == 0
            finally:
                await cli.stop()
    assert "[UPSTREAM_UNAVAILABLE" not in said.group(0)  # the reason and delay are said once, not repeated


async def test_on_a_terminal_it_prompts_and_quits(gateway: RunningGateway, tmp_path: Path) -> None:
    cli = await chat_cli(gateway.target, tmp_path / "session.json", terminal=True)
    try:
        await cli.expect("Not signed in.")
        await cli.expect("you> ")
        cli.send("/help")
        await cli.expect("Commands: /login")
        await cli.expect("you> ")
        cli.send(f"what's available {days_ahead(450).isoformat()} to {days_ahead(451).isoformat()}?")
        # While the tool runs the terminal shows "  … check_availability"; the result line replaces it.
        await cli.expect(r"\r\x1b\[K  ✓ check_availability: ")
        await cli.expect(r"agent> For 1 nights? from ")
        await cli.expect("you> ")
        cli.send("/quit")
        assert await cli.wait() == 0
    finally:
        await cli.stop()


async def test_login_counts_attempts_grammatically_and_never_asks_for_a_dead_code_again(
    served: GatewayProcess, tmp_path: Path
) -> None:
    email = f"{uuid.uuid4().hex[:1]}cli-{uuid.uuid4().hex[:8]}@cli.example.com"
    cli = await chat_cli(served.target, tmp_path / "session.json")
    try:
        await cli.expect("Not signed in.")
        cli.send("/login")
        await cli.expect("Email:")
        cli.send(email)
        await cli.expect("Code:")
        code = await console_code(served, email)
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        cli.send(wrong)
        await cli.expect(r"That code is not right \(2 attempts left\)\.")
        cli.send(wrong)
        await cli.expect(r"That code is not right \(1 attempt left\)\.")
        cli.send(wrong)
        await cli.expect(r"That code is not right, and no attempts are left\. Type /login to get a new code\.")
        cli.send("/quit")
        assert await cli.wait() == 0
    finally:
        await cli.stop()
    after = cli.output.split("no attempts are left", 1)[1]
    assert "Code:" not in after
    assert "0 attempts" not in cli.output


async def test_login_with_the_code_from_the_serve_console_is_kept_between_runs_until_logout(
    served: GatewayProcess, tmp_path: Path
) -> None:
    session_file = tmp_path / "booking-gateway" / "session.json"
    email = f"{uuid.uuid4().hex[:1]}cli-{uuid.uuid4().hex[:8]}@cli.example.com"
    cli = await chat_cli(served.target, session_file)
    try:
        await cli.expect("Not signed in.")
        cli.send("/login")
        await cli.expect("Email:")
        cli.send(email)
        await cli.expect(r"A sign-in code was sent to \S+; it works until \d\d:\d\d:\d\d\.")
        await cli.expect(r"the code is printed on its console")
        await cli.expect("Code:")
        code = await console_code(served, email)
        cli.send("0" * len(code) if code != "0" * len(code) else "1" * len(code))
        await cli.expect(r"That code is not right \(2 attempts left\)\.")
        await cli.expect("Code:")
        cli.send(code)
        saved = re.escape(str(session_file))
        await cli.expect(rf"✓ Signed in as {re.escape(email)} \(guest GST-[0-9A-Z-]+\); session saved to {saved}\.")
        cli.send("/reservations")
        await cli.expect("You have no reservations.")
        cli.send("/quit")
        assert await cli.wait() == 0
    finally:
        await cli.stop()
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert code not in cli.output  # a pipe does not echo what was typed, and the program never prints it

    again = await chat_cli(served.target, session_file)
    try:
        await again.expect(rf"Signed in as {re.escape(email)} \(guest GST-")
        again.send("/logout")
        await again.expect(rf"Signed out and {re.escape(str(session_file))} removed\.")
        again.send("/reservations")
        await again.expect("Not signed in; /login first")
        again.close_input()
        assert await again.wait() == 0
    finally:
        await again.stop()
    assert not session_file.exists()


async def test_the_agent_signs_the_user_in_inside_the_chat_and_books(served: GatewayProcess, tmp_path: Path) -> None:
    session_file = tmp_path / "session.json"
    email = f"chat-{uuid.uuid4().hex[:8]}@chat.example.com"
    check_in, check_out = days_ahead(430), days_ahead(433)
    cli = await chat_cli(served.target, session_file)
    try:
        await cli.expect("Not signed in.")
        cli.send(f"what's available {check_in.isoformat()} to {check_out.isoformat()}?")
        await cli.expect(r"  ✓ check_availability: .*Harbor Loft")
        await cli.expect(r"agent> For 3 nights from .* these are free: .*Harbor Loft")
        cli.send("book the Harbor Loft for 2 guests")
        # Free, and its price said, before the sign-in.
        await cli.expect(r"in total\. To book, I need to sign you in\. What are your name and email address\?")
        cli.send(f"Jane Chat, {email}")
        await cli.expect(r"  ✓ start_login: code sent to")
        await cli.expect(r"Please type it here\.")
        cli.send(await console_code(served, email))
        await cli.expect(rf"✓ Signed in as {re.escape(email)} \(guest GST-[0-9A-Z-]+\); session saved to ")
        # The booking is asked for as a decision: the gateway's summary and [y/N].
        await cli.expect(r"Book Harbor Loft, .*, 3 nights, 2 guests, [0-9]+\.[0-9]{2} [A-Z]{3}\? \[y/N\]")
        cli.send("y")
        booked = await cli.expect(r"agent> .*Booked! Your reservation (RES-[0-9A-Z]+): Harbor Loft")
        cli.send("/reservations")
        await cli.expect(
            rf"  {booked.group(1)}  Harbor Loft  {check_in.isoformat()} → {check_out.isoformat()}  2 guests"
        )
        cli.send("/quit")
        assert await cli.wait() == 0
    finally:
        await cli.stop()
    assert FileSessionStore(session_file).load() is not None


async def test_a_sign_in_delivered_without_a_guest_id_names_the_person_without_an_empty_one(
    gateway: RunningGateway, settings: Settings, tmp_path: Path
) -> None:
    """The rare sign-in whose new guest profile the gateway could not store (every try contended at its table):
    the tokens come without a guest id, and the terminal names the person without an empty "(guest )"."""
    target = gateway.devstack.endpoints.target
    email = f"cli-noprofile-{uuid.uuid4().hex[:8]}@cli.example.com"
    async with (
        FaultyDynamo(target.endpoint_url or "") as proxy,
        gateway_with(gateway, settings, target=dataclasses.replace(target, endpoint_url=proxy.url)) as flaky,
    ):
        cli = await chat_cli(flaky.target, tmp_path / "session.json")
        try:
            await cli.expect("Not signed in.")
            cli.send("/login")
            await cli.expect("Email:")
            cli.send(email)
            await cli.expect("Code:")
            proxy.inject("TransactWriteItems", *["cancel_conflict"] * (MAX_ID_TRIES * 3))
            cli.send(await gateway.devstack.mailbox.wait_for_code(email, wait_seconds=30))
            await cli.expect(rf"✓ Signed in as {re.escape(email)}; session saved to ")
            cli.close_input()
            assert await cli.wait() == 0
        finally:
            await cli.stop()
    assert "(guest )" not in cli.output
