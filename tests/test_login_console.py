"""Signing in locally as the README says (`gateway serve`, buf curl, the code from the console), and what the logs hold.

The gateway runs as a subprocess with DEBUG JSON logs on stderr; the console (stdout) shows the dev mailbox. No
token, code, Cognito session, login id or full email address may reach the logs; the code appears on the
console only, in the dev mailbox line.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from gateway.adapters.aws import AwsTarget, open_aws_clients
from gateway.adapters.dynamodb import keys
from gateway.devstack.stack import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, REGION
from tests.support.auth import wrong_code
from tests.support.buf import buf_curl, url
from tests.support.processes import GatewayProcess, start_gateway

EMULATOR = re.compile(r"local AWS emulator \(moto\) listening on (http://\S+)")
MAILBOX = re.compile(r"\[dev mailbox\] code for (\S+): (\d{8})$")


async def call(gateway: GatewayProcess, method: str, data: dict[str, Any], *headers: str) -> tuple[int, Any]:
    args = [arg for header in headers for arg in ("-H", header)]
    code, out, err = await buf_curl(
        gateway.target, *args, url(gateway.target, f"booking.v1.AuthService/{method}"), data=data
    )
    return code, json.loads(out) if code == 0 else err


async def console_code(gateway: GatewayProcess, masked: str) -> str:
    def code() -> str | None:
        return next(
            (m.group(2) for line in gateway.stdout_lines if (m := MAILBOX.search(line)) and m.group(1) == masked), None
        )

    return await gateway.printed(code, timeout=10)


async def cognito_session(gateway: GatewayProcess, email: str) -> str:
    """The Cognito session the gateway stored for `email`, read from the emulator's table."""
    endpoint = next(m.group(1) for line in gateway.stdout_lines if (m := EMULATOR.search(line)))
    target = AwsTarget(REGION, endpoint, DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY)
    async with open_aws_clients(target) as clients:
        found = await clients.dynamodb.get_item(
            TableName="booking-gateway", Key=keys.login_email_key(keys.email_digest(email)), ConsistentRead=True
        )
    return str(found["Item"]["idp_session"]["S"])


async def test_sign_in_as_the_readme_shows_with_the_code_on_the_console_and_no_secret_in_the_logs() -> None:
    email = f"Reader.{uuid.uuid4().hex[:10]}@example.com"
    gateway = await start_gateway("--log-format", "json", "--log-level", "DEBUG")
    try:
        status, started = await call(gateway, "InitiateLogin", {"email": f" {email.upper()[:1]}{email[1:]} "})
        assert status == 0, started
        assert started["destination"] == "R***@e***"
        code = await console_code(gateway, "R***@example.com")
        session = await cognito_session(gateway, email)
        login_id = started["loginId"]

        status, _ = await call(gateway, "VerifyOtp", {"loginId": login_id, "code": wrong_code(code)})
        assert status != 0
        status, verified = await call(gateway, "VerifyOtp", {"loginId": login_id, "code": code})
        assert status == 0, verified
        delivery = verified["tokenDelivery"]
        status, refreshed = await call(gateway, "RefreshSession", {"refreshToken": delivery["refreshToken"]})
        assert status == 0, refreshed
        status, _ = await call(gateway, "RefreshSession", {"refreshToken": "not-a-refresh-token"})
        assert status != 0
        status, signed_out = await call(
            gateway,
            "SignOut",
            {"refreshToken": delivery["refreshToken"]},
            f"authorization: Bearer {delivery['accessToken']}",
        )
        assert status == 0, signed_out
    finally:
        await gateway.stop()

    secrets = {
        "code": code,
        "wrong code": wrong_code(code),
        "login id": login_id,
        "cognito session": session,
        "email": email.lower(),
        "id token": delivery["idToken"],
        "access token": delivery["accessToken"],
        "refresh token": delivery["refreshToken"],
        "refreshed id token": refreshed["idToken"],
        "refreshed access token": refreshed["accessToken"],
    }
    logs = [line for line in gateway.stderr_lines if line.startswith("{")]
    assert any(json.loads(line)["message"] == "sign-in code sent" for line in logs)  # the flow was logged
    for line in gateway.stderr_lines:
        for what, secret in secrets.items():
            assert secret not in line.lower() if what == "email" else secret not in line, f"{what} in log: {line}"
    console_with_code = [line for line in gateway.stdout_lines if code in line]
    assert console_with_code == [f"[dev mailbox] code for R***@example.com: {code}"]
    for line in gateway.stdout_lines:
        for what in ("login id", "cognito session", "access token", "refresh token", "id token"):
            assert secrets[what] not in line, f"{what} on the console: {line}"
