"""The browser chat when a call fails, in Chromium (`clients/web/tests/browser-recovery.mjs` does what a person
does; WIRE_CONFIG's `scenario` says which): an approval decision that never reached the gateway leaves its card
open to decide again; an expired access token is renewed instead of signing the person out; a resume the gateway
refuses ends at once and says so; Stop pressed while offline stops the turn; a spent daily budget says when it
renews."""

from __future__ import annotations

from pathlib import Path

from gateway.adapters.aws import AwsClients
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in, unique_email
from tests.support.node import CHROMIUM, run_browser_stay, run_node
from tests.support.sessions import expired_copy

HELP = "help, what can you do"


async def run_scenario(gateway: RunningGateway, tmp_path: Path, scenario: str, **extra: object) -> str:
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    config = {"chromium": str(CHROMIUM), "webUrl": gateway.web_url, "scenario": scenario, **extra}
    output = await run_node("tests/browser-recovery.mjs", config, tmp_path, timeout=120)
    assert f"browser recovery {scenario} passed" in output
    return output


async def test_a_decision_that_fails_before_the_gateway_took_it_leaves_the_card_open_to_decide_again(
    gateway: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    output = await run_browser_stay(
        "tests/browser-recovery.mjs",
        gateway,
        aws,
        table,
        tmp_path,
        days=(90, 92),
        email_prefix="undecided",
        scenario="approval",
    )
    assert "browser recovery approval passed" in output


async def test_an_expired_access_token_is_renewed_and_the_session_kept_unless_the_renewal_is_refused(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    email = unique_email("renew")
    tokens = await emulator_sign_in(gateway.devstack, email)
    session = {
        "isAuthenticated": True,
        "guestId": "GST-TEST-0000",
        "email": email,
        "idToken": tokens.id_token,
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "cognitoSub": "",
    }
    await run_scenario(
        gateway, tmp_path, "token", session=session, expiredAccessToken=expired_copy(tokens.access_token)
    )
