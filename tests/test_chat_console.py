"""The chat journey as the README shows it (`gateway serve`, buf curl, the code from the console), and a scan of
everything the gateway logged at DEBUG for tokens, codes, the Cognito session, the chat session id and the email."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.support.auth import wrong_code
from tests.support.buf import buf_curl, url
from tests.support.processes import GatewayProcess, start_gateway
from tests.test_login_console import cognito_session, console_code


def events(output: str) -> list[dict[str, Any]]:
    """The events of a streamed answer: buf curl prints one JSON object per message."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = 0
    output = output.strip()
    while position < len(output):
        message, position = decoder.raw_decode(output, position)
        found.append(message["event"])
        while position < len(output) and output[position].isspace():
            position += 1
    return found


async def say(gateway: GatewayProcess, message: str, session_id: str = "", *headers: str) -> list[dict[str, Any]]:
    data = {"sessionId": session_id, "message": message} if session_id else {"message": message}
    return await send(gateway, data, *headers)


async def send(gateway: GatewayProcess, data: dict[str, Any], *headers: str) -> list[dict[str, Any]]:
    args = [arg for header in headers for arg in ("-H", header)]
    code, out, err = await buf_curl(
        gateway.target, *args, url(gateway.target, "booking.v1.ChatService/Chat"), data=data
    )
    assert code == 0, err
    return events(out)


def text(turn: list[dict[str, Any]]) -> str:
    return "".join(e["textDelta"]["text"] for e in turn if "textDelta" in e)


async def test_the_chat_journey_with_buf_curl_and_no_secret_in_the_debug_logs() -> None:
    email = f"jane.{uuid.uuid4().hex[:10]}@example.com"
    gateway = await start_gateway("--log-format", "json", "--log-level", "DEBUG")
    try:
        first = await say(gateway, "what is available March 15-20?")
        session_id = first[0]["sessionStarted"]["sessionId"]
        assert "Harbor Loft" in text(first)
        await say(gateway, "book the Harbor Loft for 2 guests", session_id)
        sent = await say(gateway, f"Jane Roe, {email}", session_id)
        assert "j***@e***" in text(sent)
        code = await console_code(gateway, "j***@example.com")
        session = await cognito_session(gateway, email)

        wrong = await say(gateway, wrong_code(code), session_id)
        assert "attempts left" in text(wrong)
        verified = await say(gateway, code, session_id)
        [delivery] = [e["tokenDelivery"] for e in verified if "tokenDelivery" in e]
        [approval] = [e["approvalRequested"] for e in verified if "approvalRequested" in e]
        assert approval["summary"].startswith("Book Harbor Loft, 15\u201320 Mar ")
        assert verified[-1]["turnComplete"]["stopReason"] == "STOP_REASON_AWAITING_APPROVAL"
        bearer = f"authorization: Bearer {delivery['accessToken']}"

        # The decision, as docs/chat.md shows it.
        decision = {"sessionId": session_id, "decision": {"approvalId": approval["approvalId"], "approve": True}}
        approved = await send(gateway, decision, bearer)
        assert "Booked!" in text(approved)

        mine = await say(gateway, "what are my reservations?", session_id, bearer)
        assert "Harbor Loft" in text(mine)
        assert mine[-1]["turnComplete"]["stopReason"] == "STOP_REASON_END_TURN"
    finally:
        await gateway.stop()

    secrets = {
        "code": code,
        "wrong code": wrong_code(code),
        "cognito session": session,
        "chat session id": session_id,
        "email": email,
        "id token": delivery["idToken"],
        "access token": delivery["accessToken"],
        "refresh token": delivery["refreshToken"],
    }
    logs = [line for line in gateway.stderr_lines if line.startswith("{")]
    assert any(json.loads(line)["message"] == "chat turn" for line in logs)  # the turns were logged
    for line in gateway.stderr_lines:
        for what, secret in secrets.items():
            assert secret.lower() not in line.lower(), f"{what} in log: {line}"
    for line in gateway.stdout_lines:
        for what in ("cognito session", "access token", "refresh token", "id token", "chat session id"):
            assert secrets[what] not in line, f"{what} on the console: {line}"
