"""DevStack: the emulator plus everything created in it, as one async context manager."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.adapters.aws import AwsTarget, open_aws_clients
from gateway.config import Settings
from gateway.devstack import email_otp, transactions, trust
from gateway.devstack.bootstrap import ensure_table, ensure_user_pool, load_demo_data
from gateway.devstack.calls import CallLog
from gateway.devstack.mailbox import DevMailbox
from gateway.devstack.moto import EmulatorServer, WsgiApp

log = logging.getLogger(__name__)

REGION = "us-east-1"
# moto accepts any credentials; these name themselves so nobody mistakes them for real ones.
DUMMY_ACCESS_KEY = "devstack-access-key"
DUMMY_SECRET_KEY = "devstack-secret-key"  # noqa: S105 - not a secret: moto accepts anything


@dataclass(frozen=True)
class DevStackEndpoints:
    """Where the running devstack is and what it created."""

    endpoint_url: str
    region: str
    table_name: str
    user_pool_id: str
    app_client_id: str

    @property
    def issuer(self) -> str:
        """The `iss` of the emulator's tokens: the AWS form, not the local URL."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        """The emulator serves the pool's JWKS on loopback."""
        return f"{self.endpoint_url}/{self.user_pool_id}/.well-known/jwks.json"

    @property
    def target(self) -> AwsTarget:
        """How the gateway's clients reach the emulator."""
        return AwsTarget(
            region=self.region,
            endpoint_url=self.endpoint_url,
            access_key_id=DUMMY_ACCESS_KEY,
            secret_access_key=DUMMY_SECRET_KEY,
        )

    def configure(self, settings: Settings) -> Settings:
        """`settings` pointed at this devstack: endpoint, pool, client, issuer and JWKS on loopback."""
        return settings.replace(
            aws_endpoint_url=self.endpoint_url,
            aws_region=self.region,
            table_name=self.table_name,
            user_pool_id=self.user_pool_id,
            app_client_id=self.app_client_id,
            issuer=self.issuer,
            jwks_url=self.jwks_url,
            allowed_client_ids=(self.app_client_id,),
        )


class DevStack:
    """The embedded local AWS. Start it with `DevStack.running(...)`; its one-time codes land in `mailbox`, and
    `calls.recording()` keeps the AWS calls made meanwhile with the IAM actions they need."""

    def __init__(
        self, server: EmulatorServer, endpoints: DevStackEndpoints, mailbox: DevMailbox, calls: CallLog | None = None
    ) -> None:
        self.server = server
        self.endpoints = endpoints
        self.mailbox = mailbox
        self.calls = calls or CallLog()

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        table_name: str = "booking-gateway",
        demo_data: bool = True,
        otp_length: int = 8,
        announce: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AsyncIterator[DevStack]:
        """Start the emulator on `host:port`, create the table, pool, client and demo data; stop it on exit.

        Sign-in codes have `otp_length` digits (Cognito sends 8) and go to the stack's `mailbox`, which also
        hands a console line per code to `announce`. `clock` is what the emulator's sign-in sessions expire by.
        While it runs, this process can hand gateways it starts trust in the emulator's key (`trust.grant`).
        """
        email_otp.install()
        transactions.install()
        mailbox = DevMailbox(announce)
        options = email_otp.EmailOtpOptions(deliver=mailbox.deliver, otp_length=otp_length, clock=clock)
        secret = trust.new_secret()
        calls = CallLog()

        def wrap(app: WsgiApp) -> WsgiApp:
            return calls.wrap(trust.with_trust_proof(email_otp.with_email_otp(app, options), secret))

        with EmulatorServer(host, port, wrap=wrap) as server, trust.registered(server.url, secret):
            target = AwsTarget(
                region=REGION,
                endpoint_url=server.url,
                access_key_id=DUMMY_ACCESS_KEY,
                secret_access_key=DUMMY_SECRET_KEY,
            )
            async with open_aws_clients(target) as clients:
                await ensure_table(clients, table_name)
                pool = await ensure_user_pool(clients)
                if demo_data:
                    await load_demo_data(clients, table_name)
            endpoints = DevStackEndpoints(
                endpoint_url=server.url,
                region=REGION,
                table_name=table_name,
                user_pool_id=pool.user_pool_id,
                app_client_id=pool.app_client_id,
            )
            yield cls(server, endpoints, mailbox, calls)
