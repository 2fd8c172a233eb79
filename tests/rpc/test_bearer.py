"""Bearer verification over the wire: real RSA keys, a JWKS on loopback, and the emulator's Cognito tokens."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import grpc
import jwt
import pytest
from grpc import aio
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from booking.v1 import chat_pb2, chat_pb2_grpc, reservations_pb2, reservations_pb2_grpc
from gateway.adapters.jwks import is_emulator_key
from gateway.config import ConfigError, Settings
from gateway.devstack import DevStack
from gateway.testing import CLIENT_ID, ISSUER, SigningKey, access_claims, eventually, mint, unsigned
from tests.support.calls import NOT_SERVING, SERVING, health_status
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import emulator_sign_in
from tests.support.jwks import JwksServer
from tests.support.status import reason_of, retry_delay_seconds

# ListReservations answers OK for any signed-in caller (an empty page for a new one).
PASSED_AUTH = {grpc.StatusCode.OK}


async def required_call(
    channel: aio.Channel, token: str | None = None, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    """Call a REQUIRED RPC; return its status code."""
    if token is not None:
        metadata = (*metadata, ("authorization", f"Bearer {token}"))
    stub = reservations_pb2_grpc.ReservationServiceStub(channel)
    try:
        await stub.ListReservations(reservations_pb2.ListReservationsRequest(), metadata=metadata, timeout=10)
    except aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def refused(
    channel: aio.Channel, token: str, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, str]:
    """Call a REQUIRED RPC that must fail; return (code, reason)."""
    stub = reservations_pb2_grpc.ReservationServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListReservations(
            reservations_pb2.ListReservationsRequest(),
            metadata=(*metadata, ("authorization", f"Bearer {token}")),
            timeout=10,
        )
    return reason_of(caught.value)


@dataclass
class BearerWorld:
    gateway: RunningGateway
    jwks: JwksServer
    key: SigningKey


def bearer_settings(settings: Settings, jwks: JwksServer, **changes: object) -> Settings:
    return settings.replace(issuer=ISSUER, jwks_url=jwks.url, allowed_client_ids=(CLIENT_ID,), **changes)


@pytest.fixture(scope="module")
async def world(devstack: DevStack, settings: Settings) -> AsyncIterator[BearerWorld]:
    key = SigningKey.generate()
    jwks = JwksServer(key)
    await jwks.start()
    try:
        async with running_gateway(devstack, bearer_settings(settings, jwks)) as gateway:
            yield BearerWorld(gateway, jwks, key)
    finally:
        await jwks.stop()


async def test_a_valid_access_token_passes_and_is_verified_once(world: BearerWorld) -> None:
    token = mint(world.key)
    verifier = world.gateway.app.verifier
    misses = verifier.cache_misses
    for _ in range(3):
        assert await required_call(world.gateway.channel, token) in PASSED_AUTH
    assert verifier.cache_misses == misses + 1


async def test_the_emulators_real_cognito_access_token_passes_on_the_devstack_gateway(
    gateway: RunningGateway, devstack: DevStack
) -> None:
    tokens = await emulator_sign_in(devstack)
    assert await required_call(gateway.channel, tokens.access_token) in PASSED_AUTH
    assert await refused(gateway.channel, tokens.id_token) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_WRONG_USE")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (access_claims(exp=int(time.time()) - 120, iat=int(time.time()) - 3720), "TOKEN_EXPIRED"),
        (access_claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200), "TOKEN_INVALID"),
        (access_claims(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"), "TOKEN_INVALID"),
        (access_claims(token_use="id", aud=CLIENT_ID, client_id=None), "TOKEN_WRONG_USE"),
        (access_claims(client_id="another-client"), "TOKEN_INVALID"),
        (access_claims(exp=None), "TOKEN_INVALID"),
        (access_claims(iat=None), "TOKEN_INVALID"),
        (access_claims(exp=int(time.time()) + 3 * 86400), "TOKEN_INVALID"),
        (access_claims(origin_jti=None), "TOKEN_INVALID"),
        (access_claims(exp="tomorrow"), "TOKEN_INVALID"),
    ],
    ids=[
        "expired",
        "iat-in-future",
        "wrong-issuer",
        "id-token",
        "unknown-client",
        "no-exp",
        "no-iat",
        "lifetime-over-a-day",
        "no-origin-jti",
        "exp-not-a-number",
    ],
)
async def test_bad_claims_are_unauthenticated_with_their_own_reason(
    world: BearerWorld, claims: dict[str, object], reason: str
) -> None:
    token = mint(world.key, claims)
    assert await refused(world.gateway.channel, token) == (grpc.StatusCode.UNAUTHENTICATED, reason)


NOW = int(time.time())
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        # JSON has no NaN or Infinity (RFC 8259): such a payload is not well formed, whatever the claim.
        (access_claims(exp=NAN), "TOKEN_MALFORMED"),
        (access_claims(exp=INF), "TOKEN_MALFORMED"),
        (access_claims(exp=-INF), "TOKEN_MALFORMED"),
        (access_claims(iat=NAN), "TOKEN_MALFORMED"),
        (access_claims(iat=-INF), "TOKEN_MALFORMED"),
        (access_claims(nbf=NAN), "TOKEN_MALFORMED"),
        # Finite but not whole seconds (or not numbers): refused as claims, signature and all checked first.
        (access_claims(exp=NOW + 3600.5), "TOKEN_INVALID"),
        (access_claims(exp=float(NOW + 3600)), "TOKEN_INVALID"),
        (access_claims(exp=1e308), "TOKEN_INVALID"),
        (access_claims(iat=NOW + 0.5), "TOKEN_INVALID"),
        (access_claims(iat=float(NOW)), "TOKEN_INVALID"),
        (access_claims(iat=str(NOW)), "TOKEN_INVALID"),
        (access_claims(exp=str(NOW + 3600)), "TOKEN_INVALID"),
        (access_claims(exp=True), "TOKEN_INVALID"),
        (access_claims(nbf=float(NOW)), "TOKEN_INVALID"),
        (access_claims(nbf=str(NOW)), "TOKEN_INVALID"),
        (access_claims(nbf=NOW + 600), "TOKEN_INVALID"),
        (access_claims(exp=10**30), "TOKEN_INVALID"),
    ],
    ids=[
        "exp-nan",
        "exp-infinity",
        "exp-minus-infinity",
        "iat-nan",
        "iat-minus-infinity",
        "nbf-nan",
        "exp-fraction",
        "exp-float-whole",
        "exp-1e308",
        "iat-fraction",
        "iat-float-whole",
        "iat-string",
        "exp-string",
        "exp-true",
        "nbf-float",
        "nbf-string",
        "nbf-in-future",
        "exp-huge-integer",
    ],
)
async def test_time_claims_must_be_whole_seconds_and_nbf_is_checked(
    world: BearerWorld, claims: dict[str, object], reason: str
) -> None:
    token = mint(world.key, claims)
    assert await refused(world.gateway.channel, token) == (grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_a_token_with_an_nbf_in_the_past_or_within_leeway_passes(world: BearerWorld) -> None:
    assert await required_call(world.gateway.channel, mint(world.key, access_claims(nbf=NOW - 60))) in PASSED_AUTH
    assert await required_call(world.gateway.channel, mint(world.key, access_claims(nbf=NOW + 5))) in PASSED_AUTH


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def non_canonical_encodings(segment: str) -> list[str]:
    """Strings that a lenient base64url decoder reads as the same bytes as `segment`, other than `segment`."""
    raw = _b64url_decode(segment)
    found = []
    # Padding, complete or not, and too much of it.
    found += [segment + "=" * n for n in range(1, 4)]
    # The unused low bits of the last character set to every other value.
    found += [segment[:-1] + c for c in _B64URL if c != segment[-1] and _b64url_decode(segment[:-1] + c) == raw]
    # The standard alphabet's characters for the URL-safe ones (a lenient decoder maps both).
    if "-" in segment or "_" in segment:
        found.append(segment.replace("-", "+").replace("_", "/"))
    # A character a non-validating decoder skips.
    found.append(segment[:4] + "!" + segment[4:])
    for variant in found:
        # Too much padding does not decode at all: still another string, still to be refused.
        with contextlib.suppress(binascii.Error):
            assert _b64url_decode(variant) == raw, variant
    return found


async def test_every_non_canonical_encoding_of_each_segment_is_refused_and_the_token_still_passes(
    world: BearerWorld,
) -> None:
    channel = world.gateway.channel
    # A payload whose length leaves unused bits, so its last character has variants too.
    token = next(
        candidate
        for candidate in (mint(world.key, access_claims(pad="x" * extra)) for extra in range(3))
        if len(candidate.split(".")[1]) % 4 in (2, 3)
    )
    parts = token.split(".")
    tried: dict[int, int] = {}
    for index, segment in enumerate(parts):
        variants = non_canonical_encodings(segment)
        tried[index] = len(variants)
        for variant in variants:
            changed = [*parts]
            changed[index] = variant
            forged = ".".join(changed)
            assert await refused(channel, forged) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MALFORMED"), (
                index,
                variant[-8:],
            )
    # The signature alone has 15 other last characters (4 unused bits), the old gateway's 15 extra tokens.
    assert tried[2] >= 3 + 15
    verifier = world.gateway.app.verifier
    misses = verifier.cache_misses
    for _ in range(3):
        assert await required_call(channel, token) in PASSED_AUTH
    assert verifier.cache_misses == misses + 1


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_forged_and_broken_tokens_are_refused(world: BearerWorld) -> None:
    channel = world.gateway.channel
    good = mint(world.key)
    claims = access_claims()
    cases = {
        # An unsigned token has an empty third segment: not even the shape of an RS256 JWS.
        "alg-none": (unsigned(claims, {"alg": "none", "kid": world.key.kid}), "TOKEN_MALFORMED"),
        "alg-none-with-signature": (unsigned(claims, {"alg": "none", "kid": world.key.kid}) + "c2ln", "TOKEN_INVALID"),
        "hs256-with-public-key": (
            # PyJWT refuses to sign HS256 with a PEM key, which is the point; build it by hand.
            _hs256_with(world.key.public_pem(), claims, world.key.kid),
            "TOKEN_INVALID",
        ),
        "tampered-payload": (_tamper(good), "TOKEN_INVALID"),
        "truncated": (good.rsplit(".", 1)[0], "TOKEN_MALFORMED"),
        "not-base64": (good.replace(".", ".!!", 1), "TOKEN_MALFORMED"),
        "garbage-json": ("e30.bm90LWpzb24.c2ln", "TOKEN_MALFORMED"),
        "no-kid": (jwt.encode(claims, world.key.private, algorithm="RS256"), "TOKEN_INVALID"),
        "64KiB": ("a" * 65_536, "TOKEN_MALFORMED"),
    }
    for name, (token, reason) in cases.items():
        assert await refused(channel, token) == (grpc.StatusCode.UNAUTHENTICATED, reason), name


def _hs256_with(secret: bytes, claims: dict[str, object], kid: str) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize(
    "metadata",
    [
        (("authorization", "Bearer"),),
        (("authorization", "Token abc.def.ghi"),),
        (("authorization", "abc.def.ghi"),),
        (("authorization", "Bearer a.b.c"), ("authorization", "Bearer d.e.f")),
    ],
    ids=["empty", "other-scheme", "no-prefix", "two-headers"],
)
async def test_malformed_authorization_headers_are_token_malformed(
    world: BearerWorld, metadata: tuple[tuple[str, str], ...]
) -> None:
    stub = reservations_pb2_grpc.ReservationServiceStub(world.gateway.channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListReservations(reservations_pb2.ListReservationsRequest(), metadata=metadata, timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MALFORMED")


async def test_a_required_rpc_without_a_token_is_token_missing(world: BearerWorld) -> None:
    stub = reservations_pb2_grpc.ReservationServiceStub(world.gateway.channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListReservations(reservations_pb2.ListReservationsRequest(), timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_an_optional_rpc_refuses_a_bad_token_instead_of_serving_it_anonymously(world: BearerWorld) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(world.gateway.channel)
    expired = mint(world.key, access_claims(exp=int(time.time()) - 120, iat=int(time.time()) - 600))
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in stub.Chat(
            chat_pb2.ChatRequest(message="hello"), metadata=(("authorization", f"Bearer {expired}"),), timeout=10
        ):
            pass
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(world: BearerWorld) -> None:
    stranger = SigningKey.generate()
    await asyncio.sleep(0)  # let earlier fetches settle
    before = world.jwks.fetches
    first = await refused(world.gateway.channel, mint(stranger, kid="forged-first"))
    assert first == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    for n in range(20):
        # Inside the refetch interval an unknown kid cannot be judged: retry later, never "signed out".
        token = mint(stranger, kid=f"forged-{n}")
        with pytest.raises(aio.AioRpcError) as caught:
            await reservations_pb2_grpc.ReservationServiceStub(world.gateway.channel).ListReservations(
                reservations_pb2.ListReservationsRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
        assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "JWKS_UNAVAILABLE")
        assert (retry_delay_seconds(caught.value) or 0) > 0
    assert world.jwks.fetches - before == 1
    # Tokens with a known kid keep verifying meanwhile.
    assert await required_call(world.gateway.channel, mint(world.key)) in PASSED_AUTH


async def test_keys_rotate_without_restart_or_a_failed_call(devstack: DevStack, settings: Settings) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    jwks = JwksServer(old)
    await jwks.start()
    try:
        async with running_gateway(devstack, bearer_settings(settings, jwks)) as gateway:
            assert await required_call(gateway.channel, mint(old)) in PASSED_AUTH
            jwks.keys = [old, new]  # the pool publishes a new key and starts signing with it
            assert await required_call(gateway.channel, mint(new)) in PASSED_AUTH
            assert await required_call(gateway.channel, mint(old)) in PASSED_AUTH
    finally:
        await jwks.stop()


async def test_a_jwks_outage_keeps_known_keys_and_answers_unavailable_for_unknown_ones(
    devstack: DevStack, settings: Settings
) -> None:
    key = SigningKey.generate()
    jwks = JwksServer(key)
    await jwks.start()
    try:
        fast = bearer_settings(settings, jwks, jwks_refetch_interval_seconds=0.05)
        async with running_gateway(devstack, fast) as gateway:
            jwks.failing = True
            assert await required_call(gateway.channel, mint(key)) in PASSED_AUTH
            before = jwks.fetches

            async def refetched_during_the_outage() -> bool:
                code, reason = await refused(gateway.channel, mint(SigningKey.generate()))
                assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "JWKS_UNAVAILABLE")
                return jwks.fetches > before

            # Every unknown kid is UNAVAILABLE, including once the refetch interval is over and the gateway has
            # asked the failing endpoint again.
            await eventually(refetched_during_the_outage, timeout_seconds=5, what="a refetch from the failing JWKS")
    finally:
        await jwks.stop()


async def test_health_reports_serving_only_once_the_jwks_is_loaded(devstack: DevStack, settings: Settings) -> None:
    key = SigningKey.generate()
    jwks = JwksServer(key)
    await jwks.start()
    jwks.failing = True
    try:
        async with running_gateway(devstack, bearer_settings(settings, jwks)) as gateway:
            assert await health_status(gateway.channel) == NOT_SERVING
            code, reason = await refused(gateway.channel, mint(key))
            assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "JWKS_UNAVAILABLE")
            jwks.failing = False

            async def serving() -> bool:
                return await health_status(gateway.channel) == SERVING

            await eventually(serving, timeout_seconds=10, interval_seconds=0.1, what="health SERVING")
            assert await required_call(gateway.channel, mint(key)) in PASSED_AUTH
    finally:
        await jwks.stop()


async def test_a_revoked_token_family_is_refused_here_at_once_and_on_another_replica_soon(
    world: BearerWorld, devstack: DevStack, settings: Settings
) -> None:
    claims = access_claims()
    token = mint(world.key, claims)
    async with running_gateway(devstack, bearer_settings(settings, world.jwks)) as other:
        assert await required_call(world.gateway.channel, token) in PASSED_AUTH
        assert await required_call(other.channel, token) in PASSED_AUTH
        await world.gateway.app.revocations.revoke(claims["origin_jti"], float(claims["exp"]))
        assert await refused(world.gateway.channel, token) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")

        # The other replica polls every 2 s by default; allow a bounded wait, never a timing assertion.
        async def refused_there() -> bool:
            return await required_call(other.channel, token) is grpc.StatusCode.UNAUTHENTICATED

        await eventually(refused_there, timeout_seconds=10, interval_seconds=0.1, what="the other replica refusing")
        assert await refused(other.channel, token) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
        # A token of the same family refreshed later is refused too; another family is not.
        refreshed = mint(world.key, access_claims(origin_jti=claims["origin_jti"], sub=claims["sub"]))
        assert await refused(other.channel, refreshed) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
        assert await required_call(other.channel, mint(world.key)) in PASSED_AUTH


async def test_a_production_gateway_never_trusts_the_emulators_signing_key(
    devstack: DevStack, settings: Settings
) -> None:
    tokens = await emulator_sign_in(devstack)
    async with running_gateway(devstack, settings, trust_emulator_keys=False) as untrusting:
        code, reason = await refused(untrusting.channel, tokens.access_token)
        assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
        assert reason in ("TOKEN_INVALID", "JWKS_UNAVAILABLE")


async def test_the_emulators_key_re_encoded_is_still_recognised_and_not_trusted_by_a_production_gateway(
    devstack: DevStack, settings: Settings
) -> None:
    async with aiohttp.ClientSession() as http, http.get(devstack.endpoints.jwks_url) as response:
        (emulator_jwk,) = (await response.json())["keys"]
    modulus = base64.urlsafe_b64decode(emulator_jwk["n"] + "==")
    exponent = base64.urlsafe_b64decode(emulator_jwk["e"] + "==")

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    # The same numbers written otherwise: leading zero bytes (one, two) in n and in e.
    variants = [
        {**emulator_jwk, "n": b64(b"\0" + modulus)},
        {**emulator_jwk, "n": b64(b"\0\0" + modulus), "kid": "dummy2"},
        {**emulator_jwk, "e": b64(b"\0" + exponent), "kid": "dummy3"},
    ]
    assert all(variant["n"] != emulator_jwk["n"] or variant["e"] != emulator_jwk["e"] for variant in variants)
    tokens = await emulator_sign_in(devstack)
    jwks = JwksServer()
    jwks.raw_entries = variants
    await jwks.start()
    try:
        re_encoded = settings.replace(jwks_url=jwks.url)
        async with running_gateway(devstack, re_encoded, trust_emulator_keys=False) as untrusting:
            assert await refused(untrusting.channel, tokens.access_token) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "TOKEN_INVALID",
            )
        # The devstack itself (which may trust the key) reads the re-encoded JWKS as the same, usable key.
        async with running_gateway(devstack, re_encoded, trust_emulator_keys=True) as devstack_gateway:
            assert await required_call(devstack_gateway.channel, tokens.access_token) in PASSED_AUTH
    finally:
        await jwks.stop()


def test_the_emulator_key_the_guard_knows_is_the_one_moto_ships() -> None:
    from moto.utilities.utils import load_resource

    (shipped,) = load_resource("cognitoidp/resources/jwks-public.json")["keys"]
    key = jwt.PyJWK(shipped, algorithm="RS256").key
    assert is_emulator_key(key)
    assert not is_emulator_key(SigningKey.generate().private.public_key())


def test_a_jwks_url_in_cleartext_off_loopback_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_JWKS_URL"):
        Settings.build(jwks_url="http://keys.example.com/jwks.json")
    Settings.build(jwks_url="https://keys.example.com/jwks.json")
    Settings.build(jwks_url="http://127.0.0.1:9/jwks.json")


token_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=300),
    st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=4).map(
        lambda parts: ".".join(base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in parts)
    ),
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=token_text)
async def test_random_tokens_are_always_unauthenticated_never_internal(world: BearerWorld, token: str) -> None:
    code, reason = await refused(world.gateway.channel, token)
    assert code is grpc.StatusCode.UNAUTHENTICATED, (token, reason)
    assert reason.startswith("TOKEN_")
    assert await health_status(world.gateway.channel) == SERVING
