"""Create what the gateway needs in an empty AWS account: the table, the user pool and its app client, demo data.

Idempotent: running it against an account that already has them changes nothing. It uses the same aioboto3
clients as the gateway, so it also works against real AWS for a quick test account.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.keys import PK, SK, TTL_ATTRIBUTE, property_key, table_definition

log = logging.getLogger(__name__)

POOL_NAME = "booking-gateway-local"
CLIENT_NAME = "booking-gateway"
AUTH_SESSION_VALIDITY_MINUTES = 3


@dataclass(frozen=True)
class DemoProperty:
    """A property loaded into an empty table."""

    property_id: str
    name: str
    description: str
    capacity: int
    nightly_rate_cents: int
    currency: str = "USD"


DEMO_PROPERTIES = (
    DemoProperty("harbor-loft", "Harbor Loft", "A bright loft above the old harbour, for two.", 2, 18900),
    DemoProperty("garden-cottage", "Garden Cottage", "A stone cottage with a walled garden.", 4, 22500),
    DemoProperty("summit-cabin", "Summit Cabin", "A timber cabin near the ski lifts, sleeps six.", 6, 31000),
)


@dataclass(frozen=True)
class PoolIds:
    """The Cognito user pool and app client the gateway signs people in with."""

    user_pool_id: str
    app_client_id: str


async def ensure_table(clients: AwsClients, table_name: str) -> None:
    """Create the single table with its GSI and TTL unless it exists."""
    existing = await clients.dynamodb.list_tables()
    if table_name in existing.get("TableNames", []):
        return
    await clients.dynamodb.create_table(**table_definition(table_name))
    await clients.dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
    log.info("created table", extra={"table": table_name})


async def ensure_user_pool(clients: AwsClients) -> PoolIds:
    """Find or create a user pool and app client configured for passwordless EMAIL_OTP sign-in.

    The settings follow the Cognito reference: Essentials tier, email as the case-insensitive username,
    EMAIL_OTP allowed as a first factor, MFA off; the client allows USER_AUTH and refresh, has no secret, and
    hides whether a user exists.
    """
    cognito = clients.cognito
    pools = await cognito.list_user_pools(MaxResults=60)
    pool_id = next((p["Id"] for p in pools.get("UserPools", []) if p.get("Name") == POOL_NAME), None)
    if pool_id is None:
        created = await cognito.create_user_pool(
            PoolName=POOL_NAME,
            UserPoolTier="ESSENTIALS",
            UsernameAttributes=["email"],
            UsernameConfiguration={"CaseSensitive": False},
            AutoVerifiedAttributes=["email"],
            MfaConfiguration="OFF",
            Policies={"SignInPolicy": {"AllowedFirstAuthFactors": ["PASSWORD", "EMAIL_OTP"]}},
            AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        )
        pool_id = created["UserPool"]["Id"]
        log.info("created user pool", extra={"user_pool_id": pool_id})
    clients_page = await cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)
    client_id = next(
        (c["ClientId"] for c in clients_page.get("UserPoolClients", []) if c.get("ClientName") == CLIENT_NAME), None
    )
    if client_id is None:
        created_client = await cognito.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=CLIENT_NAME,
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            AuthSessionValidity=AUTH_SESSION_VALIDITY_MINUTES,
            PreventUserExistenceErrors="ENABLED",
            EnableTokenRevocation=True,
            ReadAttributes=["email", "email_verified", "name"],
            AccessTokenValidity=60,
            IdTokenValidity=60,
            RefreshTokenValidity=30,
            TokenValidityUnits={"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "days"},
        )
        client_id = created_client["UserPoolClient"]["ClientId"]
    return PoolIds(user_pool_id=pool_id, app_client_id=client_id)


def _property_item(prop: DemoProperty) -> dict[str, Any]:
    return {
        **property_key(prop.property_id),
        "property_id": {"S": prop.property_id},
        "name": {"S": prop.name},
        "description": {"S": prop.description},
        "capacity": {"N": str(prop.capacity)},
        "nightly_rate_cents": {"N": str(prop.nightly_rate_cents)},
        "currency": {"S": prop.currency},
    }


async def load_demo_data(clients: AwsClients, table_name: str) -> None:
    """Put the demo properties unless they are there already."""
    for prop in DEMO_PROPERTIES:
        try:
            await clients.dynamodb.put_item(
                TableName=table_name,
                Item=_property_item(prop),
                ConditionExpression=f"attribute_not_exists({PK}) AND attribute_not_exists({SK})",
            )
        except clients.dynamodb.exceptions.ConditionalCheckFailedException:
            continue
