"""Domain values shared by every layer: ids, the authenticated principal. Imports nothing of ours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

Sub = NewType("Sub", str)
"""A Cognito subject: the immutable user id every guest record is keyed by."""

GuestId = NewType("GuestId", str)
"""A guest profile id, like "GST-2026-7K2Q9D"."""

LoginId = NewType("LoginId", str)
"""An opaque login attempt id (at least 128 random bits), handed to clients instead of the Cognito session."""


@dataclass(frozen=True)
class Principal:
    """A caller whose bearer token was verified.

    `token_family` is the token's `origin_jti`: every access token refreshed from one sign-in shares it, so
    revoking it signs that whole session out. `expires_at` is the token's `exp` in epoch seconds.
    """

    sub: Sub
    username: str
    client_id: str
    token_family: str
    expires_at: float
    email: str = ""
    guest_id: GuestId | None = None
