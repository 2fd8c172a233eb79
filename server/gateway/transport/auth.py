"""The auth step of every call, transport-neutral: read the bearer from metadata, apply the RPC's policy."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.domain import Principal
from gateway.errors import TokenInvalidError, TokenMalformedError, TokenMissingError
from gateway.ports import BearerVerifier
from gateway.transport.policy import AuthPolicy

AUTHORIZATION_HEADER = "authorization"


def bearer_from_metadata(metadata: Sequence[tuple[str, str | bytes]], max_token_bytes: int) -> str | None:
    """The token of the single `authorization: Bearer <token>` header, or None when there is none.

    Raises TokenMalformedError for two authorization headers, another scheme, an empty or oversized token.
    """
    # HTTP/2 metadata keys arrive lower-cased.
    found: str | bytes | None = None
    for key, value in metadata:
        if key == AUTHORIZATION_HEADER:
            if found is not None:
                raise TokenMalformedError("send exactly one authorization header")
            found = value
    if found is None:
        return None
    value = found
    if isinstance(value, bytes):
        raise TokenMalformedError("the authorization header must be text")
    # Refuse oversized values before any parsing ("Bearer " + token).
    if len(value) > max_token_bytes + 7:
        raise TokenMalformedError(f"the bearer token is longer than {max_token_bytes} bytes")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenMalformedError('the authorization header must be "Bearer <access token>"')
    token = token.strip()
    if not token or " " in token:
        raise TokenMalformedError('the authorization header must be "Bearer <access token>"')
    return token


class Authenticator:
    """Applies an RPC's auth policy to a call's metadata."""

    def __init__(self, verifier: BearerVerifier | None, *, max_token_bytes: int = 8192) -> None:
        self._verifier = verifier
        self._max_token_bytes = max_token_bytes

    async def authenticate(self, policy: AuthPolicy, metadata: Sequence[tuple[str, str | bytes]]) -> Principal | None:
        """The verified principal, or None for an anonymous call the policy allows.

        PUBLIC ignores any token. OPTIONAL accepts no token but refuses a bad one (never downgrades it to
        anonymous). REQUIRED needs a good one.
        """
        if policy is AuthPolicy.PUBLIC:
            return None
        token = bearer_from_metadata(metadata, self._max_token_bytes)
        if token is None:
            if policy is AuthPolicy.OPTIONAL:
                return None
            raise TokenMissingError('this call needs "authorization: Bearer <access token>" metadata')
        if self._verifier is None:
            raise TokenInvalidError("bearer tokens cannot be verified: no verifier is configured")
        return await self._verifier.verify(token)
