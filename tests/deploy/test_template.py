"""deploy/aws/booking-gateway.yaml: valid CloudFormation, outputs named after `gateway serve`'s flags, and the one
declaration of the table, the user pool and the app client that the local stack is made from.

The table part is deployed through the emulator's own CloudFormation and compared with the table the devstack
bootstrap created; what the emulator's CloudFormation does not apply (TTL, point-in-time recovery, encryption,
deletion protection) and the user pool and client (which it does not support) are compared property by property
with what the bootstrap created. Changing the template, the bootstrap or the code's key names alone fails here.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb import keys
from gateway.devstack import DevStack
from gateway.devstack.bootstrap import (
    LOCAL_PARAMETERS,
    TABLE_RESOURCE,
    USER_POOL_CLIENT_RESOURCE,
    USER_POOL_RESOURCE,
    ensure_table,
    ensure_user_pool,
    local_template_context,
)
from gateway.devstack.template import DeployTemplate, TemplateError, template_path
from tests.deploy.support import TEMPLATE, VENV_BIN, camel_to_flag, differences, serve_options

# Outputs that are not `gateway serve` values, and what they are for.
NOT_SERVE_OUTPUTS = {"GatewayRoleArn"}  # the pods' role (Pod Identity), not a gateway setting
# What `gateway serve` must be told to use a deployed stack rather than the embedded emulator.
REQUIRED_SERVE_OUTPUTS = {"aws-region", "table-name", "user-pool-id", "app-client-id"}


@pytest.fixture(scope="module")
def template() -> DeployTemplate:
    return DeployTemplate.load(TEMPLATE)


def test_the_bootstrap_reads_the_repositorys_template() -> None:
    assert template_path().resolve() == TEMPLATE.resolve()


def test_cfn_lint_finds_nothing() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"cfn-lint:\n{result.stdout}{result.stderr}"


def test_outputs_are_named_after_the_serve_flags_they_are_values_of(template: DeployTemplate) -> None:
    options = serve_options()
    outputs = template.body["Outputs"]
    for name, output in outputs.items():
        if name in NOT_SERVE_OUTPUTS:
            continue
        flag = camel_to_flag(name)
        assert flag in options, f"output {name}: no `gateway serve --{flag}`"
        option = options[flag]
        assert output["Description"] == f"gateway serve {option.flag} ({option.env})", name
    assert {camel_to_flag(n) for n in outputs} >= REQUIRED_SERVE_OUTPUTS


def test_the_tables_keys_index_and_ttl_are_the_names_the_code_uses(template: DeployTemplate) -> None:
    table = template.resource(TABLE_RESOURCE)["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": keys.PK, "KeyType": "HASH"},
        {"AttributeName": keys.SK, "KeyType": "RANGE"},
    ]
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == keys.GSI1
    assert index["KeySchema"] == [
        {"AttributeName": keys.GSI1PK, "KeyType": "HASH"},
        {"AttributeName": keys.GSI1SK, "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": keys.TTL_ATTRIBUTE, "Enabled": True}


def test_a_deployment_by_default_is_protected_and_passwordless(template: DeployTemplate) -> None:
    context = template.context(region="eu-west-1")
    table = template.properties(TABLE_RESOURCE, context)
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionProtectionEnabled"] == "true"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    pool = template.properties(USER_POOL_RESOURCE, context)
    assert pool["UserPoolTier"] == "ESSENTIALS"
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["UsernameConfiguration"] == {"CaseSensitive": False}
    assert "EMAIL_OTP" in pool["Policies"]["SignInPolicy"]["AllowedFirstAuthFactors"]
    assert pool["MfaConfiguration"] == "OFF"
    assert pool["DeletionProtection"] == "ACTIVE"
    client = template.properties(
        USER_POOL_CLIENT_RESOURCE, template.context(region="eu-west-1", refs={"UserPool": "p"})
    )
    assert client["GenerateSecret"] is False
    assert client["ExplicitAuthFlows"] == ["ALLOW_USER_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    assert client["EnableTokenRevocation"] is True
    assert client["PreventUserExistenceErrors"] == "ENABLED"
    assert 3 <= client["AuthSessionValidity"] <= 10


def test_a_verified_ses_identity_sends_the_codes_when_one_is_given(template: DeployTemplate) -> None:
    arn = "arn:aws:ses:eu-west-1:123456789012:identity/example.com"
    context = template.context(
        {"SesSourceArn": arn, "SesFromAddress": "Booking <no-reply@example.com>"}, region="eu-west-1"
    )
    pool = template.properties(USER_POOL_RESOURCE, context)
    assert pool["EmailConfiguration"] == {
        "EmailSendingAccount": "DEVELOPER",
        "SourceArn": arn,
        "From": "Booking <no-reply@example.com>",
    }


def _cloudformation(devstack: DevStack) -> Any:
    """A CloudFormation client on the emulator (an async context manager)."""
    target = devstack.endpoints.target
    session = aioboto3.Session(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        region_name=target.region,
    )
    return session.client("cloudformation", endpoint_url=target.endpoint_url)


def _table_shape(described: dict[str, Any]) -> dict[str, Any]:
    """What the emulator's CloudFormation applies of a table: keys, attributes, the index, the billing mode."""
    return {
        "AttributeDefinitions": sorted(described["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": described["KeySchema"],
        "GlobalSecondaryIndexes": [
            {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
            for index in described.get("GlobalSecondaryIndexes", [])
        ],
        "BillingMode": described["BillingModeSummary"]["BillingMode"],
    }


async def test_the_table_deployed_by_cloudformation_is_the_table_the_bootstrap_created(
    devstack: DevStack, aws: AwsClients, table: str, template: DeployTemplate
) -> None:
    stack_table = f"cfn-{uuid.uuid4().hex[:10]}"
    parameters = template.body["Parameters"]
    body = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {name: parameters[name] for name in ("TableName", "TableDeletionProtection")},
        "Resources": {TABLE_RESOURCE: template.resource(TABLE_RESOURCE)},
    }
    stack_name = f"booking-gateway-{uuid.uuid4().hex[:8]}"
    async with _cloudformation(devstack) as cloudformation:
        await cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(body),
            Parameters=[
                {"ParameterKey": "TableName", "ParameterValue": stack_table},
                {
                    "ParameterKey": "TableDeletionProtection",
                    "ParameterValue": LOCAL_PARAMETERS["TableDeletionProtection"],
                },
            ],
        )
        try:
            stacks = await cloudformation.describe_stacks(StackName=stack_name)
            assert stacks["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
            deployed = (await aws.dynamodb.describe_table(TableName=stack_table))["Table"]
            bootstrapped = (await aws.dynamodb.describe_table(TableName=table))["Table"]
            assert _table_shape(dict(deployed)) == _table_shape(dict(bootstrapped))
        finally:
            await cloudformation.delete_stack(StackName=stack_name)


async def test_what_the_emulators_cloudformation_does_not_apply_the_bootstrap_did_as_the_template_says(
    devstack: DevStack, aws: AwsClients, table: str, template: DeployTemplate
) -> None:
    context = local_template_context(template, region=devstack.endpoints.region, table_name=table)
    declared = template.properties(TABLE_RESOURCE, context)
    described = (await aws.dynamodb.describe_table(TableName=table))["Table"]
    ttl = (await aws.dynamodb.describe_time_to_live(TableName=table))["TimeToLiveDescription"]
    backups = (await aws.dynamodb.describe_continuous_backups(TableName=table))["ContinuousBackupsDescription"]
    created = {
        "TableName": described["TableName"],
        "DeletionProtectionEnabled": str(described["DeletionProtectionEnabled"]).lower(),
        "SSESpecification": {"SSEEnabled": described.get("SSEDescription", {}).get("Status") == "ENABLED"},
        "TimeToLiveSpecification": {
            "AttributeName": ttl.get("AttributeName"),
            "Enabled": ttl["TimeToLiveStatus"] == "ENABLED",
        },
        "PointInTimeRecoverySpecification": {
            "PointInTimeRecoveryEnabled": backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
            == "ENABLED"
        },
    }
    # Compared through CloudFormation in the test above.
    shape = {"BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"}
    assert set(declared) - shape == set(created), "a table property is compared nowhere"
    assert differences({k: v for k, v in declared.items() if k not in shape}, created) == []


async def test_the_user_pool_and_client_are_what_the_template_declares_property_by_property(
    devstack: DevStack, aws: AwsClients, template: DeployTemplate
) -> None:
    ids = devstack.endpoints
    context = local_template_context(
        template, region=ids.region, table_name=ids.table_name, refs={USER_POOL_RESOURCE: ids.user_pool_id}
    )
    declared_pool = template.properties(USER_POOL_RESOURCE, context)
    pool = dict((await aws.cognito.describe_user_pool(UserPoolId=ids.user_pool_id))["UserPool"])
    pool["UserPoolName"] = pool.pop("Name")
    assert differences(declared_pool, pool) == []

    declared_client = template.properties(USER_POOL_CLIENT_RESOURCE, context)
    client = (await aws.cognito.describe_user_pool_client(UserPoolId=ids.user_pool_id, ClientId=ids.app_client_id))[
        "UserPoolClient"
    ]
    # GenerateSecret=false shows as the absence of a secret.
    created_client = {**client, "GenerateSecret": "ClientSecret" in client}
    assert differences(declared_client, created_client) == []


@pytest.mark.parametrize(
    ("resource", "extra"),
    [
        (TABLE_RESOURCE, {"StreamSpecification": {"StreamViewType": "NEW_IMAGE"}}),
        (USER_POOL_RESOURCE, {"UserPoolAddOns": {"AdvancedSecurityMode": "AUDIT"}}),
        (USER_POOL_CLIENT_RESOURCE, {"AllowedOAuthFlows": ["code"]}),
    ],
)
async def test_a_template_property_the_bootstrap_does_not_apply_stops_the_local_stack(
    aws: AwsClients, tmp_path: Path, template: DeployTemplate, resource: str, extra: dict[str, Any]
) -> None:
    changed = json.loads(json.dumps(template.body))
    changed["Resources"][resource]["Properties"].update(extra)
    path = tmp_path / "booking-gateway.yaml"
    path.write_text(json.dumps(changed))  # JSON is YAML
    edited = DeployTemplate.load(path)
    with pytest.raises(TemplateError) as error:
        if resource == TABLE_RESOURCE:
            await ensure_table(aws, f"drift-{uuid.uuid4().hex[:8]}", template=edited)
        else:
            await ensure_user_pool(aws, template=edited)
    assert next(iter(extra)) in str(error.value)
