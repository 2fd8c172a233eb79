"""Chat sessions and their turns in the single table (see keys.py), with a time to live.

The session item is the commit point of a turn: a turn item is written first (overwriting whatever an
unfinished turn of the same number left), then the session item moves on to the next turn number under the
condition that this turn still holds the lease. Turn items numbered at or above the session's turn count are
never read. Owner binding is a conditional write, so two replicas can never bind one session to two people.

Time to live: a session nobody has signed into (no owner) is kept `anonymous_ttl_seconds` after its last turn
(its turn items too), a bound one until the `expires_at` the service asks for (24 h by default). A session is
created unbound, and whether it is bound when a turn is recorded is read from the session item, which only the
turn holding the lease can bind meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb.keys import (
    PK,
    SK,
    TTL_ATTRIBUTE,
    chat_partition,
    chat_session_key,
    chat_turn_key,
    chat_turn_sort,
)
from gateway.domain import (
    AssistantText,
    ConversationEntry,
    GuestId,
    JsonObject,
    Sub,
    ToolCall,
    ToolResult,
    UserText,
)
from gateway.errors import SessionNotFoundError, SessionNotOwnedError
from gateway.ports import ChatSessionRecord, ChatTurnRecord

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SERVICE = "dynamodb"


def encode_entry(entry: ConversationEntry) -> JsonObject:
    """A conversation entry as JSON."""
    if isinstance(entry, UserText):
        return {"type": "user", "text": entry.text}
    if isinstance(entry, AssistantText):
        return {"type": "assistant", "text": entry.text}
    if isinstance(entry, ToolCall):
        return {"type": "tool_call", "id": entry.call_id, "name": entry.name, "arguments": entry.arguments}
    return {"type": "tool_result", "id": entry.call_id, "name": entry.name, "ok": entry.ok, "content": entry.content}


def decode_entry(data: JsonObject) -> ConversationEntry:
    """A conversation entry from its JSON form."""
    kind = data["type"]
    if kind == "user":
        return UserText(data["text"])
    if kind == "assistant":
        return AssistantText(data["text"])
    if kind == "tool_call":
        return ToolCall(data["id"], data["name"], data["arguments"])
    if kind == "tool_result":
        return ToolResult(data["id"], data["name"], bool(data["ok"]), data["content"])
    raise ValueError(f"unknown conversation entry type {kind!r}")


def _number(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _ttl(epoch_seconds: float) -> dict[str, str]:
    return {"N": str(int(epoch_seconds) + 1)}


def _record(item: dict[str, Any]) -> ChatSessionRecord:
    owner = item.get("owner_sub", {}).get("S")
    guest = item.get("guest_id", {}).get("S")
    lease = item.get("lease_id", {}).get("S")
    return ChatSessionRecord(
        session_id=item["session_id"]["S"],
        owner_sub=Sub(owner) if owner else None,
        guest_id=GuestId(guest) if guest else None,
        next_sequence=int(item["next_sequence"]["N"]),
        turn_count=int(item["turn_count"]["N"]),
        memory=json.loads(item.get("memory", {}).get("S", "{}")),
        lease_id=lease,
        lease_until=float(item["lease_until"]["N"]) if "lease_until" in item else 0.0,
        kept_lease=item.get("kept_lease", {}).get("S"),
    )


class DynamoChatSessionStore:
    """Implements the `ChatSessionStore` port."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, *, anonymous_ttl_seconds: float | None = None
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._anonymous_ttl_seconds = anonymous_ttl_seconds

    def _anonymous_expiry(self, expires_at: float) -> float:
        """When an unbound session (or turn) asked to live until `expires_at` expires."""
        if self._anonymous_ttl_seconds is None:
            return expires_at
        return min(expires_at, time.time() + self._anonymous_ttl_seconds)

    async def _is_bound(self, session_id: str) -> bool:
        with translated(SERVICE, "GetItem"):
            answer = await self._dynamodb.get_item(
                TableName=self._table,
                Key=chat_session_key(session_id),
                ConsistentRead=True,
                ProjectionExpression="owner_sub",
            )
        return "owner_sub" in answer.get("Item", {})

    async def create(
        self, session_id: str, *, lease_id: str, lease_until: float, expires_at: float
    ) -> ChatSessionRecord:
        """A new session holding its first turn's lease; the random id is never reused (conditional put).

        It is unbound, so it lives for the anonymous time to live at most.
        """
        expires_at = self._anonymous_expiry(expires_at)
        item: dict[str, Any] = {
            **chat_session_key(session_id),
            "session_id": {"S": session_id},
            "next_sequence": _number(1),
            "turn_count": _number(0),
            "memory": {"S": "{}"},
            "lease_id": {"S": lease_id},
            "lease_until": _number(lease_until),
            "created_at": _number(time.time()),
            TTL_ATTRIBUTE: _ttl(expires_at),
        }
        with translated(SERVICE, "PutItem"):
            await self._dynamodb.put_item(
                TableName=self._table, Item=item, ConditionExpression=f"attribute_not_exists({PK})"
            )
        return _record(item)

    async def get(self, session_id: str) -> ChatSessionRecord | None:
        """The session, unless it is unknown or past its time to live (DynamoDB deletes expired items late)."""
        with translated(SERVICE, "GetItem"):
            answer = await self._dynamodb.get_item(
                TableName=self._table, Key=chat_session_key(session_id), ConsistentRead=True
            )
        item = answer.get("Item")
        if item is None or float(item[TTL_ATTRIBUTE]["N"]) <= time.time():
            return None
        return _record(item)

    async def acquire(
        self, session_id: str, *, owner_sub: Sub | None, lease_id: str, lease_until: float, now: float
    ) -> ChatSessionRecord | None:
        """Take the turn lease when it is free or expired and the owner is still `owner_sub`."""
        owner_condition = "attribute_not_exists(owner_sub)" if owner_sub is None else "owner_sub = :owner"
        values: dict[str, Any] = {":lease": {"S": lease_id}, ":until": _number(lease_until), ":now": _number(now)}
        if owner_sub is not None:
            values[":owner"] = {"S": owner_sub}
        with translated(SERVICE, "UpdateItem"):
            try:
                answer = await self._dynamodb.update_item(
                    TableName=self._table,
                    Key=chat_session_key(session_id),
                    UpdateExpression="SET lease_id = :lease, lease_until = :until",
                    ConditionExpression=(
                        f"attribute_exists({PK}) AND {TTL_ATTRIBUTE} > :now "
                        f"AND (attribute_not_exists(lease_id) OR lease_until < :now) AND {owner_condition}"
                    ),
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
                return _record(answer["Attributes"])
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                pass
        if await self.get(session_id) is None:
            raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
        return None

    async def recent_turns(self, session_id: str, *, before: int, limit: int, now: float) -> list[ChatTurnRecord]:
        """The last `limit` unexpired committed turns, oldest first."""
        if before <= 0 or limit <= 0:
            return []
        with translated(SERVICE, "Query"):
            answer = await self._dynamodb.query(
                TableName=self._table,
                KeyConditionExpression=f"{PK} = :pk AND {SK} BETWEEN :first AND :last",
                ExpressionAttributeValues={
                    ":pk": {"S": chat_partition(session_id)},
                    ":first": {"S": chat_turn_sort(0)},
                    ":last": {"S": chat_turn_sort(before - 1)},
                },
                ScanIndexForward=False,
                Limit=limit,
                ConsistentRead=True,
            )
        turns: list[ChatTurnRecord] = []
        for item in reversed(answer.get("Items", [])):
            if float(item[TTL_ATTRIBUTE]["N"]) <= now:
                continue
            entries = tuple(decode_entry(e) for e in json.loads(item["entries"]["S"]))
            turns.append(ChatTurnRecord(int(item["number"]["N"]), entries, item["stop_reason"]["S"]))
        return turns

    async def finish_turn(
        self,
        session_id: str,
        *,
        lease_id: str,
        turn: ChatTurnRecord,
        next_sequence: int,
        memory: JsonObject,
        expires_at: float,
        bound: bool | None = None,
    ) -> bool:
        """Write the turn, then advance the session and release the lease if this turn still holds it.

        Both live until `expires_at` when the session is bound, else for the anonymous time to live at most.
        A caller that knows whether the session is bound says so (`bound`), which saves a read.
        """
        if bound is None and self._anonymous_ttl_seconds is not None:
            bound = await self._is_bound(session_id)
        if self._anonymous_ttl_seconds is not None and not bound:
            expires_at = self._anonymous_expiry(expires_at)
        turn_item: dict[str, Any] = {
            **chat_turn_key(session_id, turn.number),
            "number": _number(turn.number),
            "entries": {"S": json.dumps([encode_entry(e) for e in turn.entries], separators=(",", ":"))},
            "stop_reason": {"S": turn.stop_reason},
            TTL_ATTRIBUTE: _ttl(expires_at),
        }
        with translated(SERVICE, "PutItem"):
            await self._dynamodb.put_item(TableName=self._table, Item=turn_item)
        with translated(SERVICE, "UpdateItem"):
            try:
                await self._dynamodb.update_item(
                    TableName=self._table,
                    Key=chat_session_key(session_id),
                    UpdateExpression=(
                        f"SET next_sequence = :seq, turn_count = :count, memory = :memory, {TTL_ATTRIBUTE} = :ttl "
                        "REMOVE lease_id, lease_until, kept_lease, cancel_lease"
                    ),
                    ConditionExpression="lease_id = :lease",
                    ExpressionAttributeValues={
                        ":seq": _number(next_sequence),
                        ":count": _number(turn.number + 1),
                        ":memory": {"S": json.dumps(memory, separators=(",", ":"))},
                        ":ttl": _ttl(expires_at),
                        ":lease": {"S": lease_id},
                    },
                )
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                return False
        return True

    async def release(self, session_id: str, *, lease_id: str) -> None:
        """Drop the lease if this turn still holds it."""
        # Refused when another turn holds the lease now: nothing to drop.
        with (
            translated(SERVICE, "UpdateItem"),
            contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException),
        ):
            await self._dynamodb.update_item(
                TableName=self._table,
                Key=chat_session_key(session_id),
                UpdateExpression="REMOVE lease_id, lease_until",
                ConditionExpression="lease_id = :lease",
                ExpressionAttributeValues={":lease": {"S": lease_id}},
            )

    async def bind_owner(self, session_id: str, *, sub: Sub, guest_id: GuestId | None) -> None:
        """Bind the session to `sub`, unless somebody else holds it."""
        update = "SET owner_sub = :sub"
        values: dict[str, Any] = {":sub": {"S": sub}}
        if guest_id:
            update += ", guest_id = :guest"
            values[":guest"] = {"S": guest_id}
        with translated(SERVICE, "UpdateItem"):
            try:
                await self._dynamodb.update_item(
                    TableName=self._table,
                    Key=chat_session_key(session_id),
                    UpdateExpression=update,
                    ConditionExpression=(
                        f"attribute_exists({PK}) AND (attribute_not_exists(owner_sub) OR owner_sub = :sub)"
                    ),
                    ExpressionAttributeValues=values,
                )
                return
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                pass
        if await self.get(session_id) is None:
            raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
        raise SessionNotOwnedError("this chat belongs to somebody else; start a new chat")
