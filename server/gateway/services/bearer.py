"""Bearer verification of Cognito access tokens, done once per token.

Order of checks (aws-jwt-verify's, stricter): size → three segments, each the one canonical base64url
encoding of its bytes, header and payload strict JSON objects → header (`alg` RS256, `kid`) → key from the
cached JWKS → RS256 signature and `iss` (PyJWT) → `token_use` == "access" → `client_id` allowed → `exp`/`iat`
(and `nbf` when present) integers, checked with leeway by PyJWT, lifetime ≤ one day → `origin_jti` not
revoked. Each failure has its own error. A verified token's principal is cached (keyed by a hash of the token,
never the token) until `exp`; revocation is still checked on every call, against an in-memory list that every
replica keeps current by polling the shared store.
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
from typing import Any, NoReturn

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.types import Options

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
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# PyJWT checks only what its options turn on; time claims are checked apart from the signature and issuer so
# that the order above (iss, token_use, client_id, then times) is kept.
_ALL_CHECKS: Options = {
    "verify_signature": True,
    "verify_iss": True,
    "verify_exp": True,
    "verify_iat": True,
    "verify_nbf": True,
    "verify_aud": False,  # access tokens carry client_id, not aud
    "verify_sub": False,
    "verify_jti": False,
    "require": ["iss", "exp", "iat"],
}
TIME_CLAIMS = ("exp", "iat", "nbf")
Clock = Callable[[], float]


@dataclass(frozen=True)
class BearerPolicy:
    """What an acceptable access token looks like."""

    issuer: str
    allowed_client_ids: frozenset[str]
    leeway_seconds: float = 30.0
    max_token_bytes: int = 8192


def _malformed() -> TokenMalformedError:
    return TokenMalformedError("the bearer token is not a well-formed JWT")


def _segment_bytes(segment: str) -> bytes:
    """The bytes of one segment, which must be their canonical unpadded base64url encoding.

    Python's decoder also accepts padding, stray characters and set trailing bits, so 16 strings or more would
    decode to the same bytes; only the one the encoder writes is accepted.
    """
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise _malformed()
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise _malformed() from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise _malformed()
    return raw


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a member name is repeated")
    return value


def strict_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object under RFC 8259: no NaN or Infinity, no repeated member names. ValueError otherwise."""
    try:
        value = json.loads(raw, parse_constant=_not_json, object_pairs_hook=_unique_keys)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        return strict_json_object(_segment_bytes(segment))
    except ValueError as exc:
        raise _malformed() from exc


def _check_time_claims(claims: dict[str, Any]) -> tuple[int, int]:
    """(exp, iat) of claims whose time claims are integers (seconds); `nbf` may be absent."""
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if value is None and name == "nbf":
            continue
        # A float (or NaN, which strict JSON already refused) would be truncated or compare false everywhere.
        if type(value) is not int:
            raise TokenInvalidError(f"the token's {name} claim is not a whole number of seconds")
    return claims["exp"], claims["iat"]


class _StrictJwt(jwt.PyJWT):
    """PyJWT reading the payload as strict JSON, like the structure check before it."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            return strict_json_object(decoded["payload"])
        except ValueError as exc:
            raise jwt.DecodeError("the payload is not a strict JSON object") from exc


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
        self._jwt = _StrictJwt()
        self.cache_hits = 0
        self.cache_misses = 0

    def verified(self, token: str) -> Principal | None:
        """The remembered principal of a token verified before (expiry and revocation checked again), or None."""
        if len(token) > self._policy.max_token_bytes:
            raise TokenMalformedError(f"the bearer token is longer than {self._policy.max_token_bytes} bytes")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        principal = self._cache.get(digest)
        if principal is None:
            return None
        self.cache_hits += 1
        self._cache.move_to_end(digest)
        self._check_still_valid(principal, digest)
        return principal

    async def verify(self, token: str) -> Principal:
        """The principal of a valid access token; raises a TOKEN_* error otherwise (see module docstring)."""
        principal = self.verified(token)
        if principal is not None:
            return principal
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
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
        if len(parts) != 3:
            raise _malformed()
        # Structure first (all three segments canonical and decodable), then meaning.
        header = _json_segment(parts[0])
        payload = _json_segment(parts[1])
        _segment_bytes(parts[2])
        if header.get("alg") != "RS256":
            raise TokenInvalidError("the token is not signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalidError("the token header names no key")
        key = await self._keys.key_for(kid)
        policy = self._policy
        # One PyJWT decode checks the signature, then the issuer and the time claims. It checks the claims in an
        # order of its own, so a claim it refuses is re-checked here in the documented order (issuer, token_use,
        # client_id, whole-second times, then PyJWT's time verdict); the payload parsed above may be read for
        # that, since PyJWT refuses a bad signature before it looks at any claim.
        time_error: jwt.InvalidTokenError | None = None
        try:
            claims = self._jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                issuer=policy.issuer,
                leeway=policy.leeway_seconds,
                options=_ALL_CHECKS,
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenInvalidError("the token signature is not valid") from exc
        except (
            jwt.ExpiredSignatureError,
            jwt.ImmatureSignatureError,
            jwt.InvalidIssuedAtError,
            jwt.InvalidIssuerError,
            jwt.MissingRequiredClaimError,
        ) as exc:
            claims, time_error = payload, exc
        except jwt.InvalidTokenError as exc:
            raise TokenInvalidError("the token is not acceptable") from exc
        if claims.get("iss") != policy.issuer:
            raise TokenInvalidError("the token was issued by another issuer")
        if claims.get("token_use") != "access":
            raise TokenWrongUseError("send the access token, not the ID token")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in policy.allowed_client_ids:
            raise TokenInvalidError("the token was issued to another client")
        expires_at, issued_at = _check_time_claims(claims)
        if isinstance(time_error, jwt.ExpiredSignatureError):
            raise TokenExpiredError("the access token has expired; refresh it") from time_error
        if isinstance(time_error, jwt.ImmatureSignatureError):
            which = "not valid yet" if "nbf" in str(time_error) else "issued in the future"
            raise TokenInvalidError(f"the token claims to be {which}") from time_error
        if time_error is not None:
            raise TokenInvalidError("the token's times are not acceptable") from time_error
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
            expires_at=float(expires_at),
            issued_at=float(issued_at),
        )
