"""moto's Cognito taught passwordless sign-in: USER_AUTH with EMAIL_OTP, plus RevokeToken and GetTokensFromRefreshToken.

moto 5.2.5 rejects `AuthFlow=USER_AUTH`, answers `{}` to an `EMAIL_OTP` challenge response, and answers HTTP 500
to `RevokeToken`, `GetTokensFromRefreshToken` and to an unknown refresh token on `AdminInitiateAuth`.
`EmailOtpCognitoIdpBackend` subclasses moto's backend so the gateway's unchanged aioboto3 calls behave as the
Cognito reference describes: a fresh code per initiate call, delivered to a dev mailbox instead of an inbox;
`CodeMismatchException` for a wrong code; `NotAuthorizedException` for an expired, used or unknown session; real
tokens from moto's own signer on success.

Pools created with `UsernameConfiguration={"CaseSensitive": False}` (the devstack's, as docs/deployment.md asks
of real pools) find a user by username or email in any case, as Cognito does: `Probe@`, `probe@` and `PROBE@` are
one account, one `sub`. moto 5.2.5 compares them exactly.

`install()` makes it moto's cognito-idp backend (and teaches moto's pools that case rule); call it before the
emulator serves its first request. Options (code length, where codes go, the clock) are per emulator server:
`with_email_otp(app, options)` wraps that server's WSGI app, so two devstacks in one process keep their own
mailboxes. Used by the devstack only.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from moto.cognitoidp import urls as moto_urls
from moto.cognitoidp.exceptions import (
    CodeMismatchException,
    InvalidParameterException,
    NotAuthorizedError,
    ResourceNotFoundError,
    UserNotFoundError,
)
from moto.cognitoidp.models import (
    CognitoIdpBackend,
    CognitoIdpUser,
    CognitoIdpUserPool,
    CognitoIdpUserPoolClient,
    UserStatus,
    cognitoidp_backends,
)
from moto.cognitoidp.responses import CognitoIdpResponse
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult, EmptyResult

USER_AUTH = "USER_AUTH"
EMAIL_OTP = "EMAIL_OTP"
SELECT_CHALLENGE = "SELECT_CHALLENGE"
REFRESH_FLOWS = ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN")
# A session may answer this many wrong codes before it dies (Cognito's documented MFA lockout starts after 5).
MAX_WRONG_CODES = 5

INVALID_SESSION = "Invalid session for the user."
EXPIRED_SESSION = "Invalid session for the user, session is expired."
USED_SESSION = "Invalid session for the user, session can only be used once."
WRONG_CODE = "Invalid code received for user"


@dataclass(frozen=True)
class OtpDelivery:
    """One code "emailed" by the emulator: to whom, the code, and the masked destination Cognito reports."""

    email: str
    code: str = field(repr=False)
    destination: str
    user_pool_id: str
    sent_at: float


@dataclass(frozen=True)
class EmailOtpOptions:
    """How an emulator server issues codes: their length, where they go, and the clock sessions expire by."""

    deliver: Callable[[OtpDelivery], None] = lambda delivery: None
    otp_length: int = 8
    clock: Callable[[], float] = time.time


_options: ContextVar[EmailOtpOptions | None] = ContextVar("email_otp_options", default=None)
_DEFAULT_OPTIONS = EmailOtpOptions()


def _current() -> EmailOtpOptions:
    return _options.get() or _DEFAULT_OPTIONS


@contextmanager
def _using(options: EmailOtpOptions) -> Iterator[None]:
    token = _options.set(options)
    try:
        yield
    finally:
        _options.reset(token)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_email_otp(app: WsgiApp, options: EmailOtpOptions) -> WsgiApp:
    """Wrap an emulator's WSGI app so requests it serves issue codes with `options`.

    The wrapped app must return its whole body before returning (as `SerializedApp` does): the options are only
    in effect during the call.
    """

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with _using(options):
            return app(environ, start_response)

    return serve


class UnauthorizedException(JsonRESTError):
    """RevokeToken: the client may not revoke this token."""

    def __init__(self, message: str) -> None:
        super().__init__("UnauthorizedException", message)


class UnsupportedOperationException(JsonRESTError):
    """RevokeToken on a client without token revocation."""

    def __init__(self, message: str) -> None:
        super().__init__("UnsupportedOperationException", message)


class UnsupportedTokenTypeException(JsonRESTError):
    """RevokeToken given something other than a refresh token."""

    def __init__(self, message: str) -> None:
        super().__init__("UnsupportedTokenTypeException", message)


class RefreshTokenReuseException(JsonRESTError):
    """GetTokensFromRefreshToken given a refresh token that rotation already replaced."""

    def __init__(self, message: str) -> None:
        super().__init__("RefreshTokenReuseException", message)


def mask_destination(email: str) -> str:
    """Cognito's masked email destination: "u***@e***" (first character of the local part and of the domain)."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain[:1]}***"


@dataclass
class _PendingChallenge:
    """What a session string stands for: the challenge it answers, whose it is, and the code when one was sent."""

    challenge: str
    username: str
    user_id: str | None  # None: a decoy for an unknown user (PreventUserExistenceErrors=ENABLED)
    pool_id: str
    client_id: str
    issued_at: float
    available: list[str]
    code: str | None = field(default=None, repr=False)
    wrong_codes: int = 0


def _new_session() -> str:
    # Real sessions are opaque KMS blobs of several hundred characters starting "AYAB".
    return "AYAB" + secrets.token_urlsafe(192)


def _new_code(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


def _jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT the emulator minted itself (no verification needed: it never left this process)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


class EmailOtpCognitoIdpBackend(CognitoIdpBackend):
    """moto's Cognito backend plus USER_AUTH/EMAIL_OTP sign-in, token revocation and refresh-token rotation."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.email_otp_sessions: dict[str, _PendingChallenge] = {}
        self.spent_sessions: set[str] = set()
        self.rotated_refresh_tokens: set[str] = set()

    @property
    def _url_module(self) -> Any:
        # moto derives the URL module from the backend's module name ("moto.x.models" -> "moto.x.urls"); this
        # subclass lives elsewhere, so name moto's routes explicitly, with the extended response class.
        return _URL_MODULE

    # --- sign-in -------------------------------------------------------------------------------------------

    def admin_initiate_auth(
        self, user_pool_id: str, client_id: str, auth_flow: str, auth_parameters: dict[str, str]
    ) -> dict[str, Any]:
        if auth_flow == USER_AUTH:
            user_pool = self.describe_user_pool(user_pool_id)
            client = user_pool.clients.get(client_id)
            if client is None:
                raise ResourceNotFoundError(client_id)
            return self._start_user_auth(user_pool, client, auth_parameters or {})
        if auth_flow in REFRESH_FLOWS:
            user_pool = self.describe_user_pool(user_pool_id)
            self._check_refresh_token(user_pool, client_id, (auth_parameters or {}).get("REFRESH_TOKEN"))
        return super().admin_initiate_auth(user_pool_id, client_id, auth_flow, auth_parameters)

    def initiate_auth(self, client_id: str, auth_flow: str, auth_parameters: dict[str, str]) -> dict[str, Any]:
        if auth_flow == USER_AUTH or auth_flow in REFRESH_FLOWS:
            user_pool, client = self._pool_and_client(client_id)
            if auth_flow == USER_AUTH:
                return self._start_user_auth(user_pool, client, auth_parameters or {})
            self._check_refresh_token(user_pool, client_id, (auth_parameters or {}).get("REFRESH_TOKEN"))
        return super().initiate_auth(client_id, auth_flow, auth_parameters)

    def respond_to_auth_challenge(
        self, session: str, client_id: str, challenge_name: str, challenge_responses: dict[str, str]
    ) -> dict[str, Any]:
        if challenge_name not in (EMAIL_OTP, SELECT_CHALLENGE):
            return super().respond_to_auth_challenge(session, client_id, challenge_name, challenge_responses)
        responses = challenge_responses or {}
        pending = self._live_session(session, client_id)
        if pending.challenge != challenge_name:
            raise NotAuthorizedError(INVALID_SESSION)
        user_pool = self.describe_user_pool(pending.pool_id)
        username = responses.get("USERNAME")
        if not username:
            raise InvalidParameterException("Missing required parameter USERNAME")
        user = user_pool._get_user(username)
        if pending.user_id is not None and (user is None or user.id != pending.user_id):
            raise NotAuthorizedError(INVALID_SESSION)
        client = user_pool.clients[client_id]
        if challenge_name == SELECT_CHALLENGE:
            answer = responses.get("ANSWER", "")
            if answer not in pending.available:
                raise InvalidParameterException(f"ANSWER must be one of {pending.available}")
            if answer != EMAIL_OTP:
                raise InvalidParameterException("the local emulator only signs in with EMAIL_OTP")
            self._spend(session)
            return self._send_code(user_pool, client, pending.username, user, pending.available)
        return self._check_code(session, pending, user_pool, client, user, responses.get("EMAIL_OTP_CODE", ""))

    def _pool_and_client(self, client_id: str) -> tuple[CognitoIdpUserPool, CognitoIdpUserPoolClient]:
        for user_pool in self.user_pools.values():
            if client_id in user_pool.clients:
                return user_pool, user_pool.clients[client_id]
        raise ResourceNotFoundError(client_id)

    def _start_user_auth(
        self, user_pool: CognitoIdpUserPool, client: CognitoIdpUserPoolClient, auth_parameters: dict[str, str]
    ) -> dict[str, Any]:
        if "ALLOW_USER_AUTH" not in client.extended_config.get("ExplicitAuthFlows", []):
            raise InvalidParameterException("USER_AUTH flow not enabled for this client")
        username = auth_parameters.get("USERNAME")
        if not username:
            raise InvalidParameterException("Missing required parameter USERNAME")
        user: CognitoIdpUser | None = user_pool._get_user(username)
        if user is None:
            if client.extended_config.get("PreventUserExistenceErrors") != "ENABLED":
                raise UserNotFoundError("User does not exist.")
            # Hide that the user does not exist: a challenge like any other, but no code is sent and none works.
            return self._challenge_for_unknown_user(user_pool, client, username)
        if not user.enabled:
            raise NotAuthorizedError("User is disabled.")
        available = self._available_challenges(user_pool, user)
        if auth_parameters.get("PREFERRED_CHALLENGE") == EMAIL_OTP and EMAIL_OTP in available:
            return self._send_code(user_pool, client, username, user, available)
        session = _new_session()
        self.email_otp_sessions[session] = _PendingChallenge(
            SELECT_CHALLENGE, username, user.id, user_pool.id, client.id, _current().clock(), available
        )
        return {
            "ChallengeName": SELECT_CHALLENGE,
            "Session": session,
            "ChallengeParameters": {},
            "AvailableChallenges": available,
        }

    @staticmethod
    def _available_challenges(user_pool: CognitoIdpUserPool, user: CognitoIdpUser) -> list[str]:
        factors = (
            user_pool.extended_config.get("Policies", {})
            .get("SignInPolicy", {})
            .get("AllowedFirstAuthFactors", ["PASSWORD"])
        )
        available = []
        if "PASSWORD" in factors and user.password:
            available += ["PASSWORD", "PASSWORD_SRP"]
        if EMAIL_OTP in factors and user.attribute_lookup.get("email"):
            available.append(EMAIL_OTP)
        return available

    def _send_code(
        self,
        user_pool: CognitoIdpUserPool,
        client: CognitoIdpUserPoolClient,
        username: str,
        user: CognitoIdpUser,
        available: list[str],
    ) -> dict[str, Any]:
        options = _current()
        email = user.attribute_lookup["email"]
        session = _new_session()
        code = _new_code(options.otp_length)
        now = options.clock()
        self.email_otp_sessions[session] = _PendingChallenge(
            EMAIL_OTP, username, user.id, user_pool.id, client.id, now, available, code
        )
        destination = mask_destination(email)
        options.deliver(OtpDelivery(email, code, destination, user_pool.id, now))
        return {
            "ChallengeName": EMAIL_OTP,
            "Session": session,
            "ChallengeParameters": {"CODE_DELIVERY_DELIVERY_MEDIUM": "EMAIL", "CODE_DELIVERY_DESTINATION": destination},
            "AvailableChallenges": available,
        }

    def _challenge_for_unknown_user(
        self, user_pool: CognitoIdpUserPool, client: CognitoIdpUserPoolClient, username: str
    ) -> dict[str, Any]:
        session = _new_session()
        self.email_otp_sessions[session] = _PendingChallenge(
            EMAIL_OTP, username, None, user_pool.id, client.id, _current().clock(), [EMAIL_OTP]
        )
        return {
            "ChallengeName": EMAIL_OTP,
            "Session": session,
            "ChallengeParameters": {
                "CODE_DELIVERY_DELIVERY_MEDIUM": "EMAIL",
                "CODE_DELIVERY_DESTINATION": mask_destination(username),
            },
            "AvailableChallenges": [EMAIL_OTP],
        }

    def _live_session(self, session: str, client_id: str) -> _PendingChallenge:
        pending = self.email_otp_sessions.get(session or "")
        if pending is None:
            raise NotAuthorizedError(USED_SESSION if session in self.spent_sessions else INVALID_SESSION)
        if pending.client_id != client_id:
            raise NotAuthorizedError(INVALID_SESSION)
        user_pool = self.describe_user_pool(pending.pool_id)
        client = user_pool.clients.get(client_id)
        validity_seconds = 60 * int(client.extended_config.get("AuthSessionValidity", 3)) if client else 0
        if _current().clock() - pending.issued_at > validity_seconds:
            del self.email_otp_sessions[session]
            raise NotAuthorizedError(EXPIRED_SESSION)
        return pending

    def _spend(self, session: str) -> None:
        self.email_otp_sessions.pop(session, None)
        self.spent_sessions.add(session)

    def _check_code(
        self,
        session: str,
        pending: _PendingChallenge,
        user_pool: CognitoIdpUserPool,
        client: CognitoIdpUserPoolClient,
        user: CognitoIdpUser | None,
        code: str,
    ) -> dict[str, Any]:
        if user is None or pending.code is None or not secrets.compare_digest(code, pending.code):
            pending.wrong_codes += 1
            if pending.wrong_codes >= MAX_WRONG_CODES:
                del self.email_otp_sessions[session]
            raise CodeMismatchException(WRONG_CODE)
        self._spend(session)
        # A correct code proves the address: Cognito verifies it and confirms the user.
        user.update_attributes([{"Name": "email_verified", "Value": "true"}])
        user.status = UserStatus.CONFIRMED
        return self._log_user_in(user_pool, client, pending.username)

    # --- users ---------------------------------------------------------------------------------------------

    def admin_create_user(
        self,
        user_pool_id: str,
        username: str,
        message_action: str,
        temporary_password: str,
        attributes: list[dict[str, str]],
    ) -> CognitoIdpUser:
        user = super().admin_create_user(user_pool_id, username, message_action, temporary_password, attributes)
        user_pool = self.describe_user_pool(user_pool_id)
        factors = user_pool.extended_config.get("Policies", {}).get("SignInPolicy", {}).get("AllowedFirstAuthFactors")
        # With passwordless sign-in active, a user created without a password is not asked to change one.
        if not temporary_password and factors and EMAIL_OTP in factors:
            user.status = UserStatus.CONFIRMED
        return user

    # --- tokens --------------------------------------------------------------------------------------------

    @staticmethod
    def _check_refresh_token(user_pool: CognitoIdpUserPool, client_id: str, refresh_token: str | None) -> None:
        """Cognito's answers for refresh tokens moto would meet with a KeyError (HTTP 500)."""
        if not refresh_token or refresh_token not in user_pool.refresh_tokens:
            raise NotAuthorizedError("Invalid Refresh Token")
        entry = user_pool.refresh_tokens[refresh_token]
        if entry is None:
            raise NotAuthorizedError("Refresh Token has been revoked")
        if entry[0] != client_id:
            raise NotAuthorizedError("Invalid Refresh Token")

    def revoke_token(self, token: str, client_id: str, client_secret: str | None) -> None:
        """Revoke a refresh token and every access and ID token issued from it (same `origin_jti`).

        An unknown or already revoked token is accepted silently, as OAuth token revocation (RFC 7009) does.
        """
        user_pool, client = self._client_for_token_call(client_id, client_secret, UnauthorizedException)
        if not client.extended_config.get("EnableTokenRevocation", True):
            raise UnsupportedOperationException("Token revocation is not enabled for this app client.")
        if token.count(".") == 2:
            raise UnsupportedTokenTypeException("Only refresh tokens can be revoked.")
        entry = user_pool.refresh_tokens.get(token)
        if entry is None:
            return
        if entry[0] != client_id:
            raise UnauthorizedException("The token was not issued to this client.")
        origin_jti = entry[2]
        user_pool.refresh_tokens[token] = None
        for issued in (user_pool.access_tokens, user_pool.id_tokens):
            for jwt in [t for t in issued if _jwt_claims(t).get("origin_jti") == origin_jti]:
                del issued[jwt]

    def get_tokens_from_refresh_token(
        self, refresh_token: str, client_id: str, client_secret: str | None
    ) -> dict[str, Any]:
        """New access and ID tokens; with refresh-token rotation on, also a new refresh token.

        The old refresh token stops working at once (the emulator has no retry grace period).
        """
        user_pool, client = self._client_for_token_call(client_id, client_secret, NotAuthorizedError)
        if refresh_token in self.rotated_refresh_tokens:
            raise RefreshTokenReuseException("Refresh token has been rotated and can no longer be used.")
        self._check_refresh_token(user_pool, client_id, refresh_token)
        access_token, id_token, expires_in = user_pool.create_tokens_from_refresh_token(refresh_token)
        result: dict[str, Any] = {
            "IdToken": id_token,
            "AccessToken": access_token,
            "ExpiresIn": expires_in,
            "TokenType": "Bearer",
        }
        if client.extended_config.get("RefreshTokenRotation", {}).get("Feature") == "ENABLED":
            entry = user_pool.refresh_tokens.pop(refresh_token)
            self.rotated_refresh_tokens.add(refresh_token)
            rotated = secrets.token_urlsafe(48)
            user_pool.refresh_tokens[rotated] = entry
            result["RefreshToken"] = rotated
        return {"AuthenticationResult": result}

    def _client_for_token_call(
        self, client_id: str, client_secret: str | None, error: Callable[[str], JsonRESTError]
    ) -> tuple[CognitoIdpUserPool, CognitoIdpUserPoolClient]:
        try:
            user_pool, client = self._pool_and_client(client_id)
        except ResourceNotFoundError:
            raise error("Invalid client id.") from None
        if client.generate_secret and client_secret != client.secret:
            raise error("Invalid client secret.")
        return user_pool, client


class EmailOtpCognitoIdpResponse(CognitoIdpResponse):
    """moto's Cognito HTTP handlers plus RevokeToken and GetTokensFromRefreshToken."""

    def _backend_for_client(self, client_id: str) -> EmailOtpCognitoIdpBackend:
        # Both operations are unsigned, so the request names no region: find the backend by its client.
        backend = self._get_region_agnostic_backend()._find_backend_for_clientid(client_id)
        return cast(EmailOtpCognitoIdpBackend, backend)

    def revoke_token(self) -> EmptyResult:
        client_id = self._get_param("ClientId")
        self._backend_for_client(client_id).revoke_token(
            self._get_param("Token"), client_id, self._get_param("ClientSecret")
        )
        return EmptyResult()

    def get_tokens_from_refresh_token(self) -> ActionResult:
        client_id = self._get_param("ClientId")
        result = self._backend_for_client(client_id).get_tokens_from_refresh_token(
            self._get_param("RefreshToken"), client_id, self._get_param("ClientSecret")
        )
        return ActionResult(result)


_URL_MODULE = SimpleNamespace(
    url_bases=moto_urls.url_bases,
    url_paths={**moto_urls.url_paths, "{0}/$": EmailOtpCognitoIdpResponse.dispatch},
)


_MOTO_GET_USER = CognitoIdpUserPool._get_user


def _case_insensitive(user_pool: CognitoIdpUserPool) -> bool:
    configuration = user_pool.extended_config.get("UsernameConfiguration") or {}
    return configuration.get("CaseSensitive") is False


def _names(user_pool: CognitoIdpUserPool, user: CognitoIdpUser) -> list[str]:
    """The user's names for sign-in, lower-cased: the username and the pool's username attributes."""
    attribute_types = user_pool.extended_config.get("UsernameAttributes") or []
    names = [user.username, *(user.attribute_lookup.get(attribute) for attribute in attribute_types)]
    return [name.lower() for name in names if isinstance(name, str)]


def _get_user_honouring_case(user_pool: CognitoIdpUserPool, username: str) -> CognitoIdpUser | None:
    """moto's lookup by username or username attribute; in a case-insensitive pool, in any case.

    moto scans every user of the pool on each lookup, so a user created late costs more to find than one created
    early: the timing test of InitiateLogin would measure the emulator's list, not the gateway. A case-insensitive
    pool keeps an index of names; a hit is checked against the user as it is now, and a miss scans the pool and
    rebuilds the index, so users added, removed or renamed since are found exactly as by a scan.
    """
    if not isinstance(username, str) or not _case_insensitive(user_pool):
        user: CognitoIdpUser | None = _MOTO_GET_USER(user_pool, username)
        return user
    wanted = username.lower()
    index: dict[str, CognitoIdpUser] = getattr(user_pool, "_gateway_name_index", {})
    candidate = index.get(wanted)
    if (
        candidate is not None
        and user_pool.users.get(candidate.username) is candidate
        and wanted in _names(user_pool, candidate)
    ):
        return candidate
    index = {}
    for user in user_pool.users.values():
        for name in _names(user_pool, user):
            index.setdefault(name, user)
    user_pool._gateway_name_index = index  # type: ignore[attr-defined]
    return index.get(wanted)


def install() -> None:
    """Make `EmailOtpCognitoIdpBackend` moto's cognito-idp backend in this process, and make moto's user pools
    honour `UsernameConfiguration.CaseSensitive=False`. Idempotent.

    Must run before any Cognito backend exists (before the emulator's first Cognito request): moto creates one
    backend per account and region on first use and keeps it.
    """
    for account_backends in cognitoidp_backends.values():
        for backend in account_backends.values():
            if not isinstance(backend, EmailOtpCognitoIdpBackend):
                raise RuntimeError("install the EMAIL_OTP extension before the emulator serves Cognito requests")
        account_backends.backend = EmailOtpCognitoIdpBackend
    cognitoidp_backends.backend = EmailOtpCognitoIdpBackend
    # Every lookup moto makes (admin_get_user, admin_create_user's existence check, sign-in, token minting) goes
    # through the pool's _get_user; moto serves only the devstack in this process.
    CognitoIdpUserPool._get_user = _get_user_honouring_case  # type: ignore[method-assign,assignment]
