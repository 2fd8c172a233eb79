"""DynamoDB TransactWriteItems in the emulator, rolled back item by item instead of table by table.

moto keeps a deep copy of every table a transaction names (one per action naming it) so that it can put the
table back if an action fails: each transaction costs time in proportion to the whole table. The devstack's
tables only grow during a session (logins, counters, chat sessions and events), so every booking and sign-in got
slower as a test run went on (an InitiateLogin measured 48 ms at the start of one test and 125 ms at its end).

`install()` gives moto's backend a `transact_write_items` with the same outcome, all actions or none, the same
errors and cancellation reasons, that remembers only the items the transaction touches (their state before its
first write) and writes those back when it is cancelled. The emulator serialises its requests
(`devstack.moto`), so no other request sees a transaction half applied.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend

__all__ = ["install"]

_ACTIONS = {"ConditionCheck", "Put", "Delete", "Update"}
MAX_ACTIONS = 100

# Each cancellation reason: (code, message, the item's old attributes when asked for) or all None for success.
Reason = tuple[str | None, str | None, dict[str, Any] | None]


def _key_of(backend: DynamoDBBackend, action: str, operation: dict[str, Any]) -> dict[str, Any]:
    if action != "Put":
        key: dict[str, Any] = operation["Key"]
        return key
    table = backend.get_table(operation["TableName"])
    attributes = operation["Item"]
    key = {table.hash_key_attr: attributes[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attributes[table.range_key_attr]
    return key


class _Undo:
    """The items a transaction has touched, as they were before it wrote to them."""

    def __init__(self, backend: DynamoDBBackend) -> None:
        self._backend = backend
        self._before: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []

    def remember(self, table_name: str, key: dict[str, Any], current: Any) -> None:
        before = copy.deepcopy(current.to_json()["Attributes"]) if current is not None else None
        self._before.append((table_name, key, before))

    def roll_back(self) -> None:
        for table_name, key, before in reversed(self._before):
            if before is None:
                self._backend.delete_item(table_name, key)
            else:
                self._backend.put_item(table_name, before)
        self._before.clear()


def _apply(backend: DynamoDBBackend, action: str, operation: dict[str, Any], key: dict[str, Any]) -> None:
    table_name = operation["TableName"]
    expression = operation.get("ConditionExpression")
    names = operation.get("ExpressionAttributeNames")
    values = operation.get("ExpressionAttributeValues")
    if action == "Put":
        backend.put_item(
            table_name,
            operation["Item"],
            condition_expression=expression,
            expression_attribute_names=names,
            expression_attribute_values=values,
        )
    elif action == "Delete":
        backend.delete_item(
            table_name,
            key,
            condition_expression=expression,
            expression_attribute_names=names,
            expression_attribute_values=values,
        )
    elif action == "Update":
        backend.update_item(
            table_name,
            key,
            update_expression=operation["UpdateExpression"],
            condition_expression=expression,
            # Passed as moto's own transactions pass them, absent ones as None (its signature says dict).
            expression_attribute_names=cast("dict[str, Any]", names),
            expression_attribute_values=cast("dict[str, Any]", values),
        )


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """All of `transact_items` or none of them; a failed action cancels the transaction with its reasons."""
    if len(transact_items) > MAX_ACTIONS:
        raise TooManyTransactionsException()
    undo = _Undo(self)
    targets: set[tuple[str, str]] = set()
    reasons: list[Reason] = []
    for entry in transact_items:
        if len(entry) > 1:
            undo.roll_back()
            raise TransactWriteSingleOpException
        old_attributes: dict[str, Any] | None = None
        try:
            action, operation = next(iter(entry.items()))
            if action not in _ACTIONS:
                raise ValueError("Unsupported transaction operation")
            table_name = operation["TableName"]
            key = _key_of(self, action, operation)
            target = (str(table_name), str(dict(sorted(key.items()))))
            if target in targets:
                raise MultipleTransactionsException()
            targets.add(target)
            current = self.get_item(table_name, key)
            expression = operation.get("ConditionExpression")
            if expression is not None:
                check = get_filter_expression(
                    expression, operation.get("ExpressionAttributeNames"), operation.get("ExpressionAttributeValues")
                )
                if not check.expr(current):
                    if operation.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        old_attributes = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=old_attributes)
            if action != "ConditionCheck":
                undo.remember(table_name, key, current)
                _apply(self, action, operation, key)
            reasons.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            undo.roll_back()
            raise
        except ConditionalCheckFailed as failed:
            reasons.append(("ConditionalCheckFailed", str(failed.message), old_attributes))
        except Exception as failed:  # every other failure is a cancellation reason, as in DynamoDB
            reasons.append((type(failed).__name__, str(failed), old_attributes))
    if any(code is not None for code, _, _ in reasons):
        undo.roll_back()
        raise TransactionCanceledException(reasons)


def install() -> None:
    """Make moto's DynamoDB backends run transactions with `transact_write_items` above. Idempotent."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
