"""The browser chat when a call fails, in Chromium (`clients/web/tests/browser-recovery.mjs` does what a person
does; WIRE_CONFIG's `scenario` says which): an approval decision that never reached the gateway leaves its card
open to decide again (and one taken but whose answer was cut, refused when decided again, says it was already
answered); an expired access token is renewed instead of signing the person out; a resume the gateway refuses
ends at once and says so, and one refused for an expired access token renews the session once; Stop pressed
while offline stops the turn; a spent daily budget says when it renews."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import Tokens, emulator_sign_in, unique_email
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


def stored_session(email: str, tokens: Tokens) -> dict[str, object]:
    """A signed-in session as the page keeps it in localStorage."""
    return {
        "isAuthenticated": True,
        "guestId": "GST-TEST-0000",
        "email": email,
        "idToken": tokens.id_token,
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "cognitoSub": "",
    }


async def test_an_expired_access_token_is_renewed_and_the_session_kept_unless_the_renewal_is_refused(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    email = unique_email("renew")
    tokens = await emulator_sign_in(gateway.devstack, email)
    session = stored_session(email, tokens)
    await run_scenario(
        gateway, tmp_path, "token", session=session, expiredAccessToken=expired_copy(tokens.access_token)
    )


@pytest.fixture(scope="module")
async def slow_typing(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """The scripted agent types a word every 700 ms: its help answer takes half a minute, long enough to cut its
    stream many times, resume it and stop it before it ends."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=700.0)) as running:
        yield running


async def test_a_refused_resume_ends_at_once_and_says_so_and_progress_resets_the_backoff(
    slow_typing: RunningGateway, tmp_path: Path
) -> None:
    await run_scenario(slow_typing, tmp_path, "resume", message=HELP)


async def test_a_resume_that_keeps_failing_gives_up_after_8_attempts_says_so_and_retry_resumes(
    slow_typing: RunningGateway, tmp_path: Path
) -> None:
    await run_scenario(slow_typing, tmp_path, "giveup", message=HELP)


async def test_a_resume_refused_for_an_expired_access_token_renews_the_session_once_instead_of_backing_off(
    slow_typing: RunningGateway, tmp_path: Path
) -> None:
    email = unique_email("resumerenew")
    tokens = await emulator_sign_in(slow_typing.devstack, email)
    session = stored_session(email, tokens)
    await run_scenario(
        slow_typing,
        tmp_path,
        "resumetoken",
        message=HELP,
        session=session,
        expiredAccessToken=expired_copy(tokens.access_token),
    )


async def test_stop_pressed_while_offline_stops_the_turn_in_the_gateway_once_back_online(
    slow_typing: RunningGateway, tmp_path: Path
) -> None:
    await run_scenario(slow_typing, tmp_path, "stop", message=HELP)


@pytest.fixture
async def frugal(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose clients may spend one model token a day: the first answer spends it."""
    async with running_gateway(devstack, settings.replace(chat_client_tokens_per_day=1)) as running:
        yield running


async def test_a_spent_daily_token_budget_says_when_it_renews_and_offers_no_retry(
    frugal: RunningGateway, tmp_path: Path
) -> None:
    await run_scenario(frugal, tmp_path, "budget")
