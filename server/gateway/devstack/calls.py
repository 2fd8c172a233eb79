"""Which AWS API calls reach the emulator, and the IAM actions each one needs on which resource.

`CallLog` wraps the emulator's WSGI app; inside `with stack.calls.recording() as calls:` every request is kept as
an `AwsCall`: the operation, whether it was signed, and the `IamGrant`s that AWS would check for it. A request
that is not signed (Cognito's `RevokeToken`, `GetTokensFromRefreshToken`, `InitiateAuth`) needs no IAM permission.
tests/deploy/test_least_privilege.py compares what the gateway's flows needed with the CloudFormation template's
policy, both ways.

The rules here are AWS's, not the gateway's: a DynamoDB transaction is authorised item by item (`PutItem`,
`UpdateItem`, `DeleteItem`, `ConditionCheckItem`; there is no `dynamodb:TransactWriteItems` action), a query on an
index needs the index's ARN, and a Bedrock `ConverseStream` is `bedrock:InvokeModelWithResponseStream` on the
model.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gateway.devstack.moto import StartResponse, WsgiApp

# moto's one account.
ACCOUNT_ID = "123456789012"

_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_TARGET_SERVICES = {"DynamoDB_20120810": "dynamodb", "AWSCognitoIdentityProviderService": "cognito-idp"}
_TRANSACT_WRITE_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@dataclass(frozen=True, order=True)
class IamGrant:
    """One IAM action on one resource ARN, like `dynamodb:Query` on `arn:aws:dynamodb:...:table/T/index/GSI1`."""

    action: str
    resource: str


@dataclass(frozen=True)
class AwsCall:
    """One API request that reached the emulator; `access_key_id` says who signed it ("" when unsigned)."""

    service: str
    operation: str
    signed: bool
    grants: tuple[IamGrant, ...]
    access_key_id: str = ""


def _table_arn(region: str, table: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


def iam_grants(service: str, operation: str, body: Mapping[str, Any], region: str) -> tuple[IamGrant, ...]:
    """The IAM actions AWS checks for one signed call of `service`'s `operation` with this request body."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            grants = []
            for item in body.get("TransactItems", []):
                ((kind, detail),) = item.items()
                grants.append(
                    IamGrant(f"dynamodb:{_TRANSACT_WRITE_ACTIONS[kind]}", _table_arn(region, detail["TableName"]))
                )
            return tuple(grants)
        if operation == "TransactGetItems":
            return tuple(
                IamGrant("dynamodb:GetItem", _table_arn(region, item["Get"]["TableName"]))
                for item in body.get("TransactItems", [])
            )
        if operation in {"BatchGetItem", "BatchWriteItem"}:
            return tuple(
                IamGrant(f"dynamodb:{operation}", _table_arn(region, table)) for table in body.get("RequestItems", {})
            )
        if "TableName" in body:
            return (IamGrant(f"dynamodb:{operation}", _table_arn(region, body["TableName"], body.get("IndexName"))),)
        return (IamGrant(f"dynamodb:{operation}", "*"),)
    if service == "cognito-idp":
        pool = body.get("UserPoolId")
        resource = f"arn:aws:cognito-idp:{region}:{ACCOUNT_ID}:userpool/{pool}" if pool else "*"
        return (IamGrant(f"cognito-idp:{operation}", resource),)
    if service == "bedrock-runtime" and operation == "ConverseStream":
        model = body["modelId"]
        return (
            IamGrant("bedrock:InvokeModelWithResponseStream", f"arn:aws:bedrock:{region}::foundation-model/{model}"),
        )
    if service == "bedrock-runtime" and operation == "Converse":
        model = body["modelId"]
        return (IamGrant("bedrock:InvokeModel", f"arn:aws:bedrock:{region}::foundation-model/{model}"),)
    return (IamGrant(f"{service}:{operation}", "*"),)


def _describe(environ: dict[str, Any], body: bytes) -> AwsCall | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if "." not in target:
        return None  # not a JSON-protocol call (CloudFormation's query protocol, the JWKS, the mailbox)
    prefix, operation = target.split(".", 1)
    service = _TARGET_SERVICES.get(prefix)
    if service is None:
        return None
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if scope is None:
        return AwsCall(service=service, operation=operation, signed=False, grants=())
    access_key_id, region = scope.group(1), scope.group(2)
    parsed = json.loads(body or b"{}")
    return AwsCall(
        service=service,
        operation=operation,
        signed=True,
        grants=iam_grants(service, operation, parsed, region),
        access_key_id=access_key_id,
    )


class CallLog:
    """Keeps the emulator's JSON-protocol requests while a `recording()` is open (nothing otherwise)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[list[AwsCall]] = []

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """`app` with every request seen first by this log."""

        def logged(environ: dict[str, Any], start_response: StartResponse) -> Any:
            with self._lock:
                listening = bool(self._open)
            if listening:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
                call = _describe(environ, body)
                if call is not None:
                    with self._lock:
                        for calls in self._open:
                            calls.append(call)
            return app(environ, start_response)

        return logged

    @contextmanager
    def recording(self) -> Iterator[list[AwsCall]]:
        """The calls made while the block runs, in order of arrival."""
        calls: list[AwsCall] = []
        with self._lock:
            self._open.append(calls)
        try:
            yield calls
        finally:
            with self._lock:
                self._open.remove(calls)
