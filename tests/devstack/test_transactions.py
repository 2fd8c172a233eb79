"""The emulator's TransactWriteItems (`devstack.transactions`): all actions or none, DynamoDB's cancellation reasons.

It rolls back the items a transaction touched instead of keeping a copy of the whole table; these tests check,
over the wire through aioboto3, that what a cancelled transaction wrote is gone and what it overwrote is back.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.adapters.aws import AwsClients


def item(pk: str, sk: str = "A", **more: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, **{name: {"S": value} for name, value in more.items()}}


async def read(aws: AwsClients, table: str, pk: str, sk: str = "A") -> dict[str, Any] | None:
    found = await aws.dynamodb.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True)
    value: dict[str, Any] | None = found.get("Item")
    return value


async def test_a_transaction_writes_all_of_its_actions(aws: AwsClients, small_table: str) -> None:
    await aws.dynamodb.put_item(TableName=small_table, Item=item("old", note="before"))
    await aws.dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": small_table, "Item": item("new"), "ConditionExpression": "attribute_not_exists(PK)"}},
            {
                "Update": {
                    "TableName": small_table,
                    "Key": {"PK": {"S": "old"}, "SK": {"S": "A"}},
                    "UpdateExpression": "SET note = :n",
                    "ExpressionAttributeValues": {":n": {"S": "after"}},
                }
            },
        ]
    )
    assert await read(aws, small_table, "new") == item("new")
    assert await read(aws, small_table, "old") == item("old", note="after")


async def test_a_failed_condition_cancels_the_whole_transaction_and_puts_every_item_back(
    aws: AwsClients, small_table: str
) -> None:
    await aws.dynamodb.put_item(TableName=small_table, Item=item("kept", note="before"))
    await aws.dynamodb.put_item(TableName=small_table, Item=item("taken", owner="someone"))
    await aws.dynamodb.put_item(TableName=small_table, Item=item("gone", note="still here"))
    with pytest.raises(ClientError) as refused:
        await aws.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": small_table, "Item": item("fresh")}},
                {"Put": {"TableName": small_table, "Item": item("kept", note="overwritten")}},
                {"Delete": {"TableName": small_table, "Key": {"PK": {"S": "gone"}, "SK": {"S": "A"}}}},
                {
                    "Put": {
                        "TableName": small_table,
                        "Item": item("taken", owner="me"),
                        "ConditionExpression": "attribute_not_exists(PK)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
    error = refused.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = error["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["None", "None", "None", "ConditionalCheckFailed"]
    assert reasons[3]["Item"] == item("taken", owner="someone")
    assert await read(aws, small_table, "fresh") is None
    assert await read(aws, small_table, "kept") == item("kept", note="before")
    assert await read(aws, small_table, "gone") == item("gone", note="still here")
    assert await read(aws, small_table, "taken") == item("taken", owner="someone")


async def test_two_actions_on_one_item_are_refused_and_nothing_is_written(aws: AwsClients, small_table: str) -> None:
    with pytest.raises(ClientError) as refused:
        await aws.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": small_table, "Item": item("twice", note="one")}},
                {"Put": {"TableName": small_table, "Item": item("twice", note="two")}},
            ]
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert await read(aws, small_table, "twice") is None


async def test_a_condition_check_alone_writes_nothing_and_can_cancel(aws: AwsClients, small_table: str) -> None:
    await aws.dynamodb.put_item(TableName=small_table, Item=item("guard", state="open"))
    with pytest.raises(ClientError) as refused:
        await aws.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": small_table, "Item": item("child")}},
                {
                    "ConditionCheck": {
                        "TableName": small_table,
                        "Key": {"PK": {"S": "guard"}, "SK": {"S": "A"}},
                        "ConditionExpression": "#s = :closed",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": {":closed": {"S": "closed"}},
                    }
                },
            ]
        )
    assert [r["Code"] for r in refused.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert await read(aws, small_table, "child") is None
    assert await read(aws, small_table, "guard") == item("guard", state="open")
