"""The async client: a channel, the generated stubs, the session, and the bearer on every call.

What it does for you (what the seed's web front end did for itself):
- captures `TokenDelivery` from any chat stream and from VerifyOtp, and stores the session in its store;
- sends `authorization: Bearer <access token>` on every call except the sign-in RPCs themselves;
- refreshes the access token when it expires within `refresh_margin`, and once more when the gateway answers
  UNAUTHENTICATED / TOKEN_EXPIRED (then retries the call once);
- forgets the session on sign-out, when the refresh token is refused, and when the gateway says the token's
  session was signed out (TOKEN_REVOKED);
- turns every failed call into a typed `CallError` subclass;
- runs chat turns with `keep_running` (by default): when the stream drops (UNAVAILABLE, a closed connection, the
  deadline), it yields `Reconnecting` and resumes the turn with ResumeChat after a backoff, on whatever address
  of the channel answers, skipping events it already has; `cancel()` stops the running turn (CancelTurn).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc
from grpc import aio

from booking.v1 import auth_pb2, auth_pb2_grpc, chat_pb2, chat_pb2_grpc, reservations_pb2, reservations_pb2_grpc
from booking_client._errors import CallError, NotSignedIn, Unauthenticated, Unavailable, call_error
from booking_client._events import (
    ApprovalRequested,
    ChatEvent,
    DeliveryExpired,
    Reconnecting,
    SessionStarted,
    SignedIn,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
    stop_reason_name,
)
from booking_client._resume import ResumeBackoff, TurnCursor, resumable
from booking_client.session import MemorySessionStore, Session, SessionStore

log = logging.getLogger(__name__)

DEFAULT_REFRESH_MARGIN = datetime.timedelta(seconds=60)
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_CHAT_TIMEOUT_SECONDS = 300.0
# The longest `cancel()` waits for CancelTurn: stopping an answer must not hang on a network that is down.
CANCEL_TIMEOUT_SECONDS = 5.0
# The longest a create_reservation retry waits for the gateway's RetryInfo delay.
MAX_RETRY_WAIT_SECONDS = 5.0

Metadata = tuple[tuple[str, str], ...]
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
DateLike = datetime.date | str


@dataclass(frozen=True)
class LoginChallenge:
    """The answer to InitiateLogin: verify the emailed code with `login_id`."""

    login_id: str
    destination: str
    expires_at: datetime.datetime
    resend_allowed_at: datetime.datetime


def new_request_id() -> str:
    """A fresh CreateReservation request id (the contract allows 8 to 64 of [A-Za-z0-9_-])."""
    return "req-" + secrets.token_urlsafe(18)


def _is_expired_token(error: CallError) -> bool:
    return isinstance(error, Unauthenticated) and error.reason == "TOKEN_EXPIRED"


def call_error_unavailable(cause: str) -> Unavailable:
    """The chat stream could not be resumed."""
    return Unavailable(grpc.StatusCode.UNAVAILABLE, f"the chat stream dropped ({cause}) and could not be resumed")


def _iso(value: DateLike) -> str:
    return value.isoformat() if isinstance(value, datetime.date) else value


class BookingClient:
    """An async client of the booking gateway. Make one with `connect(...)`, use it with `async with`.

    It keeps the chat session id between `chat` calls (one conversation; `new_chat()` starts another) and the
    signed-in session in `session_store` (memory unless you pass a `FileSessionStore`). The store is read once,
    here: a corrupt or unsafe session file raises `SessionFileError` now rather than being used.
    """

    def __init__(
        self,
        channel: aio.Channel,
        *,
        session_store: SessionStore | None = None,
        refresh_margin: datetime.timedelta = DEFAULT_REFRESH_MARGIN,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        chat_timeout: float | None = DEFAULT_CHAT_TIMEOUT_SECONDS,
        owns_channel: bool = False,
        keep_running: bool = True,
        resume_backoff: ResumeBackoff | None = None,
    ) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self._store: SessionStore = session_store if session_store is not None else MemorySessionStore()
        self._session = self._store.load()
        self._refresh_margin = refresh_margin
        self._timeout = timeout
        self._chat_timeout = chat_timeout
        self._refresh_lock = asyncio.Lock()
        self._chat_session_id: str | None = None
        self._keep_running = keep_running
        self._resume_backoff = resume_backoff or ResumeBackoff()
        self._rng = random.Random()
        self._turn: TurnCursor | None = None
        self.reconnecting = False
        self._pending_approval: ApprovalRequested | None = None
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._chat = chat_pb2_grpc.ChatServiceStub(channel)
        self._reservations = reservations_pb2_grpc.ReservationServiceStub(channel)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> BookingClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel if this client opened it. The stored session stays."""
        if self._owns_channel:
            await self._channel.close()

    async def wait_until_ready(self, within_seconds: float) -> None:
        """Wait until the channel is connected. `Unavailable` at once when the address refuses the connection
        (nothing listens there), or when no connection is made within `within_seconds`."""
        channel = self._channel
        try:
            async with asyncio.timeout(within_seconds):
                state = channel.get_state(try_to_connect=True)
                while state is not grpc.ChannelConnectivity.READY:
                    if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                        raise Unavailable(grpc.StatusCode.UNAVAILABLE, "nothing answers at that address")
                    await channel.wait_for_state_change(state)
                    state = channel.get_state(try_to_connect=True)
        except TimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, f"no connection within {within_seconds:g} s") from None

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The signed-in session, or None."""
        return self._session

    @property
    def signed_in(self) -> bool:
        """True when the client holds a session (its access token may be refreshed before the next call)."""
        return self._session is not None

    @property
    def chat_session_id(self) -> str | None:
        """The chat session the next `chat` call continues, or None for a new one."""
        return self._chat_session_id

    def new_chat(self) -> None:
        """Start a new conversation with the next `chat` call."""
        self._chat_session_id = None
        self._pending_approval = None

    def resume_chat(self, session_id: str) -> None:
        """Continue the conversation `session_id` (say, saved from an earlier run) with the next `chat` call."""
        self._chat_session_id = session_id or None

    def _remember(self, session: Session) -> None:
        self._session = session
        self._store.save(session)

    def _forget(self) -> None:
        self._session = None
        self._store.clear()
        # A chat session bound to the person who just left would refuse the next anonymous message.
        self._chat_session_id = None

    # -- bearer and refresh ---------------------------------------------------------------------------------

    async def _usable_session(self) -> Session | None:
        """The session, refreshed first when its access token expires within the margin."""
        session = self._session
        if session is None or not session.expires_within(self._refresh_margin):
            return session
        async with self._refresh_lock:
            session = self._session  # another call may have refreshed while this one waited
            if session is None or not session.expires_within(self._refresh_margin):
                return session
            try:
                return await self._refresh_now(session)
            except Unauthenticated:
                raise  # the refresh token was refused: the session is gone
            except CallError as error:
                if session.expires_within(datetime.timedelta(0)):
                    raise
                log.warning("session refresh failed (%s); using the current access token until it expires", error.code)
                return session

    async def _refresh_now(self, session: Session) -> Session:
        request = auth_pb2.RefreshSessionRequest(refresh_token=session.refresh_token)
        try:
            answer = await self._auth.RefreshSession(request, timeout=self._timeout)
        except aio.AioRpcError as rpc_error:
            error = call_error(rpc_error)
            if isinstance(error, Unauthenticated):
                log.info("refresh token refused (%s); signed out locally", error.reason)
                self._forget()
            raise error from rpc_error
        fresh = session.refreshed(answer)
        self._remember(fresh)
        log.debug("session refreshed for guest %s", fresh.guest_id)
        return fresh

    async def _refresh_after_rejection(self, rejected_access_token: str) -> None:
        async with self._refresh_lock:
            session = self._session
            if session is None or session.access_token != rejected_access_token:
                return  # signed out meanwhile, or another call already refreshed
            await self._refresh_now(session)

    async def _bearer(self) -> tuple[Metadata, str | None]:
        session = await self._usable_session()
        if session is None:
            return (), None
        return (("authorization", f"Bearer {session.access_token}"),), session.access_token

    def _after_failure(self, error: CallError, token: str | None) -> None:
        if token is not None and isinstance(error, Unauthenticated) and error.reason == "TOKEN_REVOKED":
            log.info("the gateway says this session was signed out; forgetting it")
            if self._session is not None and self._session.access_token == token:
                self._forget()

    async def _call(
        self,
        method: aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        authenticated: bool = True,
        deadline_seconds: float | None = None,
    ) -> ResponseT:
        """Call `method` (with the bearer unless not `authenticated`), each attempt within `deadline_seconds` (None:
        the client's timeout), refreshing an expired token once; every failure is raised as a `CallError`."""
        deadline = self._timeout if deadline_seconds is None else deadline_seconds
        retried = False
        while True:
            metadata, token = await self._bearer() if authenticated else ((), None)
            try:
                return await method(request, metadata=metadata, timeout=deadline)
            except aio.AioRpcError as rpc_error:
                error = call_error(rpc_error)
                if not retried and token is not None and _is_expired_token(error):
                    retried = True
                    await self._refresh_after_rejection(token)
                    continue
                self._after_failure(error, token)
                raise error from rpc_error

    # -- chat -----------------------------------------------------------------------------------------------

    @property
    def pending_approval(self) -> ApprovalRequested | None:
        """What the last turn asked the person to approve (answer with `approve` or `decline`), or None."""
        return self._pending_approval

    async def chat(self, message: str, *, keep_running: bool | None = None) -> AsyncIterator[ChatEvent]:
        """Send one message and iterate over the agent's turn as typed events.

        A `SignedIn` event means the tokens were stored and later calls carry the bearer. An
        `ApprovalRequested` event (also kept as `pending_approval`) means the agent wants to book or cancel:
        nothing happens until `approve` or `decline`; a message sent instead withdraws it (no text approves).
        The call is retried once, before any event arrived, after refreshing an expired token, or in a new chat
        session when the gateway no longer knows this one (SESSION_NOT_FOUND). With `keep_running` (the client's
        default) the turn survives a dropped stream: `Reconnecting` is yielded and the turn resumed
        (`reconnecting` is True meanwhile), each event exactly once. Breaking out of the loop stops the turn
        (CancelTurn).
        """
        async for event in self._send(message=message, keep_running=keep_running):
            yield event

    async def approve(self, approval_id: str, *, keep_running: bool | None = None) -> AsyncIterator[ChatEvent]:
        """Approve a pending booking or cancellation: the gateway runs it and the agent's turn goes on (kept and
        resumed like `chat`'s).

        Refusals: `NotFound` (APPROVAL_NOT_FOUND), `FailedPrecondition` (APPROVAL_EXPIRED, APPROVAL_ALREADY_USED).
        """
        decision = chat_pb2.ApprovalDecision(approval_id=approval_id, approve=True)
        async for event in self._send(decision=decision, keep_running=keep_running):
            yield event

    async def decline(self, approval_id: str, *, keep_running: bool | None = None) -> AsyncIterator[ChatEvent]:
        """Decline a pending booking or cancellation: nothing is done, and the agent acknowledges it."""
        decision = chat_pb2.ApprovalDecision(approval_id=approval_id, approve=False)
        async for event in self._send(decision=decision, keep_running=keep_running):
            yield event

    async def _send(
        self,
        *,
        message: str = "",
        decision: chat_pb2.ApprovalDecision | None = None,
        keep_running: bool | None = None,
    ) -> AsyncIterator[ChatEvent]:
        keep = self._keep_running if keep_running is None else keep_running
        retried_auth = retried_session = False
        self._pending_approval = None
        while True:
            metadata, token = await self._bearer()
            request = chat_pb2.ChatRequest(session_id=self._chat_session_id or "", message=message, keep_running=keep)
            if decision is not None:
                request.decision.CopyFrom(decision)
            call = self._chat.Chat(request, metadata=metadata, timeout=self._chat_timeout)
            turn = self._turn = TurnCursor()
            received = False
            try:
                try:
                    async for response in call:
                        received = True
                        event = self._absorb(response.event, turn)
                        if event is not None:
                            yield event
                    if not turn.resumable:
                        return
                    dropped = "the stream ended before the turn did"
                except aio.AioRpcError as rpc_error:
                    if not (turn.resumable and resumable(rpc_error)):
                        raise
                    dropped = rpc_error.code().name
                finally:
                    call.cancel()
                async for event in self._resume_turn(turn, dropped):
                    yield event
                return
            except aio.AioRpcError as rpc_error:
                error = call_error(rpc_error)
                if not received and not retried_auth and token is not None and _is_expired_token(error):
                    retried_auth = True
                    await self._refresh_after_rejection(token)
                    continue
                if (
                    not received
                    and not retried_session
                    and decision is None
                    and request.session_id
                    and error.reason == "SESSION_NOT_FOUND"
                ):
                    retried_session = True
                    self._chat_session_id = None
                    continue
                self._after_failure(error, token)
                raise error from rpc_error
            except (GeneratorExit, asyncio.CancelledError):
                # The caller stopped reading: stop the turn too (a kept turn would otherwise run on), unless
                # cancel() is already doing so.
                if turn.resumable and not turn.cancelling:
                    await self._cancel_quietly(turn)
                raise
            finally:
                self.reconnecting = False

    async def _resume_turn(self, turn: TurnCursor, cause: str) -> AsyncIterator[ChatEvent]:
        """ResumeChat after the last sequence seen, backing off, until the turn's TurnComplete."""
        delays = self._resume_backoff.delays(self._rng)
        attempt = 0
        last_error: aio.AioRpcError | None = None
        while turn.resumable:
            delay = next(delays, None)
            if delay is None:
                self.reconnecting = False
                if last_error is not None:
                    raise last_error
                raise call_error_unavailable(cause)
            attempt += 1
            self.reconnecting = True
            log.info("chat stream dropped (%s); resuming in %.2f s", cause, delay)
            yield Reconnecting(turn.last_sequence, attempt, delay, cause)
            await asyncio.sleep(delay)
            metadata, _ = await self._bearer()
            request = chat_pb2.ResumeChatRequest(
                session_id=turn.session_id, after_sequence=turn.last_sequence, resume_token=turn.resume_token
            )
            call = self._chat.ResumeChat(request, metadata=metadata, timeout=self._chat_timeout)
            try:
                async for response in call:
                    event = self._absorb(response.event, turn)
                    if event is not None:
                        if self.reconnecting:
                            self.reconnecting = False
                            # Progress: a later drop starts its backoff afresh.
                            delays = self._resume_backoff.delays(self._rng)
                            attempt = 0
                        yield event
                cause = "the stream ended before the turn did"
            except aio.AioRpcError as rpc_error:
                if not resumable(rpc_error):
                    raise
                last_error = rpc_error
                cause = rpc_error.code().name
            finally:
                call.cancel()

    async def cancel(self) -> bool:
        """Stop the chat turn running now (CancelTurn, on whichever replica runs it): its stream ends with
        `TurnComplete("CANCELLED")`. False when no kept turn of this client runs.

        Fails like every call, with a `CallError` (`Unavailable` when the gateway cannot be reached), within
        `CANCEL_TIMEOUT_SECONDS` at most: the turn may then still be running in the gateway. While a cancel is
        under way (or once it got through), leaving the turn's stream sends no second CancelTurn.
        """
        turn = self._turn
        if turn is None or not turn.resumable:
            return False
        turn.cancelling = True  # before the first await: the stream may be left while this call is out
        timeout = CANCEL_TIMEOUT_SECONDS if self._timeout is None else min(self._timeout, CANCEL_TIMEOUT_SECONDS)
        request = chat_pb2.CancelTurnRequest(session_id=turn.session_id, resume_token=turn.resume_token)
        answered = False
        try:
            # The whole of it within the limit: a token refresh before the call (or after an expired one) too.
            async with asyncio.timeout(timeout):
                answer = await self._call(self._chat.CancelTurn, request, deadline_seconds=timeout)
            answered = True
        except TimeoutError:
            raise Unavailable(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"the gateway did not answer the cancel within {timeout:g} s"
            ) from None
        finally:
            if not answered:
                # Failed, timed out or itself cancelled: leaving the stream sends CancelTurn again.
                turn.cancelling = False
        return answer.cancelled

    async def _cancel_quietly(self, turn: TurnCursor) -> None:
        try:
            async with asyncio.timeout(2.0):
                await self._chat.CancelTurn(
                    chat_pb2.CancelTurnRequest(session_id=turn.session_id, resume_token=turn.resume_token),
                    timeout=2.0,
                )
        except (aio.AioRpcError, TimeoutError):
            log.info("the abandoned chat turn could not be stopped; it ends by itself")

    def _absorb(self, event: chat_pb2.ChatEvent, turn: TurnCursor | None = None) -> ChatEvent | None:
        sequence = event.sequence
        if turn is not None:
            if turn.last_sequence and sequence <= turn.last_sequence:
                return None  # already seen (a resume overlaps what the dropped stream delivered)
            turn.last_sequence = sequence
        kind = event.WhichOneof("kind")
        if kind == "session_started":
            started = event.session_started
            self._chat_session_id = started.session_id
            if turn is not None:
                turn.session_id = started.session_id
                turn.resume_token = started.resume_token or turn.resume_token
            return SessionStarted(
                sequence, started.session_id, started.resumed, started.authenticated, started.guest_id
            )
        if kind == "token_delivery_expired":
            return DeliveryExpired(sequence, event.token_delivery_expired.guest_id)
        if kind == "text_delta":
            return TextDelta(sequence, event.text_delta.text)
        if kind == "tool_call_started":
            tool = event.tool_call_started
            return ToolCallStarted(sequence, tool.call_id, tool.name)
        if kind == "tool_call_finished":
            done = event.tool_call_finished
            return ToolCallFinished(sequence, done.call_id, done.name, done.ok, done.summary)
        if kind == "token_delivery":
            session = Session.from_token_delivery(event.token_delivery)
            self._remember(session)
            log.info("signed in through the chat as guest %s", session.guest_id)
            return SignedIn(sequence, session)
        if kind == "approval_requested":
            asked = event.approval_requested
            approval = ApprovalRequested(
                sequence, asked.approval_id, asked.tool_name, asked.summary, asked.expires_at.ToDatetime(datetime.UTC)
            )
            self._pending_approval = approval
            return approval
        if kind == "turn_complete":
            complete = event.turn_complete
            if turn is not None:
                turn.done = True
            return TurnComplete(
                sequence,
                stop_reason_name(complete.stop_reason),
                complete.usage.input_tokens,
                complete.usage.output_tokens,
            )
        return None  # an event kind newer than this client

    # -- sign-in --------------------------------------------------------------------------------------------

    async def initiate_login(self, email: str, name: str = "") -> LoginChallenge:
        """Email a one-time code to `email`. Verify it with `verify_otp(challenge.login_id, code)`."""
        answer = await self._call(
            self._auth.InitiateLogin, auth_pb2.InitiateLoginRequest(email=email, name=name), authenticated=False
        )
        return LoginChallenge(
            login_id=answer.login_id,
            destination=answer.destination,
            expires_at=answer.expires_at.ToDatetime(datetime.UTC),
            resend_allowed_at=answer.resend_allowed_at.ToDatetime(datetime.UTC),
        )

    async def verify_otp(self, login_id: str, code: str) -> Session:
        """Exchange the emailed code for tokens; the session is stored and used from now on."""
        answer = await self._call(
            self._auth.VerifyOtp, auth_pb2.VerifyOtpRequest(login_id=login_id, code=code), authenticated=False
        )
        session = Session.from_token_delivery(answer.token_delivery)
        self._remember(session)
        log.info("signed in as guest %s", session.guest_id)
        return session

    async def refresh(self) -> Session:
        """Get a new access token now. A refused refresh token signs out locally and raises `Unauthenticated`."""
        async with self._refresh_lock:
            session = self._session
            if session is None:
                raise NotSignedIn("not signed in: there is no session to refresh")
            return await self._refresh_now(session)

    async def sign_out(self) -> None:
        """Sign out at the gateway (revoking the refresh token) and forget the session, whatever the answer.

        A session the gateway already refuses (expired beyond refresh, revoked) counts as signed out; any other
        failure is raised after the local session is gone, so you know the gateway may not have heard of it.
        """
        try:
            session = await self._usable_session()
            if session is None:
                return
            await self._call(self._auth.SignOut, auth_pb2.SignOutRequest(refresh_token=session.refresh_token))
        except Unauthenticated:
            pass
        finally:
            if self._session is not None:
                log.info("signed out")
            self._forget()

    # -- reservations ---------------------------------------------------------------------------------------

    async def list_properties(self) -> list[reservations_pb2.Property]:
        """Every bookable property."""
        answer = await self._call(self._reservations.ListProperties, reservations_pb2.ListPropertiesRequest())
        return list(answer.properties)

    async def check_availability(
        self, property_id: str, check_in: DateLike, check_out: DateLike, guests: int = 1
    ) -> reservations_pb2.CheckAvailabilityResponse:
        """Which nights of a stay (check-in inclusive, check-out exclusive) are free, and the price."""
        request = reservations_pb2.CheckAvailabilityRequest(
            property_id=property_id, check_in=_iso(check_in), check_out=_iso(check_out), guests=guests
        )
        return await self._call(self._reservations.CheckAvailability, request)

    async def create_reservation(
        self, property_id: str, check_in: DateLike, check_out: DateLike, guests: int, *, request_id: str | None = None
    ) -> reservations_pb2.Reservation:
        """Book a stay. The request id (generated unless given) is reused on retry, so a retry never books twice.

        An UNAVAILABLE answer (the booking may or may not have been written) is retried once with the same id
        after the gateway's RetryInfo delay (at most `MAX_RETRY_WAIT_SECONDS`).
        """
        request = reservations_pb2.CreateReservationRequest(
            property_id=property_id,
            check_in=_iso(check_in),
            check_out=_iso(check_out),
            guests=guests,
            request_id=request_id or new_request_id(),
        )
        try:
            answer = await self._call(self._reservations.CreateReservation, request)
        except Unavailable as error:
            wait = error.retry_after_seconds if error.retry_after_seconds is not None else 0.5
            delay = min(wait, MAX_RETRY_WAIT_SECONDS)
            log.info("CreateReservation unavailable (%s); retrying once in %.1f s", error.reason, delay)
            await asyncio.sleep(delay)
            answer = await self._call(self._reservations.CreateReservation, request)
        return answer.reservation

    async def list_reservations(
        self, page_size: int = 0, page_token: str = ""
    ) -> reservations_pb2.ListReservationsResponse:
        """One page of your reservations, newest first; pass `next_page_token` back for the next page."""
        request = reservations_pb2.ListReservationsRequest(page_size=page_size, page_token=page_token)
        return await self._call(self._reservations.ListReservations, request)

    async def get_reservation(self, reservation_id: str) -> reservations_pb2.Reservation:
        """One of your reservations."""
        request = reservations_pb2.GetReservationRequest(reservation_id=reservation_id)
        return (await self._call(self._reservations.GetReservation, request)).reservation

    async def cancel_reservation(self, reservation_id: str) -> reservations_pb2.Reservation:
        """Cancel one of your reservations (cancelling twice is harmless); returns it, cancelled."""
        request = reservations_pb2.CancelReservationRequest(reservation_id=reservation_id)
        return (await self._call(self._reservations.CancelReservation, request)).reservation


def connect(
    target: str,
    *,
    tls: bool = True,
    root_certificates: bytes | None = None,
    session_store: SessionStore | None = None,
    refresh_margin: datetime.timedelta = DEFAULT_REFRESH_MARGIN,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
    options: Sequence[tuple[str, Any]] | None = None,
    keep_running: bool = True,
    resume_backoff: ResumeBackoff | None = None,
) -> BookingClient:
    """A client of the gateway at `target` ("host:port"). Call it inside a coroutine; close it with `async with`.

    TLS by default, verified against `root_certificates` (PEM) or the system's roots. `tls=False` means
    plaintext: only for a gateway on loopback (`make run`), since bearer tokens must not cross a network in
    cleartext. `options` are grpc channel arguments, like `[("grpc.keepalive_time_ms", 30_000)]`. Chat turns
    run with `keep_running` unless told otherwise; `resume_backoff` paces resuming a dropped turn.
    """
    store: SessionStore = session_store if session_store is not None else MemorySessionStore()
    store.load()  # a session file that cannot be trusted raises here, before a channel is opened
    if tls:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        channel = aio.secure_channel(target, credentials, options=options)
    else:
        if root_certificates is not None:
            raise ValueError("root_certificates need tls=True")
        channel = aio.insecure_channel(target, options=options)
    return BookingClient(
        channel,
        session_store=store,
        refresh_margin=refresh_margin,
        timeout=timeout,
        owns_channel=True,
        keep_running=keep_running,
        resume_backoff=resume_backoff,
    )
