"""The user pool's JWKS over HTTP (aiohttp): fetched asynchronously, validated, turned into public keys."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from gateway.errors import JwksUnavailableError

log = logging.getLogger(__name__)

# The RSA key that ships inside moto and signs every emulated pool's tokens, as (modulus, exponent). Its private
# half is public, so a production gateway must never trust it; only the devstack may. Compared as numbers, so no
# re-encoding of the JWK (a leading zero byte in `n`, padding) gets it past the guard.
EMULATOR_PUBLIC_KEYS = frozenset(
    {
        (
            int(
                "8f5a53df129bb3098cc92bc279f9a20f799f0da445a59f58dc99787c5d2131a091540b7f7b4c91ec17ae7837ea9a3fcd"
                "85548ed160796a8e5ef15fbd44540eb4af12aea2a5de2d35f82c9660f202c326da18a85b2494744bfe9c67c9f992c705"
                "d4c8e9225b09702ce6fb22a04dcdccc64e8ab6b2e836046f33018b7875173e4852f581df0ca45ef3ae2230538ae1d7fa"
                "f5bac86042021b654b76e87485761ad22f89dddaf09bbbf135d5fba55a420eedf8a89b58a16aba097b774f37e2dd87d6"
                "a7c7058c635b6836b75a709dd885e9a744c5b054be704b30e6b2634a5e4e965246799281b4b7b2553cbd3d8c2793b316"
                "e3759261e62cb5b93d365b97e07f08bb",
                16,
            ),
            65537,
        )
    }
)
JWKS_RETRY_SECONDS = 5.0


def _usable_key(jwk: Any, *, trust_emulator_key: bool) -> tuple[str, RSAPublicKey] | None:
    """(kid, key) of an RSA signature key for RS256, or None when the entry must be ignored."""
    if not isinstance(jwk, dict):
        return None
    kid, kty, use, alg = jwk.get("kid"), jwk.get("kty"), jwk.get("use"), jwk.get("alg")
    if not isinstance(kid, str) or not kid or kty != "RSA":
        return None
    if use not in (None, "sig") or alg not in (None, "RS256"):
        return None
    try:
        key = PyJWK(jwk, algorithm="RS256").key
    except PyJWKError:
        return None
    if not isinstance(key, RSAPublicKey):
        return None
    if is_emulator_key(key) and not trust_emulator_key:
        log.error("ignoring the AWS emulator's public signing key: it is only trusted by the devstack")
        return None
    return kid, key


def is_emulator_key(key: RSAPublicKey) -> bool:
    """True for moto's signing key, however its JWK was written: the modulus and exponent are compared."""
    numbers = key.public_numbers()
    return (numbers.n, numbers.e) in EMULATOR_PUBLIC_KEYS


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
