"""Passwordless sign-in: email one-time codes, the login state machine, rate limits, token refresh.

    InitiateLogin ──> [code sent] ──VerifyOtp, right code──> signed in (login deleted: a code works once)
                          │  │
                          │  └─VerifyOtp, wrong code──> [code sent] with one attempt fewer (OTP_INVALID)
                          ├─ no attempts left ───────> exhausted (OTP_ATTEMPTS_EXHAUSTED)
                          ├─ code lifetime over ─────> expired (OTP_EXPIRED)
                          └─ newer InitiateLogin for the same email ──> superseded (LOGIN_NOT_FOUND)

The login state lives in a `LoginStore` under a key the caller may choose: the unary RPCs use a fresh random
login id, the chat agent its chat session id. The identity provider's session never leaves this service and its
store. A login is answered only through the door it was started at: one started in a chat only in that chat,
a unary one only through VerifyOtp (the other door finds no such login). Attempts are counted before the code
is checked, so the limit holds across replicas and racing calls; an attempt whose code the identity provider
never judged (it was unreachable) is given back (`LoginService.verify`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt

from gateway.domain import (
    GuestId,
    IssuedTokens,
    LoginDoor,
    LoginId,
    LoginStarted,
    LoginState,
    Principal,
    RateGrant,
    RateLimit,
    TokenDelivery,
)
from gateway.errors import (
    InvalidArgumentError,
    NotImplementedYetError,
    OtpInvalidError,
    TokenInvalidError,
    TokenRevokedError,
    UnavailableError,
)
from gateway.ports import (
    GuestStore,
    IdentityProvider,
    LoginStore,
    RateLimiter,
    RefreshTokenOwner,
    RefreshTokenStore,
    UserAccount,
)
from gateway.redact import fingerprint, mask_email
from gateway.services.bearer import RevocationList

log = logging.getLogger(__name__)

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100
MAX_LOGIN_KEY_LENGTH = 128
MAX_REFRESH_TOKEN_LENGTH = 8192
# What Cognito accepts in an email-username (the emulator too): a deliberately plain subset of RFC 5322.
_LOCAL_PART = re.compile(r"[A-Za-z0-9%+_-]+(?:\.[A-Za-z0-9%+_-]+)*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TOP_LEVEL = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_CODE = re.compile(r"[0-9]{6,8}")
_LOGIN_KEY = re.compile(r"[A-Za-z0-9_.:-]+")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_login_id() -> LoginId:
    return LoginId(secrets.token_urlsafe(24))  # 192 random bits


@dataclass(frozen=True)
class LoginPolicy:
    """The numbers of sign-in: attempts, code lifetime, rate limits. Defaults follow the issue and OWASP ASVS."""

    max_attempts: int = 3
    max_code_lifetime_seconds: float = 600.0
    resend_cooldown: RateLimit = field(default_factory=lambda: RateLimit("login-resend", 1, 60.0))
    per_email: RateLimit = field(default_factory=lambda: RateLimit("login-email", 5, 3600.0))
    per_peer: RateLimit = field(default_factory=lambda: RateLimit("login-peer", 20, 3600.0))
    verify_per_peer: RateLimit = field(default_factory=lambda: RateLimit("verify-peer", 30, 300.0))
    refresh_token_lifetime_seconds: float = 30 * 86400.0
    # The clock skew the bearer check allows past a token's `exp`: a signed-out family is refused that long more.
    token_leeway_seconds: float = 30.0


def normalize_email(text: str) -> str:
    """Trim and lower-case the domain; raise InvalidArgumentError (field "email") unless it is a plausible address."""
    candidate = text.strip()
    if not candidate:
        raise InvalidArgumentError.for_field("email", "an email address is required")
    local, at, domain = candidate.rpartition("@")
    domain = domain.lower()
    labels = domain.split(".")
    plausible = (
        at
        and candidate.isascii()
        and len(candidate) <= MAX_EMAIL_LENGTH
        and len(local) <= 64
        and _LOCAL_PART.fullmatch(local)
        and len(labels) >= 2
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        and _TOP_LEVEL.fullmatch(labels[-1])
    )
    if not plausible:
        raise InvalidArgumentError.for_field("email", "must be an email address like name@example.com")
    return f"{local}@{domain}"


def normalize_name(text: str) -> str:
    """Trim; raise InvalidArgumentError (field "name") for control characters or more than 100 characters."""
    name = text.strip()
    if len(name) > MAX_NAME_LENGTH or any(not c.isprintable() for c in name):
        raise InvalidArgumentError.for_field("name", f"must be at most {MAX_NAME_LENGTH} printable characters")
    return name


def check_code(code: str) -> None:
    """Raise InvalidArgumentError (field "code") unless `code` is 6 to 8 ASCII digits."""
    if not _CODE.fullmatch(code):
        raise InvalidArgumentError.for_field("code", "must be the 6 to 8 digits from the email")


def check_login_key(login_key: str, field_name: str = "login_id") -> None:
    """Raise InvalidArgumentError unless `login_key` could be a login id (or chat session id)."""
    if not login_key:
        raise InvalidArgumentError.for_field(field_name, "is required")
    if len(login_key) > MAX_LOGIN_KEY_LENGTH or not _LOGIN_KEY.fullmatch(login_key):
        raise InvalidArgumentError.for_field(field_name, "is not a login id from InitiateLogin")


def check_refresh_token(refresh_token: str) -> None:
    """Raise InvalidArgumentError (field "refresh_token") for an empty or oversized token."""
    if not refresh_token.strip():
        raise InvalidArgumentError.for_field("refresh_token", "is required")
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        raise InvalidArgumentError.for_field("refresh_token", f"is longer than {MAX_REFRESH_TOKEN_LENGTH} characters")


def peer_subject(client_address: str) -> str:
    """What per-address limits count by: the IPv4 address, or the /64 of an IPv6 address (one host's share)."""
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:
        return client_address or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# After a sign-in, a guest profile the store could not create is asked for again after these pauses, all of it
# within GUEST_PROFILE_SECONDS (the caller is waiting for tokens it already has).
GUEST_PROFILE_RETRY_SECONDS = (0.2, 0.5)
GUEST_PROFILE_SECONDS = 4.0


class EvenTiming:
    """A stand-in for the identity-provider call that only a new address costs, so that latency tells nothing.

    A new address costs one more call (creating the user) than a known one: without care, InitiateLogin's
    latency would tell whether an account exists. The login service times the "get or create the user" step;
    when it created the user, that duration is `observe`d (the last `window` are kept); when the user was
    already there, the step is held until `stand_in()`: one of the kept durations drawn at random. The step
    then takes, for a known address, what it takes for a new one, drawn from the same distribution (not just the
    same median), and it is held where the creation would have run: whatever else the call does (code sending,
    table writes) costs both kinds alike, even while the backends slow down or speed up. The wait is an
    `asyncio.sleep` (it holds the call, not the event loop); a draw is capped at `max_seconds`; before the first
    creation there is nothing to draw from and nothing is held.
    """

    def __init__(self, *, window: int = 64, max_seconds: float = 2.0) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._max = max_seconds

    def observe(self, seconds: float) -> None:
        """Record how long one "get or create" step that created a user took."""
        self._samples.append(seconds)

    def stand_in(self) -> float:
        """How long a "get or create" step that found the user should take, at least."""
        if not self._samples:
            return 0.0
        return min(secrets.choice(self._samples), self._max)


class LoginService:
    """Sign-in with email one-time codes. Used by the AuthService RPCs and by the chat agent's tools."""

    def __init__(
        self,
        identity: IdentityProvider,
        logins: LoginStore,
        limiter: RateLimiter,
        guests: GuestStore,
        policy: LoginPolicy | None = None,
        *,
        revocations: RevocationList | None = None,
        refresh_tokens: RefreshTokenStore | None = None,
        even_timing: EvenTiming | None = None,
        clock: Callable[[], datetime] = _utc_now,
        new_login_id: Callable[[], LoginId] = _new_login_id,
    ) -> None:
        self._identity = identity
        self._logins = logins
        self._limiter = limiter
        self._guests = guests
        self._policy = policy or LoginPolicy()
        self._revocations = revocations
        self._refresh_tokens = refresh_tokens
        self._even_timing = even_timing or EvenTiming()
        self._clock = clock
        self._new_login_id = new_login_id

    async def initiate(
        self,
        email: str,
        name: str = "",
        client_address: str = "",
        *,
        login_key: str | None = None,
        door: LoginDoor = "unary",
    ) -> LoginStarted:
        """Send a one-time code to `email` and remember the login under `login_key` (default: a new login id).

        The code is answerable only through `door` (`verify` with the same door).

        The answer has the same shape for a new and for a known address, and takes as long (`EvenTiming`).
        A newer login for the same address
        supersedes this one. Raises InvalidArgumentError (email, name), RateLimitedError (per client address,
        resend cooldown, per email), UpstreamUnavailableError; on the latter the per-email limits are given back.
        """
        address = normalize_email(email)
        display_name = normalize_name(name)
        key = login_key or self._new_login_id()
        policy = self._policy
        now = self._clock()
        await self._limiter.acquire(policy.per_peer, peer_subject(client_address), now)
        person = address.lower()
        grants = [await self._limiter.acquire(policy.resend_cooldown, person, now)]
        grants.append(await self._limiter.acquire(policy.per_email, person, now))
        try:
            account = await self._ensure_user_evenly(address)
            sub = account.sub
            challenge = await self._identity.send_code(address)
            lifetime = min(challenge.valid_for_seconds, policy.max_code_lifetime_seconds)
            state = LoginState(
                login_key=key,
                email=address,
                name=display_name,
                sub=sub,
                idp_session=challenge.session,
                nonce=secrets.token_urlsafe(12),
                attempts_used=0,
                max_attempts=policy.max_attempts,
                sent_at=now,
                expires_at=now + timedelta(seconds=lifetime),
                door=door,
            )
            await self._logins.save(state)
        except UnavailableError:
            await self._give_back(grants)
            raise
        log.info("sign-in code sent", extra={"email": mask_email(address), "login": fingerprint(key)})
        return LoginStarted(
            login_id=LoginId(key),
            destination=challenge.destination,
            expires_at=state.expires_at,
            resend_allowed_at=now + timedelta(seconds=policy.resend_cooldown.window_seconds),
        )

    async def _ensure_user_evenly(self, address: str) -> UserAccount:
        """`ensure_user`, taking as long for a known address as for a new one (`EvenTiming`)."""
        started = time.monotonic()
        account = await self._identity.ensure_user(address)
        elapsed = time.monotonic() - started
        if account.created:
            self._even_timing.observe(elapsed)
        elif (wait := self._even_timing.stand_in() - elapsed) > 0:
            await asyncio.sleep(wait)
        return account

    async def _give_back(self, grants: list[RateGrant]) -> None:
        # The person should not wait out a cooldown for a code our outage kept from them.
        for grant in grants:
            await self._limiter.release(grant)

    async def is_pending(self, login_key: str, door: LoginDoor = "unary") -> bool:
        """True while a login started through `door` waits for its code under `login_key`.

        Raises InvalidArgumentError (malformed key), UpstreamUnavailableError.
        """
        check_login_key(login_key)
        return await self._logins.is_pending(login_key, self._clock(), door)

    async def verify(
        self, login_key: str, code: str, client_address: str = "", *, door: LoginDoor = "unary"
    ) -> TokenDelivery:
        """Check `code` for the login under `login_key`; on success, the tokens and the guest profile.

        A code works once, and only through the door its login was started at: any other door gets
        LoginNotFoundError, as for an unknown login. Raises InvalidArgumentError (the code is not 6 to 8
        digits, a malformed login id: not counted as attempts), RateLimitedError (per client address),
        OtpInvalidError (with `attempts_left`), OtpAttemptsExhaustedError, OtpExpiredError, LoginNotFoundError,
        UpstreamUnavailableError (when the identity provider could not check the code, the attempt is given
        back).

        The attempt is reserved (counted) before the code goes to the identity provider and given back when
        the provider fails with UpstreamUnavailableError: unreachable, timing out, throttling us, failing with
        5xx, or answering in a way the gateway cannot use. Counting only once the provider has answered would
        be simpler, but then calls racing on one login, from any replicas, would all be judged before the first
        was counted: unlimited guesses. Reserving first keeps the store's invariant, attempts judged plus
        attempts in flight never exceed the limit, whatever races, and a refund never frees an attempt whose
        code was judged wrong: a wrong code always gets a verdict of its own (OtpInvalidError, or OtpExpiredError
        for a dead session) and keeps its attempt, and an UNAVAILABLE answer tells the caller nothing about it.
        The refund is conditional and idempotent (`LoginStore.refund_attempt`); when it fails, or the call is
        cancelled while the code is checked, the attempt stays spent: errors fall on the side of the limit,
        never of the guesser.
        """
        check_login_key(login_key)
        check_code(code)
        now = self._clock()
        await self._limiter.acquire(self._policy.verify_per_peer, peer_subject(client_address), now)
        state = await self._logins.spend_attempt(login_key, now, door)
        if state.idp_session is None or state.sub is None:
            # No code was sent for this login (the account cannot sign in): no code can be right.
            raise self._wrong_code(state)
        try:
            tokens = await self._identity.check_code(state.email, state.idp_session, code)
        except OtpInvalidError:
            log.info(
                "wrong sign-in code", extra={"login": fingerprint(login_key), "attempts_left": state.attempts_left}
            )
            raise self._wrong_code(state) from None
        except UnavailableError:
            await self._logins.refund_attempt(state)
            raise
        try:
            await self._logins.finish(state)
        except UnavailableError:
            # Cognito refuses a used session anyway; the leftover login expires by itself.
            log.warning("signed-in login not deleted", extra={"login": fingerprint(login_key)})
        guest_id = await self._guest_after_sign_in(state, now)
        await self._remember(tokens)
        log.info("signed in", extra={"email": mask_email(state.email), "guest_id": guest_id})
        return TokenDelivery(
            id_token=tokens.id_token,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token or "",
            expires_in_seconds=tokens.expires_in_seconds,
            token_type=tokens.token_type,
            guest_id=guest_id,
            email=state.email,
            sub=state.sub,
        )

    async def _guest_after_sign_in(self, state: LoginState, now: datetime) -> GuestId:
        """The guest id of a person the identity provider has just signed in: their profile, created if new.

        The code and the provider's sign-in session are spent by now, so a failure here must not cost the
        sign-in: the store is asked again after a short pause, and if it still cannot answer, the tokens are
        delivered without a guest id (an empty one; the next sign-in creates the profile).
        """
        assert state.sub is not None
        try:
            async with asyncio.timeout(GUEST_PROFILE_SECONDS):
                for pause in (*GUEST_PROFILE_RETRY_SECONDS, None):
                    try:
                        profile = await self._guests.get_or_create(state.sub, state.email, state.name, now)
                    except UnavailableError:
                        if pause is None:
                            break
                        await asyncio.sleep(pause)
                    else:
                        return profile.guest_id
        except TimeoutError:
            pass  # a slow store: the same as one that does not answer
        log.warning(
            "signed in without a guest profile; the next sign-in creates it", extra={"email": mask_email(state.email)}
        )
        return GuestId("")

    @staticmethod
    def _wrong_code(state: LoginState) -> OtpInvalidError:
        return OtpInvalidError(
            "the code is wrong; check the email and try again",
            metadata={"attempts_left": str(state.attempts_left)},
        )

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """New ID and access tokens for a refresh token.

        A refresh token of a sign-in the gateway has signed out is refused (TokenRevokedError) without asking the
        identity provider. Tokens the provider mints for a signed-out family are refused too. A rotated refresh
        token is remembered as the gateway's delivery, as is a refresh token the gateway did not know yet
        (delivered before it kept them): SignOut can then revoke it at the provider.

        Raises InvalidArgumentError (empty or oversized), TokenRevokedError, TokenInvalidError (invalid or
        revoked at the provider), UpstreamUnavailableError.
        """
        check_refresh_token(refresh_token)
        owner = await self._refresh_tokens.owner_of(refresh_token) if self._refresh_tokens is not None else None
        if owner is not None and self._is_revoked(owner.token_family):
            log.info("refresh refused: signed out", extra={"token_family": fingerprint(owner.token_family)})
            raise _signed_out()
        tokens = await self._identity.refresh(refresh_token)
        minted = _owner(tokens.access_token)
        if minted is not None and self._is_revoked(minted.token_family):
            log.info("refresh refused: signed out", extra={"token_family": fingerprint(minted.token_family)})
            raise _signed_out()
        if tokens.refresh_token:
            await self._remember(tokens)
        elif owner is None and minted is not None:
            await self._remember(tokens, refresh_token=refresh_token)
        return tokens

    def _is_revoked(self, token_family: str) -> bool:
        return self._revocations is not None and self._revocations.is_revoked(token_family)

    async def _remember(self, tokens: IssuedTokens, *, refresh_token: str | None = None) -> None:
        """Keep what recognises the refresh token as this sign-in's later (its keyed digest, never the token)."""
        token = refresh_token or tokens.refresh_token
        owner = _owner(tokens.access_token)
        if self._refresh_tokens is None or not token or owner is None:
            return
        expires_at = self._clock().timestamp() + self._policy.refresh_token_lifetime_seconds
        try:
            await self._refresh_tokens.remember(token, owner, expires_at)
        except UnavailableError:
            # The tokens are delivered anyway; a sign-out with this refresh token will then refuse the family
            # at the gateway for the token's lifetime instead of revoking it at the provider.
            log.warning("delivered refresh token not recorded", extra={"token_family": fingerprint(owner.token_family)})

    async def sign_out(self, principal: Principal, refresh_token: str = "") -> None:
        """Sign the caller's session out: revoke the refresh token at the identity provider, and refuse the token
        family (`origin_jti`) on every replica until its tokens expire.

        The refresh token is revoked at the provider only when the gateway delivered it for the caller's own
        sign-in (same `sub` and token family); any other value (garbage, somebody else's token, one the gateway
        never delivered) is not sent anywhere and touches nobody else's sign-in. Without a refresh token, with
        one that is not the caller's, or when the provider could not revoke it, the caller's family is refused
        for as long as its refresh token could still mint tokens (`refresh_token_lifetime_seconds`), and
        RefreshSession refuses that family's refresh token. Raises InvalidArgumentError (oversized refresh
        token), UpstreamUnavailableError (the revocation could not be recorded; retrying is safe).
        """
        if self._revocations is None:
            raise NotImplementedYetError("sign-out is not configured on this gateway")
        policy, now = self._policy, self._clock().timestamp()
        # Every access token of the family, the one presented and any other minted from the same refresh token
        # until now (another tab, another device; each lives as long as this one), is refused until it can no
        # longer pass the bearer check.
        lifetime = principal.expires_at - principal.issued_at
        until = max(principal.expires_at, now + lifetime) + policy.token_leeway_seconds
        revoked_at_provider = False
        if refresh_token:
            check_refresh_token(refresh_token)
            if await self._is_callers(principal, refresh_token):
                try:
                    await self._identity.revoke(refresh_token)
                    revoked_at_provider = True
                except (TokenInvalidError, UnavailableError) as exc:
                    log.warning("refresh token not revoked at sign-out", extra={"reason": exc.reason})
            else:
                log.warning(
                    "sign-out with a refresh token that is not the caller's; not revoked at the provider",
                    extra={"token_family": fingerprint(principal.token_family)},
                )
        if not revoked_at_provider:
            # The refresh token can still mint tokens at the provider until it expires, each presentable for an
            # access token's lifetime after that.
            until += policy.refresh_token_lifetime_seconds
        await self._revocations.revoke(principal.token_family, until)
        log.info("signed out", extra={"token_family": fingerprint(principal.token_family)})

    async def _is_callers(self, principal: Principal, refresh_token: str) -> bool:
        if self._refresh_tokens is None:
            return False
        try:
            owner = await self._refresh_tokens.owner_of(refresh_token)
        except UnavailableError:
            return False  # then it is treated as not revoked at the provider: the family is refused longer
        return owner is not None and owner.sub == principal.sub and owner.token_family == principal.token_family


def _signed_out() -> TokenRevokedError:
    return TokenRevokedError("this sign-in was signed out; sign in again")


def _owner(access_token: str) -> RefreshTokenOwner | None:
    """The subject and token family (`origin_jti`) of an access token the identity provider has just issued.

    Read without checking the signature: the token comes straight from the provider over TLS, and what is read
    is only used to recognise its refresh token later, never to let anybody in.
    """
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        log.warning("issued access token is not a readable JWT")
        return None
    sub, family = claims.get("sub"), claims.get("origin_jti")
    if not isinstance(sub, str) or not isinstance(family, str) or not sub or not family:
        log.warning("issued access token without sub or origin_jti")
        return None
    return RefreshTokenOwner(sub=sub, token_family=family)
