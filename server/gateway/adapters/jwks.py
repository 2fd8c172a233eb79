"""The user pool's JWKS over HTTP (aiohttp): fetched asynchronously, validated, turned into public keys."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from gateway.errors import JwksUnavailableError

log = logging.getLogger(__name__)

# sha256 of the modulus of the RSA key that ships inside moto and signs every emulated pool's tokens. Its
# private half is public, so a production gateway must never trust it; only the devstack may.
EMULATOR_KEY_FINGERPRINTS = frozenset({"a546642aa4c7ab20f8c4f44630d64157359052f3b7ca6f75f2d3609d7b0aa150"})
JWKS_RETRY_SECONDS = 5.0


def _usable_key(jwk: Any, *, trust_emulator_key: bool) -> tuple[str, RSAPublicKey] | None:
    """(kid, key) of an RSA signature key for RS256, or None when the entry must be ignored."""
    if not isinstance(jwk, dict):
        return None
    kid, kty, use, alg, modulus = jwk.get("kid"), jwk.get("kty"), jwk.get("use"), jwk.get("alg"), jwk.get("n")
    if not isinstance(kid, str) or not kid or kty != "RSA" or not isinstance(modulus, str):
        return None
    if use not in (None, "sig") or alg not in (None, "RS256"):
        return None
    if hashlib.sha256(modulus.encode()).hexdigest() in EMULATOR_KEY_FINGERPRINTS and not trust_emulator_key:
        log.error("ignoring the AWS emulator's public signing key: it is only trusted by the devstack")
        return None
    try:
        key = PyJWK(jwk, algorithm="RS256").key
    except PyJWKError:
        return None
    if not isinstance(key, RSAPublicKey):
        return None
    return kid, key


class HttpKeySource:
    """Fetches a JWKS document with short timeouts; implements the `KeySource` port."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        timeout_seconds: float = 3.0,
        trust_emulator_key: bool = False,
    ) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._trust_emulator_key = trust_emulator_key

    async def fetch_keys(self) -> dict[str, Any]:
        """GET the JWKS and return its usable keys; JwksUnavailableError on any failure."""
        try:
            async with self._session.get(self._url, timeout=self._timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise JwksUnavailableError(
                        "the token signing keys cannot be fetched right now; retry shortly",
                        retry_after_seconds=JWKS_RETRY_SECONDS,
                    )
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise JwksUnavailableError(
                "the token signing keys cannot be fetched right now; retry shortly",
                retry_after_seconds=JWKS_RETRY_SECONDS,
            ) from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise JwksUnavailableError("the JWKS endpoint answered something that is not JSON") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JwksUnavailableError("the JWKS endpoint answered a document without a keys list")
        keys: dict[str, Any] = {}
        for entry in entries:
            usable = _usable_key(entry, trust_emulator_key=self._trust_emulator_key)
            if usable is not None:
                keys[usable[0]] = usable[1]
        return keys
