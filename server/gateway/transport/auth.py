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


class Unverified:
    """A bearer token that has still to be verified."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


class Authenticator:
    """Applies an RPC's auth policy to a call's metadata."""

    def __init__(self, verifier: BearerVerifier | None, *, max_token_bytes: int = 8192) -> None:
        self._verifier = verifier
        self._max_token_bytes = max_token_bytes

    def check(self, policy: AuthPolicy, metadata: Sequence[tuple[str, str | bytes]]) -> Principal | Unverified | None:
        """What can be decided without waiting: the principal of a token verified before, None for an anonymous
        call the policy allows, or `Unverified` when the token must still be verified (`verify`).

        PUBLIC ignores any token. OPTIONAL accepts no token but refuses a bad one (never downgrades it to
        anonymous). REQUIRED needs a good one. Raises the TOKEN_* errors it can decide now.
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
        # Most calls carry a token already verified: answered here, with no coroutine to run.
        principal = self._verifier.verified(token)
        return principal if principal is not None else Unverified(token)

    async def verify(self, unverified: Unverified) -> Principal:
        """Verify a token `check` could not decide (signature, claims; keys fetched if need be)."""
        assert self._verifier is not None  # check() refuses every token when there is no verifier
        return await self._verifier.verify(unverified.token)

    async def authenticate(self, policy: AuthPolicy, metadata: Sequence[tuple[str, str | bytes]]) -> Principal | None:
        """`check`, then `verify` if needed: the verified principal, or None for an anonymous call allowed."""
        outcome = self.check(policy, metadata)
        return await self.verify(outcome) if isinstance(outcome, Unverified) else outcome
