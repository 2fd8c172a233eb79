"""Rate limits and budgets in DynamoDB.

Rate limits: one item per limit and subject, counting hits in a window that opens at the first hit.

A window opened by the first hit (rather than fixed clock boundaries) makes a limit of one per 60 s mean exactly
that, which the resend cooldown needs. Counting is one conditional atomic `ADD`; only opening a fresh window
takes a second, conditional write. Items expire through the table's TTL shortly after their window closes.

Budgets (model tokens a day): one item per budget, subject and fixed window (a UTC day for a day's budget),
read with a consistent read before the work and charged with one atomic `ADD` after it, never refused: work
already done is always counted, so a budget can be overshot by the turns running when it ran out, never more.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb import keys
from gateway.domain import RateGrant, RateLimit
from gateway.errors import RateLimitedError, UpstreamUnavailableError
from gateway.ports import BudgetUse

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

SERVICE = "dynamodb"
TTL_SLACK_SECONDS = 60
# Opening a window races with other replicas opening it; each lost race means someone else just opened it, so
# the next try counts in their window. More than a few losses in a row would be a bug.
MAX_TRIES = 4


def _number(value: float) -> dict[str, str]:
    return {"N": repr(float(value))}


def _key_text(item: dict[str, Any]) -> str:
    """An item's key as one string (its PK and SK)."""
    return f"{item[keys.PK]['S']}|{item[keys.SK]['S']}"


def _window(budget: RateLimit, now: datetime) -> tuple[int, datetime]:
    """The index of the fixed window of `budget` that holds `now`, and when that window ends."""
    index = math.floor(now.timestamp() / budget.window_seconds)
    return index, datetime.fromtimestamp((index + 1) * budget.window_seconds, now.tzinfo or UTC)


class DynamoRateLimiter:
    """`RateLimiter` and `BudgetCounter` on the single table (see `keys` for the item layout)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    async def acquire(self, limit: RateLimit, subject: str, now: datetime) -> RateGrant:
        """Count a hit in the open window, or open a new window; refuse when the open window is full."""
        key = keys.rate_key(limit.name, subject)
        stamp = now.timestamp()
        opened_after = stamp - limit.window_seconds
        for _ in range(MAX_TRIES):
            old = await self._count(key, limit, opened_after)
            if old is None:
                return RateGrant(limit, subject, now)
            if "window_started" in old:
                started = float(old["window_started"]["N"])
                if started > opened_after:
                    # The window is open and full (the count only fails for that, or for a closed window).
                    retry_after = max(started + limit.window_seconds - stamp, 1.0)
                    raise RateLimitedError("too many requests; retry later", retry_after_seconds=math.ceil(retry_after))
            if await self._open(key, limit, stamp, opened_after):
                return RateGrant(limit, subject, now)
        raise UpstreamUnavailableError("rate limits could not be counted; retry shortly", retry_after_seconds=1.0)

    async def _count(self, key: dict[str, Any], limit: RateLimit, opened_after: float) -> dict[str, Any] | None:
        """Add a hit to an open, not yet full window: None when counted, else the item as it was ({} if none)."""
        with translated(SERVICE, "UpdateItem"):
            try:
                await self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="ADD hits :one",
                    ConditionExpression="window_started > :opened_after AND hits < :limit",
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":opened_after": _number(opened_after),
                        ":limit": {"N": str(limit.limit)},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except self._client.exceptions.ConditionalCheckFailedException as exc:
                old = exc.response.get("Item")
                return old if isinstance(old, dict) else {}
        return None

    async def _open(self, key: dict[str, Any], limit: RateLimit, stamp: float, opened_after: float) -> bool:
        """Open a window with this hit, unless another replica opened one meanwhile."""
        with translated(SERVICE, "PutItem"):
            try:
                await self._client.put_item(
                    TableName=self._table,
                    Item={
                        **key,
                        "hits": {"N": "1"},
                        "window_started": _number(stamp),
                        keys.TTL_ATTRIBUTE: {"N": str(math.ceil(stamp + limit.window_seconds) + TTL_SLACK_SECONDS)},
                    },
                    ConditionExpression="attribute_not_exists(window_started) OR window_started <= :opened_after",
                    ExpressionAttributeValues={":opened_after": _number(opened_after)},
                )
            except self._client.exceptions.ConditionalCheckFailedException:
                return False
        return True

    async def release(self, grant: RateGrant) -> None:
        """Take the hit back out of its window, if that window is still the open one. Never raises."""
        key = keys.rate_key(grant.limit.name, grant.subject)
        granted_at = grant.counted_at.timestamp()
        try:
            with translated(SERVICE, "UpdateItem"):
                await self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="ADD hits :minus_one",
                    # Only the window the hit was counted in (it opened at most a window before the hit).
                    ConditionExpression=(
                        "window_started <= :granted_at AND window_started > :opened_after AND hits > :zero"
                    ),
                    ExpressionAttributeValues={
                        ":minus_one": {"N": "-1"},
                        ":granted_at": _number(granted_at),
                        ":opened_after": _number(granted_at - grant.limit.window_seconds),
                        ":zero": {"N": "0"},
                    },
                )
        except self._client.exceptions.ConditionalCheckFailedException:
            return
        except Exception as exc:
            log.warning("rate-limit hit not given back", extra={"limit": grant.limit.name, "error": type(exc).__name__})

    async def spent(self, budget: RateLimit, subject: str, now: datetime) -> BudgetUse:
        """What `subject` spent of `budget` in the window holding `now` (a consistent read)."""
        index, resets_at = _window(budget, now)
        with translated(SERVICE, "GetItem"):
            answer = await self._client.get_item(
                TableName=self._table,
                Key=keys.budget_key(budget.name, subject, index),
                ConsistentRead=True,
                ProjectionExpression="spent",
            )
        item = answer.get("Item") or {}
        return BudgetUse(int(item["spent"]["N"]) if "spent" in item else 0, resets_at)

    async def spent_each(self, budgets: Sequence[tuple[RateLimit, str]], now: datetime) -> list[BudgetUse]:
        """What each subject spent of its budget in the window holding `now`: one consistent BatchGetItem."""
        keyed = [
            (budget, keys.budget_key(budget.name, subject, _window(budget, now)[0])) for budget, subject in budgets
        ]
        wanted = {_key_text(key): key for _, key in keyed}
        found: dict[str, int] = {}
        request: dict[str, Any] = {
            self._table: {
                "Keys": list(wanted.values()),
                "ConsistentRead": True,
                "ProjectionExpression": "PK, SK, spent",
            }
        }
        # DynamoDB may leave keys unprocessed when throttled: ask again for those, a few times at most.
        for _ in range(MAX_TRIES):
            with translated(SERVICE, "BatchGetItem"):
                answer = await self._client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self._table, []):
                found[_key_text(item)] = int(item["spent"]["N"]) if "spent" in item else 0
            request = dict(answer.get("UnprocessedKeys") or {})
            if not request:
                break
        else:
            raise UpstreamUnavailableError("budgets could not be read; retry shortly", retry_after_seconds=1.0)
        return [BudgetUse(found.get(_key_text(key), 0), _window(budget, now)[1]) for budget, key in keyed]

    async def charge(self, budget: RateLimit, subject: str, amount: int, now: datetime) -> None:
        """Add `amount` to the window holding `now` (one atomic ADD; the first one sets the item's TTL)."""
        if amount <= 0:
            return
        index, resets_at = _window(budget, now)
        ttl = keys.TTL_ATTRIBUTE
        with translated(SERVICE, "UpdateItem"):
            await self._client.update_item(
                TableName=self._table,
                Key=keys.budget_key(budget.name, subject, index),
                UpdateExpression=f"ADD spent :amount SET {ttl} = if_not_exists({ttl}, :ttl)",
                ExpressionAttributeValues={
                    ":amount": {"N": str(amount)},
                    ":ttl": {"N": str(math.ceil(resets_at.timestamp()) + TTL_SLACK_SECONDS)},
                },
            )
