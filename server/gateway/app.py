"""The composition root: opens every adapter once (one AsyncExitStack) and builds the services.

The only module that imports both services and adapters. Production, `make run` and the tests all build the
gateway through `open_app`; only the `AwsTarget` and Settings differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from gateway.adapters.aws import AwsClients, AwsTarget, open_aws_clients
from gateway.adapters.cognito import CognitoIdentityProvider
from gateway.adapters.dynamodb.guest_store import DynamoGuestStore
from gateway.adapters.dynamodb.login_store import DynamoLoginStore
from gateway.adapters.dynamodb.rate_limiter import DynamoRateLimiter
from gateway.config import Settings
from gateway.domain import RateLimit
from gateway.ports import BearerVerifier
from gateway.services.login import LoginPolicy, LoginService


@dataclass
class App:
    """Everything a transport face needs: settings, open clients and the services built on them."""

    settings: Settings
    clients: AwsClients
    verifier: BearerVerifier | None = None
    login: LoginService | None = None


def aws_target(settings: Settings) -> AwsTarget:
    """Where the gateway's AWS clients point, from Settings alone (default credential chain)."""
    return AwsTarget(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        timeout_seconds=settings.aws_timeout_seconds,
        cognito_endpoint_url=settings.cognito_endpoint_url,
    )


def login_policy(settings: Settings) -> LoginPolicy:
    """The sign-in numbers from Settings."""
    return LoginPolicy(
        max_attempts=settings.otp_max_attempts,
        max_code_lifetime_seconds=settings.otp_max_lifetime_seconds,
        resend_cooldown=RateLimit("login-resend", 1, settings.login_resend_cooldown_seconds),
        per_email=RateLimit("login-email", settings.login_per_email_limit, settings.login_per_email_window_seconds),
        per_peer=RateLimit("login-peer", settings.login_per_peer_limit, settings.login_per_peer_window_seconds),
        verify_per_peer=RateLimit(
            "verify-peer", settings.verify_per_peer_limit, settings.verify_per_peer_window_seconds
        ),
    )


def build_login_service(settings: Settings, clients: AwsClients) -> LoginService | None:
    """The login service on Cognito and DynamoDB; None when no user pool is configured."""
    if settings.user_pool_id is None or settings.app_client_id is None:
        return None
    identity = CognitoIdentityProvider(
        clients.cognito,
        user_pool_id=settings.user_pool_id,
        app_client_id=settings.app_client_id,
        refresh_token_rotation=settings.refresh_token_rotation,
    )
    return LoginService(
        identity,
        DynamoLoginStore(clients.dynamodb, settings.table_name),
        DynamoRateLimiter(clients.dynamodb, settings.table_name),
        DynamoGuestStore(clients.dynamodb, settings.table_name),
        login_policy(settings),
    )


@asynccontextmanager
async def open_app(settings: Settings, target: AwsTarget | None = None) -> AsyncIterator[App]:
    """Open the clients and build the services; close everything in reverse order on exit."""
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_aws_clients(target or aws_target(settings)))
        yield App(settings=settings, clients=clients, login=build_login_service(settings, clients))
