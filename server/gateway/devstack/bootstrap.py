"""Create what the gateway needs in an empty AWS account: the table, the user pool and its app client, demo data.

What is created is read from the CloudFormation template deploy/aws/booking-gateway.yaml (`gateway.devstack.
template`): the local stack and a deployed stack are made from one declaration. Idempotent: running it against
an account that already has them changes nothing. It uses the same aioboto3 clients as the gateway, so it also
works against real AWS for a quick test account.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.keys import PK, SK, property_key
from gateway.devstack.template import TEMPLATE_NAME, DeployTemplate, Resolved, TemplateError

log = logging.getLogger(__name__)

# The template's logical ids of what the local stack creates.
TABLE_RESOURCE = "Table"
USER_POOL_RESOURCE = "UserPool"
USER_POOL_CLIENT_RESOURCE = "UserPoolClient"
POOL_NAME = "booking-gateway-local"
# The local stack's parameter values (like a parameter file for `aws cloudformation deploy`): test tables are
# dropped after use, and the pool's name says it is a local one.
LOCAL_PARAMETERS = {
    "UserPoolName": POOL_NAME,
    "TableDeletionProtection": "false",
    "UserPoolDeletionProtection": "INACTIVE",
}


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


def local_template_context(
    template: DeployTemplate,
    *,
    region: str,
    table_name: str | None = None,
    refs: dict[str, str] | None = None,
) -> Resolved:
    """The template evaluated with the local stack's parameter values (`LOCAL_PARAMETERS`, and the table name
    when given: the template's default otherwise)."""
    parameters = dict(LOCAL_PARAMETERS) if table_name is None else {**LOCAL_PARAMETERS, "TableName": table_name}
    return template.context(parameters, region=region, refs=refs)


def _take(properties: dict[str, Any], known: set[str], what: str) -> dict[str, Any]:
    unknown = set(properties) - known
    if unknown:
        raise TemplateError(
            f"{what} in {TEMPLATE_NAME} has properties the local stack does not create: {sorted(unknown)}; "
            "teach gateway.devstack.bootstrap to apply them"
        )
    return properties


def _as_bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


@dataclass(frozen=True)
class TableCalls:
    """The DynamoDB calls that create the table the template declares."""

    create_table: dict[str, Any]
    update_time_to_live: dict[str, Any]
    update_continuous_backups: dict[str, Any]


def table_calls(properties: dict[str, Any]) -> TableCalls:
    """The template's `AWS::DynamoDB::Table` properties as CreateTable, UpdateTimeToLive and
    UpdateContinuousBackups arguments."""
    props = _take(
        dict(properties),
        {
            "TableName",
            "BillingMode",
            "AttributeDefinitions",
            "KeySchema",
            "GlobalSecondaryIndexes",
            "TimeToLiveSpecification",
            "PointInTimeRecoverySpecification",
            "DeletionProtectionEnabled",
            "SSESpecification",
        },
        "the table",
    )
    name = props["TableName"]
    create = {
        "TableName": name,
        "BillingMode": props["BillingMode"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "GlobalSecondaryIndexes": props.get("GlobalSecondaryIndexes", []),
        "DeletionProtectionEnabled": _as_bool(props.get("DeletionProtectionEnabled", False)),
        "SSESpecification": {"Enabled": _as_bool(props.get("SSESpecification", {}).get("SSEEnabled", False))},
    }
    ttl = props["TimeToLiveSpecification"]
    pitr = props.get("PointInTimeRecoverySpecification", {})
    return TableCalls(
        create_table=create,
        update_time_to_live={
            "TableName": name,
            "TimeToLiveSpecification": {"Enabled": _as_bool(ttl["Enabled"]), "AttributeName": ttl["AttributeName"]},
        },
        update_continuous_backups={
            "TableName": name,
            "PointInTimeRecoverySpecification": {
                "PointInTimeRecoveryEnabled": _as_bool(pitr.get("PointInTimeRecoveryEnabled", False))
            },
        },
    )


_POOL_PROPERTIES = {
    "UserPoolTier",
    "UsernameAttributes",
    "UsernameConfiguration",
    "AutoVerifiedAttributes",
    "MfaConfiguration",
    "Policies",
    "AdminCreateUserConfig",
    "EmailConfiguration",
    "DeletionProtection",
}


def user_pool_call(properties: dict[str, Any]) -> dict[str, Any]:
    """The template's `AWS::Cognito::UserPool` properties as CreateUserPool arguments (the same names, but
    `UserPoolName` is `PoolName`)."""
    props = _take(dict(properties), {"UserPoolName", *_POOL_PROPERTIES}, "the user pool")
    return {"PoolName": props.pop("UserPoolName"), **props}


_CLIENT_PROPERTIES = {
    "UserPoolId",
    "ClientName",
    "GenerateSecret",
    "ExplicitAuthFlows",
    "AuthSessionValidity",
    "PreventUserExistenceErrors",
    "EnableTokenRevocation",
    "ReadAttributes",
    "AccessTokenValidity",
    "IdTokenValidity",
    "RefreshTokenValidity",
    "TokenValidityUnits",
}


def user_pool_client_call(properties: dict[str, Any]) -> dict[str, Any]:
    """The template's `AWS::Cognito::UserPoolClient` properties as CreateUserPoolClient arguments."""
    return _take(dict(properties), _CLIENT_PROPERTIES, "the app client")


async def ensure_table(clients: AwsClients, table_name: str, *, template: DeployTemplate | None = None) -> None:
    """Create the single table as the template declares it (GSI, TTL, point-in-time recovery) unless it exists."""
    existing = await clients.dynamodb.list_tables()
    if table_name in existing.get("TableNames", []):
        return
    template = template or DeployTemplate.load()
    region = clients.dynamodb.meta.region_name
    context = local_template_context(template, region=region, table_name=table_name)
    calls = table_calls(template.properties(TABLE_RESOURCE, context))
    await clients.dynamodb.create_table(**calls.create_table)
    # Real DynamoDB takes TTL and backup settings once the table is ACTIVE (the emulator's is at once).
    await clients.dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    await clients.dynamodb.update_time_to_live(**calls.update_time_to_live)
    await clients.dynamodb.update_continuous_backups(**calls.update_continuous_backups)
    log.info("created table", extra={"table": table_name})


async def ensure_user_pool(clients: AwsClients, *, template: DeployTemplate | None = None) -> PoolIds:
    """Find or create the user pool and app client the template declares, for passwordless EMAIL_OTP sign-in.

    The settings follow the Cognito reference: Essentials tier, email as the case-insensitive username,
    EMAIL_OTP allowed as a first factor, MFA off; the client allows USER_AUTH and refresh, has no secret, and
    hides whether a user exists. They are read from deploy/aws/booking-gateway.yaml, not repeated here.
    """
    template = template or DeployTemplate.load()
    region = clients.cognito.meta.region_name
    context = local_template_context(template, region=region)
    pool_call = user_pool_call(template.properties(USER_POOL_RESOURCE, context))
    cognito = clients.cognito
    pools = await cognito.list_user_pools(MaxResults=60)
    pool_name = pool_call["PoolName"]
    pool_id = next((p["Id"] for p in pools.get("UserPools", []) if p.get("Name") == pool_name), None)
    if pool_id is None:
        created = await cognito.create_user_pool(**pool_call)
        pool_id = created["UserPool"]["Id"]
        log.info("created user pool", extra={"user_pool_id": pool_id})
    context = local_template_context(template, region=region, refs={USER_POOL_RESOURCE: pool_id})
    client_call = user_pool_client_call(template.properties(USER_POOL_CLIENT_RESOURCE, context))
    clients_page = await cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)
    client_id = next(
        (
            c["ClientId"]
            for c in clients_page.get("UserPoolClients", [])
            if c.get("ClientName") == client_call["ClientName"]
        ),
        None,
    )
    if client_id is None:
        created_client = await cognito.create_user_pool_client(**client_call)
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
