"""aioboto3 clients for Cognito and DynamoDB, opened once for the life of the process.

Local and production differ only by configuration: the endpoint URL, the region and, for the embedded
emulator, dummy credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
import aiobotocore
from aiobotocore.config import AioConfig

if TYPE_CHECKING:
    from types_aiobotocore_cognito_idp import CognitoIdentityProviderClient
    from types_aiobotocore_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class AwsTarget:
    """Where and as whom to call AWS. `access_key_id=None` means the default credential chain.

    `cognito_endpoint_url` overrides `endpoint_url` for Cognito alone.
    """

    region: str
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    timeout_seconds: float = 5.0
    cognito_endpoint_url: str | None = None


@dataclass(frozen=True)
class AwsClients:
    """The open clients the adapters share."""

    cognito: CognitoIdentityProviderClient
    dynamodb: DynamoDBClient


# A fixed User-Agent. Without one, botocore rebuilds its own from about ten components (SDK, OS, language,
# feature ids used so far) on every request: a fifth of a DynamoDB call's CPU in the caller, measured in
# docs/performance.md. The SDK's name and version stay in it (aiobotocore appends "botocore/<version>").
USER_AGENT = f"booking-gateway aiobotocore/{aiobotocore.__version__}"


def _config(target: AwsTarget, *, max_attempts: int) -> AioConfig:
    return AioConfig(
        user_agent=USER_AGENT,
        region_name=target.region,
        connect_timeout=target.timeout_seconds,
        read_timeout=target.timeout_seconds,
        # botocore's `max_attempts` counts retries after the first try; `total_max_attempts` counts every try.
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=64,
    )


@asynccontextmanager
async def open_aws_clients(target: AwsTarget) -> AsyncIterator[AwsClients]:
    """Open the Cognito and DynamoDB clients; close them on exit.

    Cognito calls are never retried by botocore: every `AdminInitiateAuth` emails a new code bound to a new
    session, so an invisible retry would leave the person holding a code for a session we did not keep.
    DynamoDB calls get botocore's standard retries (our writes are conditional or idempotent).
    """
    session = aioboto3.Session(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        region_name=target.region,
    )
    async with AsyncExitStack() as stack:
        cognito = await stack.enter_async_context(
            session.client(
                "cognito-idp",
                endpoint_url=target.cognito_endpoint_url or target.endpoint_url,
                config=_config(target, max_attempts=1),
            )
        )
        dynamodb = await stack.enter_async_context(
            session.client("dynamodb", endpoint_url=target.endpoint_url, config=_config(target, max_attempts=3))
        )
        yield AwsClients(cognito=cognito, dynamodb=dynamodb)
