"""The composition root: opens every adapter once (one AsyncExitStack), builds the services, and assembles the
handler table, the call pipeline and the server over them.

The only module that imports both services and adapters. Production, `make run` and the tests all build the
gateway through `open_app`; only the `AwsTarget` and Settings differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace

import aiohttp
from opentelemetry.sdk.trace import TracerProvider

from gateway.adapters.aws import AwsClients, AwsTarget, open_aws_clients
from gateway.adapters.bedrock import BedrockAgent, open_bedrock_client
from gateway.adapters.cognito import CognitoIdentityProvider
from gateway.adapters.dynamodb.approval_store import DynamoApprovalStore
from gateway.adapters.dynamodb.event_journal import DynamoChatEventJournal
from gateway.adapters.dynamodb.guest_store import DynamoGuestStore
from gateway.adapters.dynamodb.login_store import DynamoLoginStore
from gateway.adapters.dynamodb.rate_limiter import DynamoRateLimiter
from gateway.adapters.dynamodb.refresh_token_store import DynamoRefreshTokenStore
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.adapters.dynamodb.revocation_store import DynamoRevocationStore
from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore
from gateway.adapters.jwks import HttpKeySource
from gateway.adapters.scripted_agent import ScriptedAgent
from gateway.config import Settings
from gateway.domain import Calendar
from gateway.observability import Metrics, MetricsServer, Tracing, instrument_aws_client, tracer_provider
from gateway.ports import AgentModel
from gateway.services.bearer import CognitoBearerVerifier, JwksCache, RevocationList
from gateway.services.chat import RECORD_AFTER_CANCEL_SECONDS, ChatAdmission, ChatService, ToolRegistry
from gateway.services.chat.backends import SignInNotConfigured
from gateway.services.login import LoginService
from gateway.services.reservations import ReservationService
from gateway.settings_spec import parse_host_port
from gateway.transport.auth import Authenticator
from gateway.transport.handlers import AuthHandlers, ChatHandlers, ReservationHandlers
from gateway.transport.peer import ClientAddressResolver
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.server import GatewayServer
from gateway.transport.settings import TransportSettings
from gateway.transport.table import CONTRACT_FILES, HandlerTable


@dataclass
class App:
    """Everything a transport face needs: settings, open clients and the services built on them."""

    settings: Settings
    clients: AwsClients
    verifier: CognitoBearerVerifier
    jwks: JwksCache
    revocations: RevocationList
    reservations: ReservationService
    chat: ChatService
    login: LoginService | None = None
    metrics: Metrics = field(default_factory=Metrics)
    tracing: Tracing = field(default_factory=lambda: Tracing(None))

    async def warm_up(self) -> None:
        """Load what calls need before the gateway reports SERVING: signing keys and current revocations."""
        await self.jwks.refresh()
        await self.revocations.sync()

    async def settle(self) -> None:
        """Return once the chat turns cut off by a drain have recorded themselves and freed their sessions.

        keep_running turns still running now (the open calls have finished, or the grace period is over) stop
        with INTERRUPTED, kept and recorded, so their followers on other replicas end cleanly.
        """
        if self.chat.kept is not None:
            self.chat.kept.interrupt_all()
            await self.chat.kept.idle()
        await self.chat.load.idle()


def handler_table(app: App, settings: TransportSettings) -> HandlerTable:
    """Every RPC of the contract with its handler, over the app's services (fails if one is missing)."""
    addresses = ClientAddressResolver(settings.trusted_proxies, settings.client_address_header)
    return HandlerTable.build(
        CONTRACT_FILES,
        {
            "booking.v1.AuthService": AuthHandlers(app.login, addresses),
            "booking.v1.ChatService": ChatHandlers(app.chat, addresses),
            "booking.v1.ReservationService": ReservationHandlers(app.reservations),
        },
    )


def call_pipeline(app: App, settings: Settings) -> Pipeline:
    """The one call pipeline of both faces: bearer checks, the concurrency limit, metrics and tracing."""
    return Pipeline(
        Authenticator(app.verifier, max_token_bytes=settings.auth.max_token_bytes),
        ConcurrencyLimiter(settings.transport.max_concurrent_rpcs),
        metrics=app.metrics,
        tracing=app.tracing,
    )


def gateway_server(app: App, settings: Settings | None = None) -> GatewayServer:
    """The gateway's faces over `app`, as `gateway serve` runs them (`settings` defaults to the app's)."""
    settings = settings or app.settings
    metrics_server = None
    if settings.observability.metrics_listen:
        host, port = parse_host_port(settings.observability.metrics_listen)
        metrics_server = MetricsServer(app.metrics, host, port)
    return GatewayServer(
        handler_table(app, settings.transport),
        call_pipeline(app, settings),
        settings.transport,
        lifecycle=app,
        # Interrupted chat turns get this long after the grace period to record themselves.
        settle_seconds=RECORD_AFTER_CANCEL_SECONDS + 1.0,
        metrics_server=metrics_server,
    )


def aws_target(settings: Settings) -> AwsTarget:
    """Where the gateway's AWS clients point, from Settings alone (default credential chain)."""
    aws = settings.aws
    return AwsTarget(
        region=aws.region,
        endpoint_url=aws.endpoint_url,
        timeout_seconds=aws.timeout_seconds,
        cognito_endpoint_url=aws.cognito_endpoint_url,
    )


def build_login_service(settings: Settings, clients: AwsClients, revocations: RevocationList) -> LoginService | None:
    """The login service on Cognito and DynamoDB; None when no user pool is configured."""
    auth, table = settings.auth, settings.aws.table_name
    if auth.user_pool_id is None or auth.app_client_id is None:
        return None
    identity = CognitoIdentityProvider(
        clients.cognito,
        user_pool_id=auth.user_pool_id,
        app_client_id=auth.app_client_id,
        refresh_token_rotation=settings.login.refresh_token_rotation,
    )
    return LoginService(
        identity,
        DynamoLoginStore(clients.dynamodb, table),
        DynamoRateLimiter(clients.dynamodb, table),
        DynamoGuestStore(clients.dynamodb, table),
        replace(settings.login.policy(), token_leeway_seconds=settings.auth.jwt_leeway_seconds),
        revocations=revocations,
        refresh_tokens=DynamoRefreshTokenStore(clients.dynamodb, table),
    )


def bedrock_target(settings: Settings) -> AwsTarget:
    """Where the Bedrock client points: its own region and endpoint, the default credential chain.

    Never the devstack's dummy credentials: the emulator has no Bedrock, so `--agent-model bedrock` with the
    embedded local AWS still talks to real Bedrock (or to `--bedrock-endpoint-url`).
    """
    return AwsTarget(
        region=settings.chat.bedrock_region or settings.aws.region,
        endpoint_url=settings.chat.bedrock_endpoint_url,
        timeout_seconds=settings.aws.timeout_seconds,
    )


async def _agent_model(settings: Settings, stack: AsyncExitStack, target: AwsTarget | None) -> AgentModel:
    chat = settings.chat
    if chat.agent_model == "bedrock":
        client = await stack.enter_async_context(
            open_bedrock_client(
                target or bedrock_target(settings),
                timeout_seconds=chat.bedrock_timeout_seconds,
                # A streaming round holds its connection to the end: as many as the calls the gateway admits.
                max_connections=chat.bedrock_max_connections or settings.transport.max_concurrent_rpcs,
            )
        )
        return BedrockAgent(client, chat.bedrock_model_id, max_tokens=chat.bedrock_max_tokens)
    return ScriptedAgent(delta_delay_seconds=chat.scripted_delta_delay_ms / 1000)


@asynccontextmanager
async def open_app(
    settings: Settings,
    target: AwsTarget | None = None,
    *,
    trust_emulator_keys: bool = False,
    bedrock: AwsTarget | None = None,
    tracer: TracerProvider | None = None,
    model: AgentModel | None = None,
    clock: Callable[[], datetime.datetime] | None = None,
) -> AsyncIterator[App]:
    """Open the clients and build the services; close everything in reverse order on exit.

    `trust_emulator_keys` lets the verifier accept the AWS emulator's signing key (whose private half ships
    with moto). Only the devstack passes True; no configuration can. `bedrock` overrides where the Bedrock
    client points (tests use a fake endpoint with dummy credentials). `tracer` replaces the OTLP exporting
    provider `--otlp-endpoint` would build (tests collect spans in memory). `model` replaces the agent model that
    Settings names (the benchmarks' fast and paced text producers); no configuration can. `clock` is the wall
    clock the chat reads today's date from and bookings are judged and stamped by (tests fix it); today is its
    date in `--chat-time-zone`.
    """
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_aws_clients(target or aws_target(settings)))
        metrics = Metrics()
        provider = tracer or tracer_provider(settings.observability.otlp_endpoint)
        if provider is not None and tracer is None:
            stack.callback(provider.shutdown)
        tracing = Tracing(provider)
        instrument_aws_client(clients.cognito, metrics, tracing)
        instrument_aws_client(clients.dynamodb, metrics, tracing)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        auth, table = settings.auth, settings.aws.table_name
        jwks = JwksCache(
            HttpKeySource(
                http,
                settings.effective_jwks_url,
                timeout_seconds=auth.jwks_timeout_seconds,
                trust_emulator_key=trust_emulator_keys,
            ),
            refetch_interval_seconds=auth.jwks_refetch_interval_seconds,
            max_stale_seconds=auth.jwks_max_stale_seconds,
        )
        revocations = RevocationList(
            DynamoRevocationStore(clients.dynamodb, table),
            poll_interval_seconds=auth.revocation_poll_seconds,
        )
        verifier = CognitoBearerVerifier(
            settings.bearer_policy(),
            jwks,
            revocations,
            cache_size=auth.token_cache_size,
        )
        guests = DynamoGuestStore(clients.dynamodb, table)
        # One today for the whole gateway: the reservation rules and the chat's dates read the same calendar.
        calendar = Calendar.named(settings.chat.time_zone, clock)
        reservations = ReservationService(
            DynamoReservationStore(clients.dynamodb, table), guests=guests, calendar=calendar
        )
        login = build_login_service(settings, clients, revocations)
        chat = ChatService(
            DynamoChatSessionStore(
                clients.dynamodb, table, anonymous_ttl_seconds=settings.chat.anonymous_session_ttl_seconds
            ),
            model or await _agent_model(settings, stack, bedrock),
            ToolRegistry(booking=reservations, sign_in=login or SignInNotConfigured(), calendar=calendar),
            verifier,
            guests=guests,
            limits=settings.chat.limits(),
            admission=ChatAdmission(DynamoRateLimiter(clients.dynamodb, table), settings.chat.quota()),
            flush=settings.chat.flush_policy(),
            journal=DynamoChatEventJournal(
                clients.dynamodb, table, anonymous_ttl_seconds=settings.chat.anonymous_session_ttl_seconds
            ),
            calendar=calendar,
            approvals=DynamoApprovalStore(clients.dynamodb, table),
            booking=reservations,
        )
        metrics.expose(
            lambda: (
                (
                    "gateway_bearer_cache_hits",
                    "Bearer checks answered from the verified-token cache",
                    verifier.cache_hits,
                ),
                (
                    "gateway_bearer_verifications",
                    "Bearer tokens verified cryptographically (cache misses)",
                    verifier.cache_misses,
                ),
            )
        )
        poller = asyncio.create_task(revocations.run(), name="revocation-poller")
        try:
            yield App(
                settings=settings,
                clients=clients,
                verifier=verifier,
                jwks=jwks,
                revocations=revocations,
                login=login,
                reservations=reservations,
                chat=chat,
                metrics=metrics,
                tracing=tracing,
            )
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
