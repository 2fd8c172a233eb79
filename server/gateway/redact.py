"""Masking for values that may appear in logs or messages. Imports nothing of ours."""

from __future__ import annotations

import hashlib


def mask_email(email: str) -> str:
    """Show the first character of the local part and the whole domain: "j***@example.com".

    Anything that does not look like an address is masked entirely.
    """
    local, sep, domain = email.partition("@")
    if not sep or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag for correlating a secret across log lines without revealing it."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:12]
