"""The EMAIL_OTP emulator extension on its own: the gateway's plain aioboto3 calls get Cognito's answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import jwt
import pytest
from botocore.exceptions import ClientError

from gateway.adapters.aws import AwsClients, open_aws_clients
from gateway.devstack import DevStack

if TYPE_CHECKING:
    from types_aiobotocore_cognito_idp import CognitoIdentityProviderClient


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
async def short_code_stack(clock: ManualClock) -> AsyncIterator[DevStack]:
    """A second emulator server issuing 6-digit codes on a hand-moved clock (moto's state is shared)."""
    async with DevStack.running(table_name="booking-gateway-otp6", otp_length=6, clock=clock) as stack:
        yield stack


@pytest.fixture
async def clients(devstack: DevStack) -> AsyncIterator[AwsClients]:
    async with open_aws_clients(devstack.endpoints.target) as opened:
        yield opened


@pytest.fixture
async def short_clients(short_code_stack: DevStack) -> AsyncIterator[AwsClients]:
    async with open_aws_clients(short_code_stack.endpoints.target) as opened:
        yield opened


def new_email() -> str:
    return f"otp-{uuid.uuid4().hex[:12]}@example.com"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code"))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message"))


async def create_user(cognito: CognitoIdentityProviderClient, pool_id: str, email: str) -> None:
    await cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
    )


async def start(stack: DevStack, cognito: CognitoIdentityProviderClient, email: str, **extra: str) -> dict[str, Any]:
    params = {"USERNAME": email, "PREFERRED_CHALLENGE": "EMAIL_OTP", **extra}
    answer = await cognito.admin_initiate_auth(
        UserPoolId=stack.endpoints.user_pool_id,
        ClientId=stack.endpoints.app_client_id,
        AuthFlow="USER_AUTH",
        AuthParameters=params,
    )
    return dict(answer)


async def answer_code(
    stack: DevStack, cognito: CognitoIdentityProviderClient, email: str, session: str, code: str
) -> dict[str, Any]:
    answer = await cognito.admin_respond_to_auth_challenge(
        UserPoolId=stack.endpoints.user_pool_id,
        ClientId=stack.endpoints.app_client_id,
        ChallengeName="EMAIL_OTP",
        ChallengeResponses={"USERNAME": email, "EMAIL_OTP_CODE": code},
        Session=session,
    )
    return dict(answer)


async def signed_in(stack: DevStack, cognito: CognitoIdentityProviderClient) -> tuple[str, dict[str, Any]]:
    email = new_email()
    await create_user(cognito, stack.endpoints.user_pool_id, email)
    started = await start(stack, cognito, email)
    code = stack.mailbox.latest_code(email)
    assert code is not None
    return email, await answer_code(stack, cognito, email, started["Session"], code)


def wrong(code: str) -> str:
    return "".join("1" if digit != "1" else "2" for digit in code)


async def test_user_auth_with_email_otp_sends_an_8_digit_code_and_a_correct_code_returns_signed_tokens(
    devstack: DevStack, clients: AwsClients
) -> None:
    email = new_email()
    await create_user(clients.cognito, devstack.endpoints.user_pool_id, email)
    user = await clients.cognito.admin_get_user(UserPoolId=devstack.endpoints.user_pool_id, Username=email)
    assert user["UserStatus"] == "CONFIRMED"  # passwordless users are not asked to change a password

    started = await start(devstack, clients.cognito, email)

    assert started["ChallengeName"] == "EMAIL_OTP"
    assert started["ChallengeParameters"] == {
        "CODE_DELIVERY_DELIVERY_MEDIUM": "EMAIL",
        "CODE_DELIVERY_DESTINATION": "o***@e***",
    }
    assert started["AvailableChallenges"] == ["EMAIL_OTP"]
    assert len(started["Session"]) >= 20
    code = devstack.mailbox.latest_code(email)
    assert code is not None
    assert len(code) == 8
    assert code.isascii()
    assert code.isdigit()

    answer = await answer_code(devstack, clients.cognito, email, started["Session"], code)

    result = answer["AuthenticationResult"]
    assert result["TokenType"] == "Bearer"
    assert result["ExpiresIn"] == 3600
    assert result["RefreshToken"]
    async with aiohttp.ClientSession() as http, http.get(devstack.endpoints.jwks_url) as response:
        jwks = jwt.PyJWKSet.from_dict(await response.json())
    access = jwt.decode(result["AccessToken"], jwks.keys[0].key, algorithms=["RS256"], issuer=devstack.endpoints.issuer)
    identity = jwt.decode(
        result["IdToken"],
        jwks.keys[0].key,
        algorithms=["RS256"],
        issuer=devstack.endpoints.issuer,
        audience=devstack.endpoints.app_client_id,
    )
    assert access["token_use"] == "access"
    assert access["client_id"] == devstack.endpoints.app_client_id
    assert access["origin_jti"] == identity["origin_jti"]
    assert identity["token_use"] == "id"
    assert identity["email"] == email
    assert access["sub"] == identity["sub"]
    user = await clients.cognito.admin_get_user(UserPoolId=devstack.endpoints.user_pool_id, Username=email)
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attributes["email_verified"] == "true"
    assert attributes["sub"] == access["sub"]


async def test_code_length_is_configurable_and_each_initiate_sends_a_fresh_code(
    short_code_stack: DevStack, short_clients: AwsClients
) -> None:
    email = new_email()
    await create_user(short_clients.cognito, short_code_stack.endpoints.user_pool_id, email)
    first = await start(short_code_stack, short_clients.cognito, email)
    first_code = await short_code_stack.mailbox.wait_for_code(email)
    second = await start(short_code_stack, short_clients.cognito, email)
    await short_code_stack.mailbox.wait_for_code(email, after=1)
    codes = [m.code for m in short_code_stack.mailbox.messages(email)]
    assert codes[0] == first_code
    assert len(codes) == 2
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert first["Session"] != second["Session"]
    answer = await answer_code(short_code_stack, short_clients.cognito, email, second["Session"], codes[1])
    assert "AccessToken" in answer["AuthenticationResult"]


async def test_a_wrong_code_is_code_mismatch_and_the_session_stays_usable(
    devstack: DevStack, clients: AwsClients
) -> None:
    email = new_email()
    await create_user(clients.cognito, devstack.endpoints.user_pool_id, email)
    started = await start(devstack, clients.cognito, email)
    code = devstack.mailbox.latest_code(email)
    assert code is not None
    with pytest.raises(ClientError) as caught:
        await answer_code(devstack, clients.cognito, email, started["Session"], wrong(code))
    assert error_code(caught.value) == "CodeMismatchException"
    answer = await answer_code(devstack, clients.cognito, email, started["Session"], code)
    assert "IdToken" in answer["AuthenticationResult"]


async def test_a_used_session_cannot_be_reused_and_an_unknown_one_is_refused(
    devstack: DevStack, clients: AwsClients
) -> None:
    email = new_email()
    await create_user(clients.cognito, devstack.endpoints.user_pool_id, email)
    started = await start(devstack, clients.cognito, email)
    code = devstack.mailbox.latest_code(email)
    assert code is not None
    await answer_code(devstack, clients.cognito, email, started["Session"], code)
    with pytest.raises(ClientError) as caught:
        await answer_code(devstack, clients.cognito, email, started["Session"], code)
    assert error_code(caught.value) == "NotAuthorizedException"
    assert error_message(caught.value) == "Invalid session for the user, session can only be used once."
    with pytest.raises(ClientError) as caught:
        await answer_code(devstack, clients.cognito, email, "AYAB" + "x" * 40, code)
    assert error_code(caught.value) == "NotAuthorizedException"
    assert error_message(caught.value) == "Invalid session for the user."


async def test_a_session_older_than_the_clients_auth_session_validity_is_expired(
    short_code_stack: DevStack, short_clients: AwsClients, clock: ManualClock
) -> None:
    email = new_email()
    await create_user(short_clients.cognito, short_code_stack.endpoints.user_pool_id, email)
    started = await start(short_code_stack, short_clients.cognito, email)
    code = short_code_stack.mailbox.latest_code(email)
    assert code is not None
    clock.now += 3 * 60 + 1  # the devstack's client has AuthSessionValidity = 3 minutes
    with pytest.raises(ClientError) as caught:
        await answer_code(short_code_stack, short_clients.cognito, email, started["Session"], code)
    assert error_code(caught.value) == "NotAuthorizedException"
    assert error_message(caught.value) == "Invalid session for the user, session is expired."


async def test_without_a_preferred_challenge_select_challenge_then_email_otp(
    devstack: DevStack, clients: AwsClients
) -> None:
    email = new_email()
    await create_user(clients.cognito, devstack.endpoints.user_pool_id, email)
    selecting = await clients.cognito.admin_initiate_auth(
        UserPoolId=devstack.endpoints.user_pool_id,
        ClientId=devstack.endpoints.app_client_id,
        AuthFlow="USER_AUTH",
        AuthParameters={"USERNAME": email},
    )
    assert selecting["ChallengeName"] == "SELECT_CHALLENGE"
    assert selecting.get("AvailableChallenges") == ["EMAIL_OTP"]
    assert devstack.mailbox.latest_code(email) is None
    chosen = await clients.cognito.admin_respond_to_auth_challenge(
        UserPoolId=devstack.endpoints.user_pool_id,
        ClientId=devstack.endpoints.app_client_id,
        ChallengeName="SELECT_CHALLENGE",
        ChallengeResponses={"USERNAME": email, "ANSWER": "EMAIL_OTP"},
        Session=selecting["Session"],
    )
    assert chosen["ChallengeName"] == "EMAIL_OTP"
    assert chosen["Session"] != selecting["Session"]
    code = devstack.mailbox.latest_code(email)
    assert code is not None
    answer = await answer_code(devstack, clients.cognito, email, chosen["Session"], code)
    assert "AccessToken" in answer["AuthenticationResult"]


async def test_public_initiate_auth_and_respond_work_unsigned(devstack: DevStack, clients: AwsClients) -> None:
    email = new_email()
    await create_user(clients.cognito, devstack.endpoints.user_pool_id, email)
    started = await clients.cognito.initiate_auth(
        ClientId=devstack.endpoints.app_client_id,
        AuthFlow="USER_AUTH",
        AuthParameters={"USERNAME": email, "PREFERRED_CHALLENGE": "EMAIL_OTP"},
    )
    code = devstack.mailbox.latest_code(email)
    assert code is not None
    answer = await clients.cognito.respond_to_auth_challenge(
        ClientId=devstack.endpoints.app_client_id,
        ChallengeName="EMAIL_OTP",
        ChallengeResponses={"USERNAME": email, "EMAIL_OTP_CODE": code},
        Session=started["Session"],
    )
    assert "AccessToken" in answer["AuthenticationResult"]


async def test_an_unknown_user_gets_a_challenge_like_any_other_but_no_code_and_none_works(
    devstack: DevStack, clients: AwsClients
) -> None:
    email = new_email()  # never created; the devstack's client has PreventUserExistenceErrors=ENABLED
    started = await start(devstack, clients.cognito, email)
    assert started["ChallengeName"] == "EMAIL_OTP"
    assert started["ChallengeParameters"]["CODE_DELIVERY_DESTINATION"] == "o***@e***"
    assert devstack.mailbox.latest_code(email) is None
    with pytest.raises(ClientError) as caught:
        await answer_code(devstack, clients.cognito, email, started["Session"], "12345678")
    assert error_code(caught.value) == "CodeMismatchException"


async def test_a_disabled_user_cannot_start_and_a_client_without_user_auth_is_refused(
    devstack: DevStack, clients: AwsClients
) -> None:
    pool_id = devstack.endpoints.user_pool_id
    email = new_email()
    await create_user(clients.cognito, pool_id, email)
    await clients.cognito.admin_disable_user(UserPoolId=pool_id, Username=email)
    with pytest.raises(ClientError) as caught:
        await start(devstack, clients.cognito, email)
    assert (error_code(caught.value), error_message(caught.value)) == ("NotAuthorizedException", "User is disabled.")

    other = await clients.cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName=f"no-user-auth-{uuid.uuid4().hex[:6]}", ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH"]
    )
    with pytest.raises(ClientError) as caught:
        await clients.cognito.admin_initiate_auth(
            UserPoolId=pool_id,
            ClientId=other["UserPoolClient"]["ClientId"],
            AuthFlow="USER_AUTH",
            AuthParameters={"USERNAME": email, "PREFERRED_CHALLENGE": "EMAIL_OTP"},
        )
    assert error_code(caught.value) == "InvalidParameterException"


async def test_refresh_works_and_an_unknown_refresh_token_is_not_authorized_instead_of_a_server_error(
    devstack: DevStack, clients: AwsClients
) -> None:
    _, answer = await signed_in(devstack, clients.cognito)
    refresh_token = answer["AuthenticationResult"]["RefreshToken"]
    refreshed = await clients.cognito.admin_initiate_auth(
        UserPoolId=devstack.endpoints.user_pool_id,
        ClientId=devstack.endpoints.app_client_id,
        AuthFlow="REFRESH_TOKEN_AUTH",
        AuthParameters={"REFRESH_TOKEN": refresh_token},
    )
    assert refreshed["AuthenticationResult"]["AccessToken"]
    assert "RefreshToken" not in refreshed["AuthenticationResult"]
    with pytest.raises(ClientError) as caught:
        await clients.cognito.admin_initiate_auth(
            UserPoolId=devstack.endpoints.user_pool_id,
            ClientId=devstack.endpoints.app_client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": "not-a-refresh-token"},
        )
    assert error_code(caught.value) == "NotAuthorizedException"


async def test_revoke_token_revokes_the_refresh_token_and_the_access_tokens_issued_from_it(
    devstack: DevStack, clients: AwsClients
) -> None:
    _, answer = await signed_in(devstack, clients.cognito)
    result = answer["AuthenticationResult"]
    assert (await clients.cognito.get_user(AccessToken=result["AccessToken"]))["Username"]

    await clients.cognito.revoke_token(Token=result["RefreshToken"], ClientId=devstack.endpoints.app_client_id)
    # Revoking again, or revoking a token that never existed, is accepted (RFC 7009).
    await clients.cognito.revoke_token(Token=result["RefreshToken"], ClientId=devstack.endpoints.app_client_id)
    await clients.cognito.revoke_token(Token="never-issued", ClientId=devstack.endpoints.app_client_id)

    with pytest.raises(ClientError) as caught:
        await clients.cognito.admin_initiate_auth(
            UserPoolId=devstack.endpoints.user_pool_id,
            ClientId=devstack.endpoints.app_client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]},
        )
    assert error_code(caught.value) == "NotAuthorizedException"
    with pytest.raises(ClientError) as caught:
        await clients.cognito.get_user(AccessToken=result["AccessToken"])
    assert error_code(caught.value) == "NotAuthorizedException"
    with pytest.raises(ClientError) as caught:
        await clients.cognito.revoke_token(Token=result["AccessToken"], ClientId=devstack.endpoints.app_client_id)
    assert error_code(caught.value) == "UnsupportedTokenTypeException"


async def test_get_tokens_from_refresh_token_with_and_without_rotation(devstack: DevStack, clients: AwsClients) -> None:
    _, answer = await signed_in(devstack, clients.cognito)
    refresh_token = answer["AuthenticationResult"]["RefreshToken"]
    plain = await clients.cognito.get_tokens_from_refresh_token(
        RefreshToken=refresh_token, ClientId=devstack.endpoints.app_client_id
    )
    assert "RefreshToken" not in plain["AuthenticationResult"]

    rotating = await clients.cognito.create_user_pool_client(
        UserPoolId=devstack.endpoints.user_pool_id,
        ClientName=f"rotating-{uuid.uuid4().hex[:6]}",
        ExplicitAuthFlows=["ALLOW_USER_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        RefreshTokenRotation={"Feature": "ENABLED", "RetryGracePeriodSeconds": 0},
    )
    rotating_id = rotating["UserPoolClient"]["ClientId"]
    email = new_email()
    await create_user(clients.cognito, devstack.endpoints.user_pool_id, email)
    started = await clients.cognito.initiate_auth(
        ClientId=rotating_id,
        AuthFlow="USER_AUTH",
        AuthParameters={"USERNAME": email, "PREFERRED_CHALLENGE": "EMAIL_OTP"},
    )
    code = devstack.mailbox.latest_code(email)
    assert code is not None
    signed = await clients.cognito.respond_to_auth_challenge(
        ClientId=rotating_id,
        ChallengeName="EMAIL_OTP",
        ChallengeResponses={"USERNAME": email, "EMAIL_OTP_CODE": code},
        Session=started["Session"],
    )
    first = signed["AuthenticationResult"]["RefreshToken"]
    rotated = await clients.cognito.get_tokens_from_refresh_token(RefreshToken=first, ClientId=rotating_id)
    second = rotated["AuthenticationResult"].get("RefreshToken")
    assert second
    assert second != first
    with pytest.raises(ClientError) as caught:
        await clients.cognito.get_tokens_from_refresh_token(RefreshToken=first, ClientId=rotating_id)
    assert error_code(caught.value) == "RefreshTokenReuseException"
    again = await clients.cognito.get_tokens_from_refresh_token(RefreshToken=second, ClientId=rotating_id)
    assert again["AuthenticationResult"]["AccessToken"]


async def test_a_case_insensitive_pool_finds_one_user_by_email_in_any_case_and_a_case_sensitive_one_does_not(
    devstack: DevStack, clients: AwsClients
) -> None:
    cognito = clients.cognito
    pool_id = devstack.endpoints.user_pool_id
    email = new_email()
    await create_user(cognito, pool_id, email)
    found = {
        (await cognito.admin_get_user(UserPoolId=pool_id, Username=other))["Username"]
        for other in (email, email.upper(), email.capitalize())
    }
    assert len(found) == 1
    with pytest.raises(ClientError) as caught:
        await create_user(cognito, pool_id, email.upper())
    assert error_code(caught.value) == "UsernameExistsException"
    # A pool created case-sensitive (the API's default) keeps moto's exact comparison, as Cognito does.
    sensitive = await cognito.create_user_pool(
        PoolName=f"case-sensitive-{uuid.uuid4().hex[:6]}", UsernameAttributes=["email"]
    )
    sensitive_id = sensitive["UserPool"]["Id"]
    try:
        await create_user(cognito, sensitive_id, email)
        await create_user(cognito, sensitive_id, email.upper())
        assert len((await cognito.list_users(UserPoolId=sensitive_id))["Users"]) == 2
    finally:
        await cognito.delete_user_pool(UserPoolId=sensitive_id)
