"""The aioboto3 clients as the gateway opens them, seen at the wire by a loopback HTTP server."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.adapters.aws import USER_AGENT, AwsTarget, open_aws_clients

ANSWERS: dict[str, dict[str, list[str]]] = {
    "DynamoDB_20120810.ListTables": {"TableNames": []},
    "AWSCognitoIdentityProviderService.ListUserPools": {"UserPools": []},
}


async def test_every_call_of_both_clients_sends_the_one_fixed_user_agent() -> None:
    seen: list[tuple[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        seen.append((target, request.headers.get("User-Agent", "")))
        return web.Response(body=json.dumps(ANSWERS[target]), content_type="application/x-amz-json-1.1")

    app = web.Application()
    app.router.add_post("/", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        target = AwsTarget(
            region="us-east-1",
            endpoint_url=str(server.make_url("/")),
            access_key_id="test",
            secret_access_key="test",
        )
        async with open_aws_clients(target) as clients:
            for _ in range(2):
                await clients.dynamodb.list_tables()
                await clients.cognito.list_user_pools(MaxResults=1)
    assert [t for t, _ in seen] == [*ANSWERS] * 2
    agents = {agent for _, agent in seen}
    assert len(agents) == 1, agents  # one string, built once, not rebuilt per request
    assert agents.pop().startswith(f"{USER_AGENT} botocore/")
