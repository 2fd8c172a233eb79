"""IAM least privilege, proved: the gateway's role in deploy/aws/booking-gateway.yaml grants exactly what the
gateway calls, on exactly the resources it calls them on.

The emulator records every AWS request while the flows below run (`DevStack.calls`, which turns each signed call
into the IAM actions AWS checks for it: a transaction item by item, a query on an index as the index's ARN); the
fake Bedrock endpoint records each model call. The needed grants are then compared with the template's policy,
resolved for this stack, both ways: every needed action is granted on its resource, and every granted action and
resource was needed by some call.

A new AWS call in the gateway belongs in a flow here (or an existing flow already reaches it): then this test
names the action until the template grants it, and names any grant no flow needs any more.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from grpc import aio

from booking.v1 import auth_pb2, chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients, AwsTarget
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.devstack.bootstrap import LOCAL_PARAMETERS, TABLE_RESOURCE, USER_POOL_RESOURCE
from gateway.devstack.calls import ACCOUNT_ID, AwsCall, IamGrant, iam_grants
from gateway.devstack.template import DeployTemplate, resolve
from tests.deploy.support import TEMPLATE
from tests.support.auth import auth_stub, initiate, mailed_code, new_email, verify, wrong_code
from tests.support.bedrock import FakeBedrock, text_reply
from tests.support.chat import Turn, chat, decide, stub
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import Tokens
from tests.support.reservations import create_property, days_ahead

ROLE_RESOURCE = "GatewayRole"


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: frozenset[str]
    resources: tuple[str, ...]

    def allows(self, grant: IamGrant) -> bool:
        return grant.action in self.actions and any(fnmatch.fnmatchcase(grant.resource, r) for r in self.resources)


def policy_statements(devstack: DevStack, settings: Settings, *, bedrock: bool) -> list[Statement]:
    """The role's policy as the template declares it, resolved for this stack's table, pool and region."""
    template = DeployTemplate.load(TEMPLATE)
    ids = devstack.endpoints
    region = ids.region
    context = template.context(
        {
            **LOCAL_PARAMETERS,
            "TableName": ids.table_name,
            "BedrockModelId": settings.chat.bedrock_model_id if bedrock else "",
        },
        region=region,
        account_id=ACCOUNT_ID,
        attributes={
            f"{TABLE_RESOURCE}.Arn": f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{ids.table_name}",
            f"{USER_POOL_RESOURCE}.Arn": f"arn:aws:cognito-idp:{region}:{ACCOUNT_ID}:userpool/{ids.user_pool_id}",
        },
    )
    role = template.properties(ROLE_RESOURCE, context)
    statements = []
    for policy in role["Policies"]:
        for raw in policy["PolicyDocument"]["Statement"]:
            assert raw["Effect"] == "Allow"
            assert not {"Condition", "NotAction", "NotResource"} & set(raw), raw
            actions = raw["Action"] if isinstance(raw["Action"], list) else [raw["Action"]]
            resources = raw["Resource"] if isinstance(raw["Resource"], list) else [raw["Resource"]]
            assert not any("*" in a for a in actions), f"{raw['Sid']}: a wildcard action"
            statements.append(Statement(raw["Sid"], frozenset(actions), tuple(resolve(resources, context))))
    return statements


def needed(calls: Iterable[AwsCall], access_key_id: str) -> set[IamGrant]:
    """What the calls signed with `access_key_id` (the gateways of the test, not others still running) need."""
    return {grant for call in calls if call.access_key_id == access_key_id for grant in call.grants}


def compare(statements: list[Statement], grants: set[IamGrant]) -> list[str]:
    """What is wrong with the policy for these needed grants, one line each, naming the action."""
    problems = [
        f"{g.action} on {g.resource} is called by the gateway but not granted by {ROLE_RESOURCE}"
        for g in sorted(grants)
        if not any(s.allows(g) for s in statements)
    ]
    for statement in statements:
        used = [g for g in grants if statement.allows(g)]
        problems += [
            f"{action} is granted by {ROLE_RESOURCE} ({statement.sid}) but no flow of the gateway calls it"
            for action in sorted(statement.actions - {g.action for g in used})
        ]
        problems += [
            f"{resource} is granted by {ROLE_RESOURCE} ({statement.sid}) but no flow of the gateway uses it"
            for resource in statement.resources
            if not any(fnmatch.fnmatchcase(g.resource, resource) for g in used)
        ]
    return problems


async def sign_in_flow(gateway: RunningGateway, email: str) -> Tokens:
    """A new address signs in (one wrong code first), then the same address signs in again."""
    started = await initiate(gateway, email, name="Least Privilege")
    code = mailed_code(gateway, email)
    with pytest.raises(aio.AioRpcError):
        await verify(gateway, started.login_id, wrong_code(code))
    first = (await verify(gateway, started.login_id, code)).token_delivery
    again = await initiate(gateway, email)
    delivery = (await verify(gateway, again.login_id, mailed_code(gateway, email))).token_delivery
    assert first.guest_id == delivery.guest_id
    return Tokens(delivery.access_token, delivery.id_token, delivery.refresh_token)


async def refresh_and_sign_out(gateway: RunningGateway, tokens: Tokens) -> None:
    refreshed = await auth_stub(gateway).RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=tokens.refresh_token), timeout=10
    )
    await auth_stub(gateway).SignOut(
        auth_pb2.SignOutRequest(refresh_token=refreshed.refresh_token or tokens.refresh_token),
        metadata=(("authorization", f"Bearer {refreshed.access_token}"),),
        timeout=10,
    )


async def reservations_flow(gateway: RunningGateway, tokens: Tokens, property_id: str) -> None:
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    check_in, check_out = days_ahead(60).isoformat(), days_ahead(62).isoformat()
    await stub.ListProperties(pb.ListPropertiesRequest(), timeout=10)
    await stub.CheckAvailability(
        pb.CheckAvailabilityRequest(property_id=property_id, check_in=check_in, check_out=check_out), timeout=10
    )
    created = await stub.CreateReservation(
        pb.CreateReservationRequest(
            property_id=property_id,
            check_in=check_in,
            check_out=check_out,
            guests=1,
            request_id=uuid.uuid4().hex,
        ),
        metadata=tokens.bearer(),
        timeout=10,
    )
    reservation_id = created.reservation.reservation_id
    await stub.ListReservations(pb.ListReservationsRequest(), metadata=tokens.bearer(), timeout=10)
    await stub.GetReservation(pb.GetReservationRequest(reservation_id=reservation_id), metadata=tokens.bearer())
    await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=reservation_id), metadata=tokens.bearer())


async def chat_flow(gateway: RunningGateway, property_name: str) -> None:
    """The seed's journey in one chat: availability, a booking that signs the guest in and is approved, a
    cancellation asked for and withdrawn, their list."""
    email = new_email("iam-chat")
    dates = f"{days_ahead(70).isoformat()} to {days_ahead(73).isoformat()}"
    available = await chat(gateway.channel, f"what's available {dates}?")
    session = available.session_id
    asked = await chat(gateway.channel, f"book the {property_name} for 2 guests", session)
    sent = await chat(gateway.channel, f"Iam Tester, {email}", session)
    verified = await chat(gateway.channel, mailed_code(gateway, email), session)
    # Each turn's words, should the journey go another way (a CI run once lost the booking by the code's turn).
    said = [turn.text for turn in (available, asked, sent, verified)]
    assert "one-time code" in sent.text, said
    delivery = verified.token_delivery
    assert delivery is not None, said
    assert verified.approval is not None, said
    bearer = Tokens(delivery.access_token, delivery.id_token, delivery.refresh_token).bearer()
    # The booking waits for approval (held in the table); the decision runs it.
    booked = await decide(gateway.channel, verified, bearer)
    assert [(t.name, t.ok) for t in booked.tools] == [("create_reservation", True)]
    # A cancellation asked for and withdrawn by the next message (the approval items' query and update).
    reservation_id = booked.tools[0].summary.split()[1].rstrip(":")
    await chat(gateway.channel, f"cancel {reservation_id}", session, bearer)
    await chat(gateway.channel, "What are my reservations?", session, bearer)


async def kept_turn_flow(gateway: RunningGateway) -> None:
    """A keep_running turn (its events kept in batches), replayed with ResumeChat, then CancelTurn (none runs)."""
    request = chat_pb2.ChatRequest(message="help", keep_running=True)
    kept = Turn([response.event async for response in stub(gateway.channel).Chat(request, timeout=30)])
    started = kept.started
    replay = stub(gateway.channel).ResumeChat(
        chat_pb2.ResumeChatRequest(session_id=started.session_id, resume_token=started.resume_token), timeout=30
    )
    assert len([response async for response in replay]) == len(kept.events)
    cancel = chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token)
    assert not (await stub(gateway.channel).CancelTurn(cancel, timeout=10)).cancelled


@pytest.fixture(scope="module")
async def fake_bedrock() -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_the_roles_policy_grants_exactly_what_the_gateways_flows_call(
    devstack: DevStack, settings: Settings, aws: AwsClients, table: str
) -> None:
    prop = await create_property(aws.dynamodb, table, capacity=4, name=f"Iam Studio i{uuid.uuid4().hex[:8]}")
    # The same address signs in twice in a row (the known-user path of InitiateLogin).
    flows = settings.replace(login_resend_cooldown_seconds=0.001)
    # The test's gateways sign with credentials of their own, so calls of any other gateway are left out.
    key = f"least-privilege-{uuid.uuid4().hex[:8]}"
    target = replace(devstack.endpoints.target, access_key_id=key)
    with devstack.calls.recording() as calls:
        async with running_gateway(devstack, flows, target=target) as gateway:
            tokens = await sign_in_flow(gateway, new_email("iam"))
            await reservations_flow(gateway, tokens, prop.property_id)
            await chat_flow(gateway, prop.name)
            await kept_turn_flow(gateway)
            await refresh_and_sign_out(gateway, tokens)
        async with running_gateway(devstack, flows.replace(refresh_token_rotation=True), target=target) as rotating:
            rotated = await sign_in_flow(rotating, new_email("iam-rotation"))
            await refresh_and_sign_out(rotating, rotated)
    assert any(c.access_key_id == key for c in calls), "the emulator recorded no call of the test's gateways"
    unsigned = {c.operation for c in calls if not c.signed}
    assert "RevokeToken" in unsigned  # signing out revokes the refresh token without IAM
    problems = compare(policy_statements(devstack, settings, bedrock=False), needed(calls, key))
    assert problems == [], "\n".join(problems)


async def test_the_bedrock_statement_grants_exactly_the_model_call_and_only_when_a_model_is_set(
    devstack: DevStack, settings: Settings, fake_bedrock: FakeBedrock
) -> None:
    bedrock_settings = settings.replace(agent_model="bedrock", bedrock_endpoint_url=fake_bedrock.url)
    region = devstack.endpoints.region
    target = AwsTarget(region=region, endpoint_url=fake_bedrock.url, access_key_id="x", secret_access_key="y")
    fake_bedrock.script(text_reply("Hello from the model."))
    async with running_gateway(devstack, bedrock_settings, bedrock=target) as gateway:
        turn = await chat(gateway.channel, "hello")
    assert "Hello from the model." in turn.text
    model_calls: list[Any] = []
    for path in fake_bedrock.paths:
        _, model, operation = path.strip("/").split("/")
        assert operation == "converse-stream", path
        model_calls += iam_grants("bedrock-runtime", "ConverseStream", {"modelId": model}, region)
    assert model_calls
    statements = policy_statements(devstack, settings, bedrock=True)
    agent = [s for s in statements if any(a.startswith("bedrock:") for a in s.actions)]
    assert compare(agent, set(model_calls)) == []
    without = policy_statements(devstack, settings, bedrock=False)
    assert not any(a.startswith("bedrock:") for s in without for a in s.actions)
