"""Ports: the small interfaces the services need, shaped by the services, implemented by adapters."""

from __future__ import annotations

from typing import Protocol

from gateway.domain import Principal


class BearerVerifier(Protocol):
    """Turns a bearer access token into a verified principal."""

    async def verify(self, token: str) -> Principal:
        """Verify `token` and return its principal.

        Raises an `AuthenticationError` subclass (TOKEN_*) when the token is not acceptable, and
        `JwksUnavailableError` when the keys needed to judge it cannot be fetched. Never logs the token.
        """
        ...
