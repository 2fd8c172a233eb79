"""Client-library sessions made from the emulator's real tokens, and deliberately expired access tokens."""

from __future__ import annotations

import datetime
import gzip
import json
import time
from importlib import resources
from typing import Any

import jwt

from booking_client import Session
from tests.support.identity import Tokens


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def session_from(
    tokens: Tokens, *, expires_in: datetime.timedelta = datetime.timedelta(hours=1), email: str = ""
) -> Session:
    """A client Session holding `tokens`, whose `expires_at` is `expires_in` from now (negative = in the past)."""
    claims = _claims(tokens.access_token)
    return Session(
        access_token=tokens.access_token,
        id_token=tokens.id_token,
        refresh_token=tokens.refresh_token,
        expires_at=datetime.datetime.now(datetime.UTC) + expires_in,
        guest_id="GST-TEST-0000",
        email=email or str(claims.get("username", "")),
        sub=str(claims["sub"]),
    )


def _emulator_private_key() -> Any:
    # moto signs every emulated pool with this key; its private half ships inside moto (the gateway trusts it
    # only when the devstack started it).
    packed = resources.files("moto.cognitoidp").joinpath("resources/jwks-private.json.gz").read_bytes()
    return jwt.algorithms.RSAAlgorithm.from_jwk(json.loads(gzip.decompress(packed)))


def expired_copy(access_token: str, *, seconds_ago: int = 300) -> str:
    """The same access token (same sub, client, token family), re-signed by the emulator's key, expired."""
    header = jwt.get_unverified_header(access_token)
    claims = _claims(access_token)
    now = int(time.time())
    claims["exp"] = now - seconds_ago
    claims["iat"] = now - seconds_ago - 3600
    claims["auth_time"] = claims["iat"]
    token: str = jwt.encode(claims, _emulator_private_key(), algorithm="RS256", headers={"kid": header["kid"]})
    return token
