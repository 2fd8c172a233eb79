"""The embedded emulator: serialised request handling keeps DynamoDB transactions correct under concurrency."""

from __future__ import annotations

import asyncio
import uuid

from gateway.adapters.aws import open_aws_clients
from gateway.devstack import DevStack


async def test_concurrent_conflicting_transactions_have_one_winner_and_leave_nothing_behind(
    devstack: DevStack,
) -> None:
    table = devstack.endpoints.table_name
    prefix = f"EMUTEST#{uuid.uuid4().hex}"
    async with open_aws_clients(devstack.endpoints.target) as clients:
        dynamodb = clients.dynamodb

        async def contender(n: int) -> bool:
            # Every contender wants lock items 0..2; each also writes its own marker item.
            items = [
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"PK": {"S": prefix}, "SK": {"S": f"LOCK#{night}"}, "owner": {"N": str(n)}},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
                for night in range(3)
            ]
            items.append({"Put": {"TableName": table, "Item": {"PK": {"S": prefix}, "SK": {"S": f"MARK#{n}"}}}})
            try:
                await dynamodb.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
            except dynamodb.exceptions.TransactionCanceledException:
                return False
            return True

        outcomes = await asyncio.gather(*(contender(n) for n in range(24)))
        assert outcomes.count(True) == 1
        winner = outcomes.index(True)
        page = await dynamodb.query(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": prefix}},
        )
        items = page["Items"]
        assert sorted(item["SK"]["S"] for item in items) == ["LOCK#0", "LOCK#1", "LOCK#2", f"MARK#{winner}"]
        assert {item["owner"]["N"] for item in items if "owner" in item} == {str(winner)}
