"""Real RSA keys made at run time and a minter of Cognito-like access tokens with any claims."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["CLIENT_ID", "ISSUER", "SigningKey", "access_claims", "mint", "unsigned"]

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool"
CLIENT_ID = "test-client-a"


@dataclass
class SigningKey:
    """An RSA key pair with its `kid`."""

    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        """A fresh 2048-bit key; `kid` defaults to a random one."""
        return cls(kid or uuid.uuid4().hex[:12], rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWKS entry."""
        numbers = self.private.public_key().public_numbers()

        def b64(n: int) -> str:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"kid": self.kid, "kty": "RSA", "alg": "RS256", "use": "sig", "n": b64(numbers.n), "e": b64(numbers.e)}

    def public_pem(self) -> bytes:
        """The public key, PEM-encoded."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def access_claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a Cognito access token from API sign-in; `overrides` replace or (value None) remove claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iss": ISSUER,
        "client_id": CLIENT_ID,
        "origin_jti": str(uuid.uuid4()),
        "event_id": str(uuid.uuid4()),
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "username": str(uuid.uuid4()),
    }
    for key, value in overrides.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def mint(key: SigningKey, claims: dict[str, Any] | None = None, *, kid: str | None = None) -> str:
    """An RS256 token signed by `key` (header kid = `kid` or the key's own)."""
    return jwt.encode(claims or access_claims(), key.private, algorithm="RS256", headers={"kid": kid or key.kid})


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A token with any header and no valid signature (for alg=none and friends)."""

    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."
