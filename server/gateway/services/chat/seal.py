"""Resume tokens and sealed TokenDeliveries: what a keep_running turn keeps of a sign-in, and who can open it.

The resume token is 32 random bytes, given only to the caller of the turn. Two values are derived from it, one
way each: a verifier (HMAC-SHA-256, kept on the session item to check a ResumeChat or CancelTurn) and a sealing
key (HKDF-SHA-256, never kept anywhere). A kept TokenDelivery is sealed with AES-256-GCM under that key, bound to
its session and sequence, so the table holds nothing that opens it: neither the verifier nor a scan helps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.domain import GuestId, Sub, TokenDelivery

_SEAL_INFO = b"booking-gateway token-delivery seal v1"
_VERIFY_INFO = b"booking-gateway resume verifier v1:"
_NONCE_BYTES = 12


def new_resume_token() -> str:
    """A fresh resume token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def resume_verifier(token: str, session_id: str) -> str:
    """What the table keeps to check a resume token: it cannot be turned into the sealing key."""
    return hmac.new(token.encode(), _VERIFY_INFO + session_id.encode(), hashlib.sha256).hexdigest()


def verifies(token: str, session_id: str, verifier: str | None) -> bool:
    """Whether `token` is the one `verifier` was made from (constant time)."""
    if not token or verifier is None:
        return False
    return hmac.compare_digest(resume_verifier(token, session_id), verifier)


def _key(token: str, session_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=session_id.encode(), info=_SEAL_INFO).derive(token.encode())


def _aad(session_id: str, sequence: int) -> bytes:
    return f"{session_id}:{sequence}".encode()


def seal(token: str, session_id: str, sequence: int, delivery: TokenDelivery) -> bytes:
    """The delivery sealed for the holder of `token` (nonce + ciphertext)."""
    payload = json.dumps(
        {
            "id": delivery.id_token,
            "access": delivery.access_token,
            "refresh": delivery.refresh_token,
            "expires_in": delivery.expires_in_seconds,
            "type": delivery.token_type,
            "guest": delivery.guest_id,
            "email": delivery.email,
            "sub": delivery.sub,
        }
    ).encode()
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(_key(token, session_id)).encrypt(nonce, payload, _aad(session_id, sequence))


def unseal(token: str, session_id: str, sequence: int, sealed: bytes) -> TokenDelivery | None:
    """The delivery, or None when `token` is not the one it was sealed for (or the bytes were altered)."""
    if not token or len(sealed) <= _NONCE_BYTES:
        return None
    try:
        payload = AESGCM(_key(token, session_id)).decrypt(
            sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(session_id, sequence)
        )
    except InvalidTag:
        return None
    data = json.loads(payload)
    return TokenDelivery(
        id_token=data["id"],
        access_token=data["access"],
        refresh_token=data["refresh"],
        expires_in_seconds=int(data["expires_in"]),
        token_type=data["type"],
        guest_id=GuestId(data["guest"]),
        email=data["email"],
        sub=Sub(data["sub"]),
    )
