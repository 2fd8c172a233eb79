"""A sign-in is answered only through the door it was started at: a chat's only in that chat, a unary one only
through VerifyOtp. The wrong door gets the answer an unknown login id gets, and spends nothing."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from tests.support.auth import initiate, mailed_code, new_email, verify, wrong_code
from tests.support.chat import chat
from tests.support.gateway import RunningGateway
from tests.support.status import reason_of

UNKNOWN_LOGIN = (grpc.StatusCode.FAILED_PRECONDITION, "LOGIN_NOT_FOUND")


async def test_a_chat_sign_in_is_not_answerable_through_verify_otp(gateway: RunningGateway) -> None:
    email = new_email("chat-door")
    sent = await chat(gateway.channel, f"Jane Roe, {email}")
    assert [(t.name, t.ok) for t in sent.tools] == [("start_login", True)]
    code = mailed_code(gateway, email)

    # Neither the right code nor wrong ones get anywhere through the unary door, however often they are tried...
    for attempt in [code, wrong_code(code), wrong_code(code), wrong_code(code), code]:
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(gateway, f"chat:{sent.session_id}", attempt)
        assert reason_of(caught.value) == UNKNOWN_LOGIN
    # ...exactly as for a chat session that has no sign-in at all.
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(gateway, "chat:no-such-session", code)
    assert reason_of(caught.value) == UNKNOWN_LOGIN

    # No attempt was spent: the code still works in the chat.
    verified = await chat(gateway.channel, code, sent.session_id)
    assert [(t.name, t.ok) for t in verified.tools][:1] == [("verify_code", True)]
    assert verified.token_delivery is not None


async def test_a_unary_sign_in_is_not_answerable_in_a_chat(gateway: RunningGateway) -> None:
    email = new_email("unary-door")
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)

    # A chat has no sign-in of its own waiting: the code is not even shown to its model, nothing is checked.
    typed = await chat(gateway.channel, f"my code is {code}")
    assert [t.name for t in typed.tools] == []
    assert typed.token_delivery is None

    answer = await verify(gateway, started.login_id, code)
    assert answer.token_delivery.email == email
