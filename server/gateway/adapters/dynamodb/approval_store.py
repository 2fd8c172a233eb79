"""Actions held for a person's approval, in the chat session's partition of the single table (see keys.py).

One item per approval, `CHAT#<session_id>` / `APPROVAL#<approval_id>`. Its `state` moves from PENDING to
APPROVED, DECLINED or WITHDRAWN exactly once, by a conditional update: of fifty concurrent decisions on one
approval, on any replicas, one wins and the others are told it was used. An expired approval stays PENDING
until a decision is refused or a new message withdraws it; the item lives as long as its session (TTL).
The item holds no secret: the held call's arguments are a property, dates and guests, or a reservation id.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb.keys import (
    CHAT_APPROVAL_PREFIX,
    PK,
    SK,
    TTL_ATTRIBUTE,
    chat_approval_key,
    chat_partition,
)
from gateway.domain import ApprovalDecision, PendingAction, Sub, ToolCall
from gateway.errors import ApprovalAlreadyUsedError, ApprovalExpiredError, ApprovalNotFoundError
from gateway.ports import ApprovalOutcome

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SERVICE = "dynamodb"
PENDING = "PENDING"


def _action(item: dict[str, Any]) -> PendingAction:
    return PendingAction(
        approval_id=item["approval_id"]["S"],
        session_id=item["session_id"]["S"],
        owner_sub=Sub(item["owner_sub"]["S"]),
        call=ToolCall(item["call_id"]["S"], item["tool_name"]["S"], json.loads(item["arguments"]["S"])),
        summary=item["summary"]["S"],
        decide_by=float(item["decide_by"]["N"]),
    )


class DynamoApprovalStore:
    """Implements the `ApprovalStore` port."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    async def hold(self, action: PendingAction, *, expires_at: float) -> None:
        """Store the pending action; its random id is never reused (conditional put)."""
        item: dict[str, Any] = {
            **chat_approval_key(action.session_id, action.approval_id),
            "approval_id": {"S": action.approval_id},
            "session_id": {"S": action.session_id},
            "owner_sub": {"S": action.owner_sub},
            "call_id": {"S": action.call.call_id},
            "tool_name": {"S": action.call.name},
            "arguments": {"S": json.dumps(action.call.arguments, sort_keys=True)},
            "summary": {"S": action.summary},
            "decide_by": {"N": repr(action.decide_by)},
            "state": {"S": PENDING},
            TTL_ATTRIBUTE: {"N": str(int(expires_at) + 1)},
        }
        # The id is random and never reused: a failed condition means an earlier try of this very write landed and
        # its answer was lost (botocore then sent it again). It is stored.
        with (
            translated(SERVICE, "PutItem"),
            contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException),
        ):
            await self._dynamodb.put_item(
                TableName=self._table, Item=item, ConditionExpression=f"attribute_not_exists({PK})"
            )

    async def _get(self, session_id: str, approval_id: str) -> dict[str, Any] | None:
        with translated(SERVICE, "GetItem"):
            answer = await self._dynamodb.get_item(
                TableName=self._table, Key=chat_approval_key(session_id, approval_id), ConsistentRead=True
            )
        return answer.get("Item")

    async def decide(self, session_id: str, decision: ApprovalDecision, *, owner_sub: Sub, now: float) -> PendingAction:
        """Move the approval from PENDING to APPROVED or DECLINED once; explain a refusal by reading it back."""
        outcome = "APPROVED" if decision.approve else "DECLINED"
        with translated(SERVICE, "UpdateItem"):
            try:
                answer = await self._dynamodb.update_item(
                    TableName=self._table,
                    Key=chat_approval_key(session_id, decision.approval_id),
                    UpdateExpression="SET #state = :outcome, decided_at = :now",
                    ConditionExpression=(
                        f"attribute_exists({PK}) AND #state = :pending AND owner_sub = :sub AND decide_by > :now"
                    ),
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={
                        ":outcome": {"S": outcome},
                        ":pending": {"S": PENDING},
                        ":sub": {"S": owner_sub},
                        ":now": {"N": repr(now)},
                    },
                    ReturnValues="ALL_NEW",
                )
                return _action(answer["Attributes"])
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                pass
        item = await self._get(session_id, decision.approval_id)
        if item is None or item["owner_sub"]["S"] != owner_sub:
            raise ApprovalNotFoundError("no such approval in this chat session")
        if item["state"]["S"] != PENDING:
            raise ApprovalAlreadyUsedError("this approval was already used; it runs once")
        raise ApprovalExpiredError("this approval has expired; nothing was done. Ask the agent again")

    async def withdraw(self, session_id: str, *, call_id: str, now: float) -> ApprovalOutcome:
        """Find the call's approval in the session's partition and withdraw it if it is still pending."""
        with translated(SERVICE, "Query"):
            page = await self._dynamodb.query(
                TableName=self._table,
                KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :prefix)",
                FilterExpression="call_id = :call",
                ExpressionAttributeValues={
                    ":pk": {"S": chat_partition(session_id)},
                    ":prefix": {"S": CHAT_APPROVAL_PREFIX},
                    ":call": {"S": call_id},
                },
                ConsistentRead=True,
            )
        items = page.get("Items", [])
        if not items:
            return ""
        item = items[-1]
        if item["state"]["S"] != PENDING:
            return str(item["state"]["S"])
        with translated(SERVICE, "UpdateItem"):
            try:
                await self._dynamodb.update_item(
                    TableName=self._table,
                    Key={PK: item[PK], SK: item[SK]},
                    UpdateExpression="SET #state = :withdrawn, decided_at = :now",
                    ConditionExpression="#state = :pending",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={
                        ":withdrawn": {"S": "WITHDRAWN"},
                        ":pending": {"S": PENDING},
                        ":now": {"N": repr(now)},
                    },
                )
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                current = await self._get(session_id, item["approval_id"]["S"])
                return str(current["state"]["S"]) if current else ""
        return "EXPIRED" if float(item["decide_by"]["N"]) <= now else "WITHDRAWN"
