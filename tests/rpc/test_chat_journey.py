"""The seed's user journey over one Chat session, end to end: the scripted agent, the real login and reservation
services, the emulator's Cognito with its dev mailbox, and the real gateway on loopback."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from booking.v1 import chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from tests.support.auth import mailed_code, new_email, wrong_code
from tests.support.chat import Turn, chat, decide
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.status import reason_of


def tool_outcomes(turn: Turn) -> list[tuple[str, bool]]:
    return [(t.name, t.ok) for t in turn.tools]


async def test_the_seed_journey_from_availability_to_my_reservations(gateway: RunningGateway) -> None:
    email = new_email("journey")

    # 1. Anyone may ask about availability.
    available = await chat(gateway.channel, "Hi! What's available March 15-20?")
    session_id = available.session_id
    assert not available.started.authenticated
    assert tool_outcomes(available) == [("check_availability", True)]
    assert "Harbor Loft" in available.text

    # 2. To book, the agent checks the stay and says its price, then asks for a name and an email.
    asked = await chat(gateway.channel, "Book the Harbor Loft for 2 guests", session_id)
    assert tool_outcomes(asked) == [("check_availability", True)]
    assert "in total" in asked.text
    assert "name and email" in asked.text

    # 3. start_login sends a code; the model and the client only ever see the masked address.
    sent = await chat(gateway.channel, f"Jane Roe, {email}", session_id)
    assert tool_outcomes(sent) == [("start_login", True)]
    code = mailed_code(gateway, email)
    assert code not in str(sent.events)
    assert email not in str(sent.events)

    # 4. A wrong code is a failed tool result with the attempts left, not a broken stream.
    wrong = await chat(gateway.channel, wrong_code(code), session_id)
    assert tool_outcomes(wrong) == [("verify_code", False)]
    assert "2 attempts left" in wrong.text
    assert wrong.token_delivery is None

    # 5. The right code: TokenDelivery on the open stream, then the booking waiting for the sign-in is asked for.
    verified = await chat(gateway.channel, code, session_id)
    delivery = verified.token_delivery
    assert delivery is not None
    assert delivery.token_type == "Bearer"
    assert delivery.email == email
    assert delivery.guest_id.startswith("GST-")
    assert delivery.access_token
    assert delivery.refresh_token
    assert tool_outcomes(verified) == [("verify_code", True)]
    assert verified.approval is not None
    assert verified.approval.summary.startswith("Book Harbor Loft, 15\u201320 Mar ")
    assert verified.complete.stop_reason == chat_pb2.STOP_REASON_AWAITING_APPROVAL
    assert verified.tools[0].summary == f"verified as guest {delivery.guest_id}"
    kinds = verified.kinds
    assert kinds.index("tool_call_started") < kinds.index("token_delivery") < kinds.index("tool_call_finished")
    assert delivery.access_token not in verified.text
    assert code not in verified.text
    bearer = Tokens(delivery.access_token, delivery.id_token, delivery.refresh_token).bearer()

    # 5b. The person approves (a decision, not a message): the booking is made, once.
    approved = await decide(gateway.channel, verified, bearer)
    assert tool_outcomes(approved) == [("create_reservation", True)]
    assert "Booked!" in approved.text

    # 6. "What are my reservations?" with the bearer returns the booking.
    mine = await chat(gateway.channel, "What are my reservations?", session_id, bearer)
    assert mine.started.authenticated
    assert mine.started.guest_id == delivery.guest_id
    assert tool_outcomes(mine) == [("list_my_reservations", True)]
    listed = await reservations_pb2_grpc.ReservationServiceStub(gateway.channel).ListReservations(
        pb.ListReservationsRequest(), metadata=bearer, timeout=10
    )
    [booked] = listed.reservations
    assert (booked.property_id, booked.check_in[5:], booked.check_out[5:], booked.guests) == (
        "harbor-loft",
        "03-15",
        "03-20",
        2,
    )
    assert booked.guest_id == delivery.guest_id
    assert booked.reservation_id in mine.text

    # The session now belongs to the person who signed in: no bearer, or another person's, is refused.
    with pytest.raises(aio.AioRpcError) as anonymous:
        await chat(gateway.channel, "What are my reservations?", session_id)
    assert reason_of(anonymous.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    stranger = await emulator_sign_in(gateway.devstack)
    with pytest.raises(aio.AioRpcError) as other:
        await chat(gateway.channel, "What are my reservations?", session_id, stranger.bearer())
    assert reason_of(other.value) == (grpc.StatusCode.PERMISSION_DENIED, "SESSION_NOT_OWNED")

    # Every event of the session was numbered in order, across all its turns.
    numbers = [n for turn in (available, asked, sent, wrong, verified, approved, mine) for n in turn.sequences]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_too_many_wrong_codes_in_the_chat_end_the_login(gateway: RunningGateway) -> None:
    email = new_email("exhausted")
    first = await chat(gateway.channel, f"Sam Poe, {email}")
    session_id = first.session_id
    assert tool_outcomes(first) == [("start_login", True)]
    code = mailed_code(gateway, email)

    lefts = []
    for _ in range(3):
        turn = await chat(gateway.channel, wrong_code(code), session_id)
        assert tool_outcomes(turn) == [("verify_code", False)]
        lefts.append(turn.text)
    assert "1 attempt left" in lefts[1]
    # After the last try nobody asks for the code again: the way on is a new code.
    assert "0 attempts" not in lefts[2]
    assert "type the code" not in lefts[2]
    assert "Send me your email address again" in lefts[2]

    # A fourth try fails even with the right code; the agent asks for the email again.
    exhausted = await chat(gateway.channel, code, session_id)
    assert tool_outcomes(exhausted) == [("verify_code", False)]
    assert "Too many wrong codes" in exhausted.text
    assert exhausted.token_delivery is None
    # Nobody signed in, so the session is still anyone's.
    still_open = await chat(gateway.channel, "hello", session_id)
    assert not still_open.started.authenticated

    # Asking for a new code at once meets the resend cooldown, which the agent explains.
    again = await chat(gateway.channel, email, session_id)
    assert tool_outcomes(again) == [("start_login", False)]
    assert "try again in" in again.text


async def test_a_code_in_the_chat_for_a_login_that_was_never_started_never_reaches_the_model(
    gateway: RunningGateway,
) -> None:
    turn = await chat(gateway.channel, "my code is 12345678")
    assert tool_outcomes(turn) == []  # the model read "my code is [redacted]" (docs/chat.md)
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert turn.token_delivery is None
