"""Logins in progress in DynamoDB: one handle item per login key, one state item per email (the latest login).

The state of a login lives in the email's item, so a newer login for the same address replaces it and the older
handle finds a different nonce there: superseded. Attempts are counted by one conditional UpdateItem on that
item, so two replicas can never both spend the last attempt. An attempt whose code Cognito never judged is given
back by another conditional UpdateItem that names itself with a random refund id, kept in a string set on the
item: botocore re-sending that request after a lost answer cannot give the attempt back twice.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb import keys
from gateway.domain import LoginDoor, LoginState, Sub
from gateway.errors import LoginNotFoundError, OtpAttemptsExhaustedError, OtpExpiredError
from gateway.redact import fingerprint

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

SERVICE = "dynamodb"
# Dead logins stay readable this long after their code expired (answering OTP_EXPIRED rather than
# LOGIN_NOT_FOUND), then DynamoDB's TTL removes them.
RETENTION_SECONDS = 3600
# Refund ids kept per login, which bounds the item's size; past this many refunds, attempts stay spent.
MAX_REFUNDS = 100
CHAT_KEY_PREFIX = "chat:"


def _epoch(moment: datetime) -> str:
    return repr(moment.timestamp())


def _moment(value: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(float(value["N"]), UTC)


def _ttl(moment: datetime) -> str:
    return str(math.ceil(moment.timestamp()) + RETENTION_SECONDS)


def _not_found() -> LoginNotFoundError:
    return LoginNotFoundError("this login is unknown, used or superseded; start a new sign-in")


class DynamoLoginStore:
    """`LoginStore` on the single table (see `keys` for the item layout)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    async def save(self, state: LoginState) -> None:
        """Write the email's state item and the login's handle item in one transaction."""
        email_hash = keys.email_digest(state.email)
        item: dict[str, Any] = {
            **keys.login_email_key(email_hash),
            "login_key": {"S": state.login_key},
            "nonce": {"S": state.nonce},
            "email": {"S": state.email},
            "name": {"S": state.name},
            "attempts_used": {"N": str(state.attempts_used)},
            "max_attempts": {"N": str(state.max_attempts)},
            "sent_at": {"N": _epoch(state.sent_at)},
            "code_expires_at": {"N": _epoch(state.expires_at)},
            "door": {"S": state.door},
            keys.TTL_ATTRIBUTE: {"N": _ttl(state.expires_at)},
        }
        if state.sub is not None:
            item["sub"] = {"S": state.sub}
        if state.idp_session is not None:
            item["idp_session"] = {"S": state.idp_session}
        handle = {
            **keys.login_key(state.login_key),
            "email_digest": {"S": email_hash},
            "nonce": {"S": state.nonce},
            "door": {"S": state.door},
            "code_expires_at": {"N": _epoch(state.expires_at)},
            keys.TTL_ATTRIBUTE: {"N": _ttl(state.expires_at)},
        }
        with translated(SERVICE, "TransactWriteItems"):
            await self._client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": item}},
                    {"Put": {"TableName": self._table, "Item": handle}},
                ]
            )
        log.info("login saved", extra={"login": fingerprint(state.login_key)})

    async def _handle(self, login_key: str, door: LoginDoor) -> dict[str, Any] | None:
        """The login's handle item, or None when there is none for this door."""
        with translated(SERVICE, "GetItem"):
            found = await self._client.get_item(
                TableName=self._table, Key=keys.login_key(login_key), ConsistentRead=True
            )
        handle = found.get("Item")
        if handle is None or _door(handle, login_key) != door:
            # A login started in a chat is answered only in that chat, a unary one only through VerifyOtp.
            return None
        return handle

    async def is_pending(self, login_key: str, now: datetime, door: LoginDoor = "unary") -> bool:
        """True while the handle exists for this door and its code has not expired (one GetItem)."""
        handle = await self._handle(login_key, door)
        if handle is None:
            return False
        expires = handle.get("code_expires_at")
        return expires is None or _moment(expires) > now

    async def spend_attempt(self, login_key: str, now: datetime, door: LoginDoor = "unary") -> LoginState:
        """Read the handle, then count the attempt on the email's item only if the login may still be tried."""
        handle = await self._handle(login_key, door)
        if handle is None:
            raise _not_found()
        nonce = handle["nonce"]["S"]
        with translated(SERVICE, "UpdateItem"):
            try:
                updated = await self._client.update_item(
                    TableName=self._table,
                    Key=keys.login_email_key(handle["email_digest"]["S"]),
                    UpdateExpression="SET attempts_used = attempts_used + :one",
                    ConditionExpression=(
                        "nonce = :nonce AND login_key = :key AND attempts_used < max_attempts "
                        "AND code_expires_at > :now"
                    ),
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":nonce": {"S": nonce},
                        ":key": {"S": login_key},
                        ":now": {"N": _epoch(now)},
                    },
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except self._client.exceptions.ConditionalCheckFailedException as exc:
                old = exc.response.get("Item")
                raise self._refusal(old if isinstance(old, dict) else None, nonce, login_key) from None
        return _state(updated["Attributes"])

    async def refund_attempt(self, state: LoginState) -> None:
        """Take one attempt back off the email's item, if it is still this login's. Never raises."""
        refund_id = secrets.token_hex(8)
        try:
            with translated(SERVICE, "UpdateItem"):
                await self._client.update_item(
                    TableName=self._table,
                    Key=keys.login_email_key(keys.email_digest(state.email)),
                    UpdateExpression="SET attempts_used = attempts_used - :one ADD refunds :refund",
                    ConditionExpression=(
                        "nonce = :nonce AND login_key = :key AND attempts_used > :zero "
                        "AND (attribute_not_exists(refunds) OR "
                        "(NOT contains(refunds, :refund_id) AND size(refunds) < :max_refunds))"
                    ),
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":zero": {"N": "0"},
                        ":refund": {"SS": [refund_id]},
                        ":refund_id": {"S": refund_id},
                        ":max_refunds": {"N": str(MAX_REFUNDS)},
                        ":nonce": {"S": state.nonce},
                        ":key": {"S": state.login_key},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item")
            refunds = old.get("refunds", {}).get("SS", []) if isinstance(old, dict) else []
            if refund_id not in refunds:
                # Superseded or finished meanwhile, or past the refund limit: the attempt stays spent.
                log.info("login attempt not given back", extra={"login": fingerprint(state.login_key)})
                return
            # Else an earlier try of this very request gave it back and its answer was lost.
        except Exception as exc:
            extra = {"login": fingerprint(state.login_key), "error": type(exc).__name__}
            log.warning("login attempt not given back", extra=extra)
            return
        log.info("login attempt given back", extra={"login": fingerprint(state.login_key)})

    @staticmethod
    def _refusal(old: dict[str, Any] | None, nonce: str, login_key: str) -> Exception:
        """Why an attempt was not counted, from the item as it was."""
        if not old or old.get("nonce", {}).get("S") != nonce or old.get("login_key", {}).get("S") != login_key:
            return _not_found()
        if int(old["attempts_used"]["N"]) >= int(old["max_attempts"]["N"]):
            return OtpAttemptsExhaustedError("too many wrong codes for this login; start a new sign-in")
        return OtpExpiredError("the code has expired; start a new sign-in")

    async def finish(self, state: LoginState) -> None:
        """Delete the email's state item (if it is still this login's) and the handle."""
        with translated(SERVICE, "DeleteItem"):
            for key in (keys.login_email_key(keys.email_digest(state.email)), keys.login_key(state.login_key)):
                try:
                    await self._client.delete_item(
                        TableName=self._table,
                        Key=key,
                        ConditionExpression="nonce = :nonce",
                        ExpressionAttributeValues={":nonce": {"S": state.nonce}},
                    )
                except self._client.exceptions.ConditionalCheckFailedException:
                    continue  # a newer login owns it now


def _door(item: dict[str, Any], login_key: str) -> LoginDoor:
    door = item.get("door", {}).get("S")
    if door in ("unary", "chat"):
        return "chat" if door == "chat" else "unary"
    # Written before doors were recorded: the chat's keys are the only ones with a "chat:" prefix.
    return "chat" if login_key.startswith(CHAT_KEY_PREFIX) else "unary"


def _state(item: dict[str, Any]) -> LoginState:
    login_key = item["login_key"]["S"]
    return LoginState(
        login_key=login_key,
        email=item["email"]["S"],
        name=item.get("name", {}).get("S", ""),
        sub=Sub(item["sub"]["S"]) if "sub" in item else None,
        idp_session=item["idp_session"]["S"] if "idp_session" in item else None,
        nonce=item["nonce"]["S"],
        attempts_used=int(item["attempts_used"]["N"]),
        max_attempts=int(item["max_attempts"]["N"]),
        sent_at=_moment(item["sent_at"]),
        expires_at=_moment(item["code_expires_at"]),
        door=_door(item, login_key),
    )
