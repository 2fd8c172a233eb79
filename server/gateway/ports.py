"""Ports: the small interfaces the services need, shaped by the services, implemented by adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gateway.domain import Principal


class BearerVerifier(Protocol):
    """Turns a bearer access token into a verified principal."""

    async def verify(self, token: str) -> Principal:
        """Verify `token` and return its principal.

        Raises an `AuthenticationError` subclass (TOKEN_*) when the token is not acceptable, and
        `JwksUnavailableError` when the keys needed to judge it cannot be fetched. Never logs the token.
        """
        ...


class KeySource(Protocol):
    """Where the token signing keys come from (the user pool's JWKS)."""

    async def fetch_keys(self) -> dict[str, Any]:
        """Fetch the current signing keys as {kid: public key}.

        Only RSA signature keys for RS256 are returned. Raises `JwksUnavailableError` when the keys cannot be
        fetched or the answer is not a valid JWKS.
        """
        ...


@dataclass(frozen=True)
class Revocation:
    """A signed-out token family: refused until `expires_at` (epoch seconds), recorded at `revoked_at`."""

    token_family: str
    revoked_at: float
    expires_at: float


class RevocationStore(Protocol):
    """Shared record of signed-out token families, visible to every replica."""

    async def add(self, revocation: Revocation) -> None:
        """Record a revocation. Raises `UpstreamUnavailableError` when the store cannot be reached."""
        ...

    async def revoked_since(self, since: float) -> list[Revocation]:
        """Revocations recorded at or after `since` (epoch seconds) that have not expired yet."""
        ...
