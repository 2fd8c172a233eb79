"""SIGTERM with 100 chat streams open on a `gateway serve` subprocess, every turn mid-flight, on either face.

Health turns NOT_SERVING before anything is cut, every stream ends with TurnComplete or a clean status (never a
connection that just ends), the process exits 0 without logging anything at ERROR or a traceback (on the web face
too: the streams it cuts are ended from inside, not cancelled by uvicorn), and nothing is half-written: each
booking is whole (reservation and every night's lock) or absent, and every session goes on at once on another
gateway, its interrupted turn recorded.

The web face is spoken by hand (Connect protocol, 5-byte envelopes over aiohttp), as browsers' connect-web
does; connectrpc's Python client is not used (it can crash the interpreter at exit on 3.11).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2

from booking.v1 import chat_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.testing import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes
from gateway.transport.pipeline import REQUEST_ID_HEADER
from tests.scaleout.replicas import access_log, count_by, json_logs, start_replica
from tests.support.calls import NOT_SERVING, SERVING, health_watch, trailers
from tests.support.chat import Turn, chat, decision, stub
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.processes import GatewayProcess
from tests.support.reservations import create_property, days_ahead, guest_items, new_request_id, night_locks
from tests.support.status import STATUS_DETAILS_KEY, error_info

pytestmark = pytest.mark.slow

# 20 bookings and 60 greetings are short turns (a few seconds of typing) that finish within the grace period;
# 20 long replies (a guest's many reservations, read out word by word) are still going when it ends.
BOOKINGS = 20
GREETINGS = 60
LONG_REPLIES = 20
STREAMS = BOOKINGS + GREETINGS + LONG_REPLIES
BOOKING_GUESTS = 4
LONG_GUEST_RESERVATIONS = 15
CHANNELS = 4
DELTA_DELAY_MS = 60.0
# Words are merged into a message every half second: the turns take as long, with far fewer messages to send.
FLUSH_INTERVAL_MS = 500.0
DRAIN_DELAY_SECONDS = 1.0
GRACE_SECONDS = 8.0
# A turn's lease outlives its time bound (and the call's deadline) by 10 s. With these bounds a lease left behind
# by the drain would hold its session far longer than a follow-up turn below may wait.
CALL_TIMEOUT_SECONDS = 120.0
FOLLOW_UP_DEADLINE_SECONDS = 30.0
# The emulator in the test process can be slow on a loaded machine; that is not what this test is about.
AWS_TIMEOUT_SECONDS = 30.0
# How a stream still open when the grace period ends is told, on each face: grpc core's status in the trailers
# (a broken connection reads "Socket closed" or "Connection reset"); connectrpc's end-of-stream message with a
# "canceled" error (a broken connection has no end-of-stream message).
CUT_AT_GRACE_END = {
    "grpc": (grpc.StatusCode.UNAVAILABLE, "Cancelling all calls", ""),
    "web": (grpc.StatusCode.CANCELLED, "Request was cancelled", ""),
}
# Also clean, should the emulator fail a call anyway: the gateway's own status with its ErrorInfo.
UPSTREAM_FAILED = (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")


@dataclass
class Stream:
    """One chat stream of the test and how it ended."""

    number: int
    message: str
    request_id: str
    guest: Tokens | None = None
    stay: tuple[datetime.date, datetime.date] | None = None
    # What the stream sends: a decision for a booking held beforehand, else `message`.
    request: chat_pb2.ChatRequest | None = None
    events: list[chat_pb2.ChatEvent] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    code: grpc.StatusCode | None = None
    details: str = ""
    reason: str = ""

    @property
    def completed(self) -> bool:
        return self.code is grpc.StatusCode.OK and Turn(self.events).kinds[-1] == "turn_complete"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.guest.bearer() if self.guest is not None else ()

    async def run_grpc(self, channel: aio.Channel) -> None:
        call = stub(channel).Chat(
            self.request or chat_pb2.ChatRequest(message=self.message),
            metadata=(*self.metadata, (REQUEST_ID_HEADER, self.request_id)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        try:
            async for response in call:
                self.events.append(response.event)
                self.started.set()
            self.code = grpc.StatusCode.OK
        except aio.AioRpcError as error:
            self.code, self.details = error.code(), error.details() or ""
            if any(key == STATUS_DETAILS_KEY for key, _ in trailers(error)):
                self.reason = error_info(error).reason

    async def run_web(self, http: aiohttp.ClientSession, web_url: str) -> None:
        """The Chat call over Connect: enveloped messages, then an end-of-stream message with the status."""
        body = (self.request or chat_pb2.ChatRequest(message=self.message)).SerializeToString()
        headers = {
            **CONNECT_STREAM_HEADERS,
            "connect-timeout-ms": str(int(CALL_TIMEOUT_SECONDS * 1000)),
            REQUEST_ID_HEADER: self.request_id,
            **dict(self.metadata),
        }
        try:
            async with http.post(
                f"{web_url}/booking.v1.ChatService/Chat", data=envelope(body), headers=headers
            ) as response:
                assert response.status == 200, response.status
                async for flags, payload in envelopes(response.content):
                    if flags & END_STREAM:
                        self._end_of_stream(json.loads(payload))
                        return
                    self.events.append(chat_pb2.ChatResponse.FromString(payload).event)
                    self.started.set()
            self.details = "the connection ended without an end-of-stream message"
        except aiohttp.ClientError as error:
            self.details = f"the connection broke: {error!r}"

    def _end_of_stream(self, end: dict[str, object]) -> None:
        error = end.get("error")
        if not isinstance(error, dict):
            self.code = grpc.StatusCode.OK
            return
        code = str(error["code"]).upper()
        self.code = grpc.StatusCode["CANCELLED" if code == "CANCELED" else code]
        self.details = str(error.get("message", ""))
        for detail in error.get("details", []):
            if detail.get("type") == "google.rpc.ErrorInfo":
                value = detail["value"] + "=" * (-len(detail["value"]) % 4)
                self.reason = error_details_pb2.ErrorInfo.FromString(base64.b64decode(value)).reason

    @property
    def outcome(self) -> tuple[grpc.StatusCode | None, str, str]:
        if self.code is grpc.StatusCode.OK:
            return self.code, "", ""
        return self.code, self.details, self.reason


def _sub(tokens: Tokens) -> str:
    # Only to find the guest's partition in the table; the gateway verified the token when it booked.
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    return str(claims["sub"])


async def _streams(gateway: RunningGateway, aws: AwsClients, table: str) -> tuple[list[Stream], str]:
    """The hundred streams of the test, and the property the booking streams book."""
    run = uuid.uuid4().hex[:8]
    prop = await create_property(aws.dynamodb, table, name=f"Studio {run}")
    *guests, reader = await asyncio.gather(*(emulator_sign_in(gateway.devstack) for _ in range(BOOKING_GUESTS + 1)))
    # A guest with many reservations, whose list takes the scripted model long to read out.
    shelf = await create_property(aws.dynamodb, table, name=f"Shelf {run}")
    reservations = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    await asyncio.gather(
        *(
            reservations.CreateReservation(
                reservations_pb2.CreateReservationRequest(
                    property_id=shelf.property_id,
                    check_in=days_ahead(100 + 2 * n).isoformat(),
                    check_out=days_ahead(101 + 2 * n).isoformat(),
                    guests=1,
                    request_id=new_request_id(),
                ),
                metadata=reader.bearer(),
                timeout=60,
            )
            for n in range(LONG_GUEST_RESERVATIONS)
        )
    )
    # Each booking waits for its guest's approval (asked here, beforehand); the stream sends the decision, which
    # books while the gateway drains.
    bookings = [(days_ahead(120 + 3 * n), days_ahead(122 + 3 * n), guests[n % BOOKING_GUESTS]) for n in range(BOOKINGS)]
    held = await asyncio.gather(
        *(
            chat(
                gateway.channel, f"book the {prop.name} for 2 guests {a.isoformat()} to {b.isoformat()}", "", g.bearer()
            )
            for a, b, g in bookings
        )
    )
    streams: list[Stream] = []
    for n in range(STREAMS):
        request_id = f"drain-{run}-{n}"
        if n < BOOKINGS:
            # Stays of their own, so that every booking can succeed and each lock names one request.
            check_in, check_out, guest = bookings[n]
            approval = held[n].approval
            assert approval is not None, held[n].kinds
            request = decision(held[n].session_id, approval.approval_id, approve=True)
            streams.append(Stream(n, "", request_id, guest, (check_in, check_out), request))
        elif n < BOOKINGS + GREETINGS:
            streams.append(Stream(n, "hello", request_id))
        else:
            streams.append(Stream(n, "what are my reservations?", request_id, reader))
    return streams, prop.property_id


async def _whole_bookings(aws: AwsClients, table: str, property_id: str, streams: list[Stream]) -> tuple[int, int]:
    """Check that every booking is whole or absent; return (confirmed on a stream, found in the table)."""
    guests = {s.guest.access_token: s.guest for s in streams if s.stay is not None and s.guest is not None}
    reservations: dict[str, tuple[datetime.date, datetime.date]] = {}
    for guest in guests.values():
        for item in await guest_items(aws.dynamodb, table, _sub(guest)):
            if item["SK"]["S"].startswith("RES#") and item["property_id"]["S"] == property_id:
                reservations[item["reservation_id"]["S"]] = (
                    datetime.date.fromisoformat(item["check_in"]["S"]),
                    datetime.date.fromisoformat(item["check_out"]["S"]),
                )
    # Every lock belongs to a reservation, and every reservation holds all its nights.
    expected_locks: dict[datetime.date, str] = {}
    for reservation_id, (check_in, check_out) in reservations.items():
        for offset in range((check_out - check_in).days):
            expected_locks[check_in + datetime.timedelta(days=offset)] = reservation_id
    assert await night_locks(aws.dynamodb, table, property_id) == expected_locks
    # Each reservation is one a stream asked for, booked once; each booking a stream confirmed is there.
    asked = [s.stay for s in streams if s.stay is not None]
    assert sorted(reservations.values()) == sorted(set(reservations.values()))
    assert set(reservations.values()) <= set(asked)
    confirmed = {s.stay for s in streams if any(t.name == "create_reservation" and t.ok for t in Turn(s.events).tools)}
    assert confirmed <= set(reservations.values())
    return len(confirmed), len(reservations)


@pytest.fixture
def table(small_table: str) -> str:
    """A table of the test's own: it writes a lot, and the emulator slows down as a table grows."""
    return small_table


@pytest.fixture
async def local(devstack: DevStack, settings: Settings, table: str) -> AsyncIterator[RunningGateway]:
    """An in-process gateway on the test's table: to set up, and to go on with the sessions after the drain."""
    async with running_gateway(devstack, settings.replace(table_name=table)) as running:
        yield running


async def _open_streams(
    face: str, replica: GatewayProcess, streams: list[Stream], order: list[tuple[str, int]]
) -> None:
    """Run every stream on `face` to its end; note in `order` when each ends, and whether it was cut."""
    channels = [aio.insecure_channel(replica.target) for _ in range(CHANNELS)]
    # HTTP/1.1: one connection per open stream, as a browser tab has.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    web_url = await replica.web_url() if face == "web" else ""

    async def run(stream: Stream) -> None:
        try:
            if face == "web":
                await stream.run_web(http, web_url)
            else:
                await stream.run_grpc(channels[stream.number % CHANNELS])
        finally:
            stream.started.set()
            order.append(("cut" if stream.outcome == CUT_AT_GRACE_END[face] else "ended", stream.number))

    try:
        await asyncio.gather(*(run(stream) for stream in streams))
    finally:
        await http.close()
        for channel in channels:
            await channel.close()


@pytest.mark.parametrize("face", ["grpc", "web"])
async def test_sigterm_with_a_hundred_chat_streams_open_drains_cleanly_and_leaves_nothing_half_written(
    face: str, settings: Settings, local: RunningGateway, aws: AwsClients, table: str
) -> None:
    streams, property_id = await _streams(local, aws, table)
    replica = await start_replica(
        settings.replace(
            table_name=table,
            scripted_delta_delay_ms=DELTA_DELAY_MS,
            chat_flush_interval_ms=FLUSH_INTERVAL_MS,
            chat_latency_budget_ms=FLUSH_INTERVAL_MS,
            drain_delay_seconds=DRAIN_DELAY_SECONDS,
            grace_seconds=GRACE_SECONDS,
            aws_timeout_seconds=AWS_TIMEOUT_SECONDS,
        ),
    )
    order: list[tuple[str, int]] = []
    try:
        async with aio.insecure_channel(replica.target) as watch_channel:
            watch = health_watch(watch_channel)
            first = await asyncio.wait_for(watch.read(), 30)
            assert isinstance(first, health_pb2.HealthCheckResponse)
            assert first.status == SERVING
            running = asyncio.create_task(_open_streams(face, replica, streams, order))
            # Every turn has begun (its session is leased) before the signal.
            await asyncio.wait_for(asyncio.gather(*(s.started.wait() for s in streams)), 60)
            open_at_signal = STREAMS - len(order)
            replica.process.send_signal(signal.SIGTERM)
            update = await asyncio.wait_for(watch.read(), 30)
            assert isinstance(update, health_pb2.HealthCheckResponse)
            assert update.status == NOT_SERVING
            order.append(("not_serving", -1))
            watch.cancel()  # an open Watch would hold the server for the whole grace period
            await asyncio.wait_for(running, DRAIN_DELAY_SECONDS + GRACE_SECONDS + 60)
        exit_code = await replica.wait(timeout=60)
    finally:
        await replica.stop()

    completed = [s for s in streams if s.completed]
    cut = [s for s in streams if not s.completed]
    print(
        f"\n{face} face: SIGTERM with {open_at_signal} of {STREAMS} chat streams open: {len(completed)} finished "
        f"their turn within the grace period, {len(cut)} were cut at its end: "
        f"{count_by(f'{s.code.name if s.code else None} {s.details!r} {s.reason}'.strip() for s in cut)}"
    )
    assert open_at_signal >= LONG_REPLIES

    # The process drained and exited cleanly, and logged nothing alarming on the way: no ERROR line (uvicorn
    # logs one per request it has to cancel itself, with a CancelledError traceback) and no traceback at all.
    assert exit_code == 0
    assert replica.stdout_lines[-1] == "gateway: stopped"
    logs = json_logs(replica)
    assert [e for e in logs if e["level"] in ("ERROR", "CRITICAL")] == []
    assert [e for e in logs if "exception" in e or "Traceback" in e["message"]] == []
    assert [line for line in replica.stderr_lines if not line.startswith("{")] == []

    # Health said NOT_SERVING before any stream was cut.
    first_cut = next((i for i, (what, _) in enumerate(order) if what == "cut"), len(order))
    assert order.index(("not_serving", -1)) < first_cut

    # Every stream finished its turn or ended with a clean status, and the server finished and logged every
    # call itself.
    for stream in cut:
        clean = stream.outcome == CUT_AT_GRACE_END[face] or (stream.code, stream.reason) == UPSTREAM_FAILED
        assert clean, (stream.number, stream.outcome)
    for stream in completed:
        assert Turn(stream.events).complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    logged = access_log(replica)
    assert {s.request_id for s in streams} <= set(logged)
    assert {logged[s.request_id]["code"] for s in streams} <= {"OK", "CANCELLED", "UNAVAILABLE"}
    assert {logged[s.request_id]["face"] for s in streams} == {face}

    confirmed, booked = await _whole_bookings(aws, table, property_id, streams)
    print(f"bookings: {confirmed} confirmed on their stream, {booked} in the table, every one whole")

    # Every cut session (and a sample of the others) goes on at once on another gateway: its lease was released
    # and its turn recorded, and its numbering continues after everything the client saw.
    async def follow_up(stream: Stream) -> None:
        session_id = Turn(stream.events).session_id
        last_seen = max(e.sequence for e in stream.events)
        turn = await chat(local.channel, "thanks", session_id, stream.metadata, timeout=FOLLOW_UP_DEADLINE_SECONDS)
        assert turn.started.resumed
        if stream.completed:
            assert turn.sequences[0] == last_seen + 1
        else:
            assert turn.sequences[0] > last_seen
        assert turn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN

    checked = cut + completed[::4]
    for start in range(0, len(checked), 50):
        await asyncio.gather(*(follow_up(s) for s in checked[start : start + 50]))
