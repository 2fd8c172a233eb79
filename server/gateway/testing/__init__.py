"""Helpers shared by the tests and the benchmarks (never imported by the gateway itself)."""

from __future__ import annotations

from gateway.testing.connect import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes
from gateway.testing.descriptors import service_file
from gateway.testing.tokens import CLIENT_ID, ISSUER, SigningKey, access_claims, mint, unsigned
from gateway.testing.waiting import eventually

__all__ = [
    "CLIENT_ID",
    "CONNECT_STREAM_HEADERS",
    "END_STREAM",
    "ISSUER",
    "SigningKey",
    "access_claims",
    "envelope",
    "envelopes",
    "eventually",
    "mint",
    "service_file",
    "unsigned",
]
