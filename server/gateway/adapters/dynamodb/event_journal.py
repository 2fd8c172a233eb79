"""Kept events of keep_running chat turns in the single table (see keys.py), expiring with their session.

A flush is one write call: `BatchWriteItem` of one `EVENTS#<last>` item per batch (split only when a batch would
come near DynamoDB's 400 KB item limit) and one `SEALED#<seq>` item per sealed TokenDelivery. A follower reads
with one `Query` from the first batch it needs up to the `SESSION` item, so one read gives it new events, the
sealed deliveries and the state of the turn's lease. The session item carries `kept_lease` / `kept_from` (the
keep_running turn holding the lease and its first sequence), `resume_verifier` (a digest of the turn's resume
token, which cannot open a sealed delivery) and `cancel_lease` (a CancelTurn for that lease).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb.keys import (
    CHAT_EVENTS_PREFIX,
    CHAT_SEALED_PREFIX,
    CHAT_SESSION_SORT,
    PK,
    SK,
    TTL_ATTRIBUTE,
    chat_events_sort,
    chat_partition,
    chat_sealed_sort,
    chat_session_key,
)
from gateway.domain import Sub
from gateway.ports import JournalPage, KeptEvent, KeptSession, SealedDelivery

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SERVICE = "dynamodb"
# Well under DynamoDB's 400 KB per item, keys and attribute names included.
MAX_BATCH_BYTES = 300_000
# BatchWriteItem takes at most 25 items.
_MAX_BATCH_ITEMS = 25


def _ttl(epoch_seconds: float) -> dict[str, str]:
    return {"N": str(int(epoch_seconds) + 1)}


def _chunks(events: Sequence[KeptEvent]) -> list[list[dict[str, Any]]]:
    """The events as JSON objects, in runs that each fit one item."""
    runs: list[list[dict[str, Any]]] = [[]]
    size = 0
    for event in events:
        encoded = {"s": event.sequence, **event.body}
        length = len(json.dumps(encoded, separators=(",", ":")))
        if runs[-1] and size + length > MAX_BATCH_BYTES:
            runs.append([])
            size = 0
        runs[-1].append(encoded)
        size += length
    return [run for run in runs if run]


class DynamoChatEventJournal:
    """Implements the `ChatEventJournal` port."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, *, anonymous_ttl_seconds: float | None = None
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._anonymous_ttl_seconds = anonymous_ttl_seconds

    async def mark_kept(self, session_id: str, *, lease_id: str, kept_from: int, resume_verifier: str) -> None:
        """Set `kept_lease`, `kept_from` and `resume_verifier` on the session held by `lease_id`."""
        with translated(SERVICE, "UpdateItem"):
            await self._dynamodb.update_item(
                TableName=self._table,
                Key=chat_session_key(session_id),
                UpdateExpression="SET kept_lease = :lease, kept_from = :from, resume_verifier = :verifier "
                "REMOVE cancel_lease",
                ConditionExpression="lease_id = :lease",
                ExpressionAttributeValues={
                    ":lease": {"S": lease_id},
                    ":from": {"N": str(kept_from)},
                    ":verifier": {"S": resume_verifier},
                },
            )

    async def append(
        self,
        session_id: str,
        events: Sequence[KeptEvent],
        sealed: Sequence[SealedDelivery],
        *,
        expires_at: float,
        bound: bool,
    ) -> None:
        """One BatchWriteItem (items it leaves unprocessed are sent again)."""
        if not bound and self._anonymous_ttl_seconds is not None:
            expires_at = min(expires_at, time.time() + self._anonymous_ttl_seconds)
        partition = {"S": chat_partition(session_id)}
        items: list[dict[str, Any]] = []
        for run in _chunks(events):
            items.append(
                {
                    PK: partition,
                    SK: {"S": chat_events_sort(run[-1]["s"])},
                    "first": {"N": str(run[0]["s"])},
                    "events": {"S": json.dumps(run, separators=(",", ":"))},
                    TTL_ATTRIBUTE: _ttl(expires_at),
                }
            )
        for delivery in sealed:
            items.append(
                {
                    PK: partition,
                    SK: {"S": chat_sealed_sort(delivery.sequence)},
                    "sealed": {"B": delivery.sealed},
                    "sealed_until": {"N": repr(delivery.sealed_until)},
                    TTL_ATTRIBUTE: _ttl(delivery.sealed_until),
                }
            )
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items]
        while requests:
            batch, requests = requests[:_MAX_BATCH_ITEMS], requests[_MAX_BATCH_ITEMS:]
            while batch:
                with translated(SERVICE, "BatchWriteItem"):
                    answer = await self._dynamodb.batch_write_item(RequestItems={self._table: batch})
                batch = list(answer.get("UnprocessedItems", {}).get(self._table, []))

    async def read(self, session_id: str, *, after: int) -> JournalPage:
        """One consistent Query from the batch holding `after + 1` up to the session item (paged if large)."""
        events: list[KeptEvent] = []
        sealed: dict[int, SealedDelivery] = {}
        session: KeptSession | None = None
        now = time.time()
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": f"{PK} = :pk AND {SK} BETWEEN :from AND :to",
            "ExpressionAttributeValues": {
                ":pk": {"S": chat_partition(session_id)},
                ":from": {"S": chat_events_sort(after + 1)},
                ":to": {"S": CHAT_SESSION_SORT},
            },
            "ConsistentRead": True,
        }
        while True:
            with translated(SERVICE, "Query"):
                answer = await self._dynamodb.query(**query)
            for item in answer.get("Items", []):
                sort = item[SK]["S"]
                if sort.startswith(CHAT_EVENTS_PREFIX):
                    for data in json.loads(item["events"]["S"]):
                        sequence = int(data.pop("s"))
                        if sequence > after:
                            events.append(KeptEvent(sequence, data))
                elif sort.startswith(CHAT_SEALED_PREFIX):
                    until = float(item["sealed_until"]["N"])
                    if until > now:
                        sequence = int(sort.removeprefix(CHAT_SEALED_PREFIX))
                        sealed[sequence] = SealedDelivery(sequence, bytes(item["sealed"]["B"]), until)
                elif sort == CHAT_SESSION_SORT and float(item[TTL_ATTRIBUTE]["N"]) > now:
                    owner = item.get("owner_sub", {}).get("S")
                    session = KeptSession(
                        owner_sub=Sub(owner) if owner else None,
                        next_sequence=int(item["next_sequence"]["N"]),
                        lease_id=item.get("lease_id", {}).get("S"),
                        lease_until=float(item["lease_until"]["N"]) if "lease_until" in item else 0.0,
                        kept_lease=item.get("kept_lease", {}).get("S"),
                        kept_from=int(item["kept_from"]["N"]) if "kept_from" in item else 0,
                        resume_verifier=item.get("resume_verifier", {}).get("S"),
                    )
            last_key = answer.get("LastEvaluatedKey")
            if not last_key:
                break
            query["ExclusiveStartKey"] = last_key
        events.sort(key=lambda event: event.sequence)
        return JournalPage(tuple(events), sealed, session)

    async def last_sequence(self, session_id: str) -> int:
        """The last batch's sort key says it (one Query, newest first, one item)."""
        with translated(SERVICE, "Query"):
            answer = await self._dynamodb.query(
                TableName=self._table,
                KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": chat_partition(session_id)},
                    ":prefix": {"S": CHAT_EVENTS_PREFIX},
                },
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
                ProjectionExpression=SK,
            )
        items = answer.get("Items", [])
        return int(items[0][SK]["S"].removeprefix(CHAT_EVENTS_PREFIX)) if items else 0

    async def request_cancel(self, session_id: str, *, now: float) -> bool:
        """Set `cancel_lease` to the running kept turn's lease, if one runs (a conditional write)."""
        with translated(SERVICE, "UpdateItem"):
            try:
                await self._dynamodb.update_item(
                    TableName=self._table,
                    Key=chat_session_key(session_id),
                    UpdateExpression="SET cancel_lease = kept_lease",
                    ConditionExpression="attribute_exists(kept_lease) AND lease_id = kept_lease AND lease_until > :now",
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
                return True
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                return False

    async def cancel_requested(self, session_id: str, *, lease_id: str) -> bool:
        """One GetItem of the session's `cancel_lease`."""
        with translated(SERVICE, "GetItem"):
            answer = await self._dynamodb.get_item(
                TableName=self._table,
                Key=chat_session_key(session_id),
                ConsistentRead=True,
                ProjectionExpression="cancel_lease",
            )
        return answer.get("Item", {}).get("cancel_lease", {}).get("S") == lease_id
