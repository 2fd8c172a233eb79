"""Bearer verification of Cognito access tokens, done once per token.

Order of checks (aws-jwt-verify's, stricter): size → three base64url segments → header (`alg` RS256, `kid`)
→ key from the cached JWKS → RS256 signature → `iss` → `token_use` == "access" → `client_id` allowed →
`exp`/`iat` present, within leeway, lifetime ≤ one day → `origin_jti` not revoked. Each failure has its own
error. A verified token's principal is cached (keyed by a hash of the token, never the token) until `exp`;
revocation is still checked on every call, against an in-memory list that every replica keeps current by
polling the shared store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.domain import Principal, Sub
from gateway.errors import (
    GatewayError,
    JwksUnavailableError,
    TokenExpiredError,
    TokenInvalidError,
    TokenMalformedError,
    TokenRevokedError,
    TokenWrongUseError,
)
from gateway.ports import KeySource, Revocation, RevocationStore

log = logging.getLogger(__name__)

MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
Clock = Callable[[], float]


@dataclass(frozen=True)
class BearerPolicy:
    """What an acceptable access token looks like."""

    issuer: str
    allowed_client_ids: frozenset[str]
    leeway_seconds: float = 30.0
    max_token_bytes: int = 8192


def _b64_json(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise TokenMalformedError("the bearer token is not a well-formed JWT") from exc
    if not isinstance(value, dict):
        raise TokenMalformedError("the bearer token is not a well-formed JWT")
    return value


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalidError(f"the token has no numeric {name} claim")
    return float(value)


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise TokenInvalidError(f"the token has no {name} claim")
    return value


class JwksCache:
    """Signing keys by `kid`, fetched through a `KeySource`.

    Concurrent fetches share one request. A `kid` that is not cached triggers a refetch, so rotated keys are
    picked up without a restart. If that fresh download still lacks the `kid` (or fails), further refetches
    wait `refetch_interval` (aws-jwt-verify's penalty box), so a flood of forged `kid`s cannot hammer the
    endpoint; meanwhile tokens with other unknown `kid`s get `JwksUnavailableError` with a retry delay, never
    an authentication failure that would sign a person out, and cached keys keep working. When fetches fail,
    the last good keys stay in use for up to `max_stale_seconds`.
    """

    def __init__(
        self,
        source: KeySource,
        *,
        refetch_interval_seconds: float = 10.0,
        max_stale_seconds: float = 24 * 3600,
        clock: Clock = time.monotonic,
    ) -> None:
        self._source = source
        self._interval = refetch_interval_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._penalty_until = 0.0
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0

    async def refresh(self) -> None:
        """Fetch the keys now (joining a fetch already under way). Raises JwksUnavailableError on failure."""
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch())
        task = self._inflight
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._inflight is task:
                self._inflight = None

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            keys = await self._source.fetch_keys()
        except JwksUnavailableError:
            self._penalty_until = self._clock() + self._interval
            log.warning("jwks fetch failed; keeping the last good keys", extra={"keys": len(self._keys)})
            raise
        self._keys = keys
        self._fetched_at = self._clock()

    def _usable(self, kid: str) -> RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is None or self._fetched_at is None or self._clock() - self._fetched_at > self._max_stale:
            return None
        return key

    def _unavailable(self) -> JwksUnavailableError:
        return JwksUnavailableError(
            "the token signing keys cannot be checked right now; retry shortly",
            retry_after_seconds=max(self._penalty_until - self._clock(), 1.0),
        )

    async def key_for(self, kid: str) -> RSAPublicKey:
        """The public key with this `kid` (see the class docstring for when it fetches)."""
        key = self._usable(kid)
        if key is not None:
            return key
        if self._inflight is None and self._clock() < self._penalty_until:
            raise self._unavailable()
        try:
            await self.refresh()
        except JwksUnavailableError:
            raise self._unavailable() from None
        key = self._usable(kid)
        if key is not None:
            return key
        self._penalty_until = self._clock() + self._interval
        raise TokenInvalidError("the token is signed with an unknown key")


class RevocationList:
    """Signed-out token families, in memory, kept current from the shared store.

    `revoke` takes effect on this replica at once; other replicas see it at their next poll (every
    `poll_interval_seconds`). Polls ask only for what is new, with an overlap for clock skew between replicas.
    """

    OVERLAP_SECONDS = 30.0

    def __init__(self, store: RevocationStore, *, poll_interval_seconds: float = 2.0, clock: Clock = time.time) -> None:
        self._store = store
        self._interval = poll_interval_seconds
        self._clock = clock
        self._revoked: dict[str, float] = {}
        self._cursor = 0.0

    def is_revoked(self, token_family: str) -> bool:
        """True while the family is signed out."""
        expires_at = self._revoked.get(token_family)
        if expires_at is None:
            return False
        if expires_at <= self._clock():
            del self._revoked[token_family]
            return False
        return True

    async def revoke(self, token_family: str, expires_at: float) -> None:
        """Sign a token family out everywhere. Raises UpstreamUnavailableError if the store is unreachable."""
        now = self._clock()
        await self._store.add(Revocation(token_family=token_family, revoked_at=now, expires_at=expires_at))
        self._revoked[token_family] = expires_at

    async def sync(self) -> None:
        """Fetch what was revoked since the last sync."""
        since = max(self._cursor - self.OVERLAP_SECONDS, 0.0)
        for revocation in await self._store.revoked_since(since):
            self._revoked[revocation.token_family] = revocation.expires_at
            self._cursor = max(self._cursor, revocation.revoked_at)

    async def run(self) -> None:
        """Poll forever; a failed poll keeps the list as it is and tries again next time."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sync()
            except GatewayError:
                log.warning("revocation poll failed; will retry")
            except Exception:
                # A bug or a misconfigured table: say so loudly, but keep the list and the poller alive.
                log.exception("revocation poll failed unexpectedly; will retry")


class CognitoBearerVerifier:
    """Verifies Cognito access tokens; implements the `BearerVerifier` port."""

    def __init__(
        self,
        policy: BearerPolicy,
        keys: JwksCache,
        revocations: RevocationList,
        *,
        cache_size: int = 10_000,
        clock: Clock = time.time,
    ) -> None:
        self._policy = policy
        self._keys = keys
        self._revocations = revocations
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self.cache_hits = 0
        self.cache_misses = 0

    async def verify(self, token: str) -> Principal:
        """The principal of a valid access token; raises a TOKEN_* error otherwise (see module docstring)."""
        if len(token) > self._policy.max_token_bytes:
            raise TokenMalformedError(f"the bearer token is longer than {self._policy.max_token_bytes} bytes")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        principal = self._cache.get(digest)
        if principal is not None:
            self.cache_hits += 1
            self._cache.move_to_end(digest)
            self._check_still_valid(principal, digest)
            return principal
        self.cache_misses += 1
        principal = await self._verify_uncached(token)
        self._cache[digest] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _check_still_valid(self, principal: Principal, digest: bytes) -> None:
        if self._clock() > principal.expires_at + self._policy.leeway_seconds:
            self._cache.pop(digest, None)
            raise TokenExpiredError("the access token has expired; refresh it")
        if self._revocations.is_revoked(principal.token_family):
            self._cache.pop(digest, None)
            raise TokenRevokedError("this session was signed out; sign in again")

    async def _verify_uncached(self, token: str) -> Principal:
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.match(part) for part in parts):
            raise TokenMalformedError("the bearer token is not a well-formed JWT")
        # Structure first (all three segments decode), then meaning.
        header = _b64_json(parts[0])
        claims = _b64_json(parts[1])
        try:
            signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except binascii.Error as exc:
            raise TokenMalformedError("the bearer token is not a well-formed JWT") from exc
        if header.get("alg") != "RS256":
            raise TokenInvalidError("the token is not signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalidError("the token header names no key")
        key = await self._keys.key_for(kid)
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise TokenInvalidError("the token signature is not valid") from exc
        return self._principal_from(claims)

    def _principal_from(self, claims: dict[str, Any]) -> Principal:
        policy = self._policy
        if claims.get("iss") != policy.issuer:
            raise TokenInvalidError("the token was issued by another issuer")
        if claims.get("token_use") != "access":
            raise TokenWrongUseError("send the access token, not the ID token")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in policy.allowed_client_ids:
            raise TokenInvalidError("the token was issued to another client")
        expires_at = _number(claims, "exp")
        issued_at = _number(claims, "iat")
        now = self._clock()
        if now > expires_at + policy.leeway_seconds:
            raise TokenExpiredError("the access token has expired; refresh it")
        if issued_at > now + policy.leeway_seconds:
            raise TokenInvalidError("the token claims to be issued in the future")
        if expires_at <= issued_at or expires_at - issued_at > MAX_TOKEN_LIFETIME_SECONDS:
            raise TokenInvalidError("the token's lifetime is not acceptable")
        sub = _text(claims, "sub")
        family = _text(claims, "origin_jti")
        if self._revocations.is_revoked(family):
            raise TokenRevokedError("this session was signed out; sign in again")
        username = claims.get("username")
        return Principal(
            sub=Sub(sub),
            username=username if isinstance(username, str) else sub,
            client_id=client_id,
            token_family=family,
            expires_at=expires_at,
        )
