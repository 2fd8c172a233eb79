"""Real Cognito tokens from the emulator's user pool, for tests that need a signed-in caller."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from gateway.adapters.aws import open_aws_clients
from gateway.devstack import DevStack


@dataclass(frozen=True)
class Tokens:
    """What Cognito hands out on sign-in."""

    access_token: str
    id_token: str
    refresh_token: str

    def bearer(self) -> tuple[tuple[str, str]]:
        """Call metadata that carries the access token."""
        return (("authorization", f"Bearer {self.access_token}"),)


def unique_email(tag: str = "guest") -> str:
    """An address no other test uses."""
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


async def emulator_sign_in(devstack: DevStack, email: str | None = None) -> Tokens:
    """Create a user in the emulator's pool and sign it in with a password (the admin flow moto supports).

    The tokens are the emulator's real RS256 tokens, with the pool's issuer and the app client's id, exactly
    what a passwordless sign-in yields.
    """
    endpoints = devstack.endpoints
    username = email or unique_email()
    password = "Aa1!" + secrets.token_urlsafe(16)
    async with open_aws_clients(endpoints.target) as clients:
        cognito = clients.cognito
        await cognito.admin_create_user(
            UserPoolId=endpoints.user_pool_id,
            Username=username,
            UserAttributes=[{"Name": "email", "Value": username}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )
        await cognito.admin_set_user_password(
            UserPoolId=endpoints.user_pool_id, Username=username, Password=password, Permanent=True
        )
        answer = await cognito.admin_initiate_auth(
            UserPoolId=endpoints.user_pool_id,
            ClientId=endpoints.app_client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
    result = answer["AuthenticationResult"]
    return Tokens(access_token=result["AccessToken"], id_token=result["IdToken"], refresh_token=result["RefreshToken"])
