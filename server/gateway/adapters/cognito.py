"""The identity provider on Amazon Cognito: passwordless EMAIL_OTP sign-in through the USER_AUTH flow.

Admin operations (IAM-signed) throughout: the gateway is a trusted server, and admin lookups may reveal whether
an account exists, which is why they never run on a client's behalf without the login service's checks. The
Cognito client is opened with botocore retries off (`adapters.aws`): every AdminInitiateAuth emails a new code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from gateway.adapters._upstream import error_code, translated
from gateway.domain import IssuedTokens, OtpChallenge, Sub
from gateway.errors import OtpExpiredError, OtpInvalidError, TokenInvalidError, UpstreamUnavailableError
from gateway.ports import UserAccount
from gateway.redact import mask_email

if TYPE_CHECKING:
    from types_aiobotocore_cognito_idp import CognitoIdentityProviderClient

log = logging.getLogger(__name__)

SERVICE = "cognito-idp"
EMAIL_OTP: Final = "EMAIL_OTP"
SELECT_CHALLENGE: Final = "SELECT_CHALLENGE"
DEFAULT_AUTH_SESSION_VALIDITY_MINUTES = 3
# AdminInitiateAuth errors meaning "this account cannot sign in with an email code": answered like any other
# login (no code is sent), so that the answer does not reveal the account's state.
CANNOT_SIGN_IN = frozenset({"NotAuthorizedException", "UserNotFoundException", "UserNotConfirmedException"})
UNAVAILABLE_MESSAGE = "sign-in is unavailable right now; retry shortly"


def mask_destination(email: str) -> str:
    """Cognito's masked email destination: "j***@e***"."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain[:1]}***"


def _attribute(attributes: Sequence[Mapping[str, Any]], name: str) -> str | None:
    for attribute in attributes:
        if attribute.get("Name") == name:
            value = attribute.get("Value")
            return str(value) if value is not None else None
    return None


def _wrong_code() -> OtpInvalidError:
    return OtpInvalidError("the code is wrong")


def _session_dead() -> OtpExpiredError:
    return OtpExpiredError("the code has expired; start a new sign-in")


def _token_refused() -> TokenInvalidError:
    return TokenInvalidError("the refresh token is invalid or revoked; sign in again")


class CognitoIdentityProvider:
    """`IdentityProvider` on a Cognito user pool and an app client without a secret.

    The app client must allow `ALLOW_USER_AUTH` and `ALLOW_REFRESH_TOKEN_AUTH`; with `refresh_token_rotation`
    the client rotates refresh tokens and refreshing uses GetTokensFromRefreshToken.
    """

    def __init__(
        self,
        client: CognitoIdentityProviderClient,
        *,
        user_pool_id: str,
        app_client_id: str,
        refresh_token_rotation: bool = False,
    ) -> None:
        self._client = client
        self._user_pool_id = user_pool_id
        self._app_client_id = app_client_id
        self._refresh_token_rotation = refresh_token_rotation
        self._session_validity_seconds: float | None = None

    async def ensure_user(self, email: str) -> UserAccount:
        """Get or create the user (AdminGetUser, then AdminCreateUser without an invitation)."""
        sub = await self._find_user(email)
        if sub is not None:
            return UserAccount(sub, created=False)
        return UserAccount(await self._create_user(email), created=True)

    async def _find_user(self, email: str) -> Sub | None:
        with translated(SERVICE, "AdminGetUser", hide_unknown=True):
            try:
                user = await self._client.admin_get_user(UserPoolId=self._user_pool_id, Username=email)
            except ClientError as exc:
                if error_code(exc) == "UserNotFoundException":
                    return None
                raise
        return self._sub_of(_attribute(user.get("UserAttributes", []), "sub"))

    async def _create_user(self, email: str) -> Sub:
        with translated(SERVICE, "AdminCreateUser", hide_unknown=True):
            try:
                created = await self._client.admin_create_user(
                    UserPoolId=self._user_pool_id,
                    Username=email,
                    MessageAction="SUPPRESS",
                    UserAttributes=[
                        {"Name": "email", "Value": email},
                        {"Name": "email_verified", "Value": "true"},
                    ],
                )
            except ClientError as exc:
                if error_code(exc) != "UsernameExistsException":
                    raise
                # Another replica created the user a moment ago.
                return self._sub_of(None) if (sub := await self._find_user(email)) is None else sub
        log.info("created user", extra={"email": mask_email(email)})
        return self._sub_of(_attribute(created.get("User", {}).get("Attributes", []), "sub"))

    @staticmethod
    def _sub_of(sub: str | None) -> Sub:
        if not sub:
            log.error("user without a sub attribute")
            raise UpstreamUnavailableError(UNAVAILABLE_MESSAGE)
        return Sub(sub)

    async def send_code(self, email: str) -> OtpChallenge:
        """AdminInitiateAuth USER_AUTH preferring EMAIL_OTP; a SELECT_CHALLENGE answer is answered with EMAIL_OTP."""
        valid_for = await self.session_validity_seconds()
        decoy = OtpChallenge(session=None, destination=mask_destination(email), valid_for_seconds=valid_for)
        with translated(SERVICE, "AdminInitiateAuth", hide_unknown=True):
            try:
                answer: Mapping[str, Any] = await self._client.admin_initiate_auth(
                    UserPoolId=self._user_pool_id,
                    ClientId=self._app_client_id,
                    AuthFlow="USER_AUTH",
                    AuthParameters={"USERNAME": email, "PREFERRED_CHALLENGE": EMAIL_OTP},
                )
            except ClientError as exc:
                if error_code(exc) in CANNOT_SIGN_IN:
                    log.info("account cannot sign in with a code", extra={"email": mask_email(email)})
                    return decoy
                raise
        if answer.get("ChallengeName") == SELECT_CHALLENGE:
            if EMAIL_OTP not in answer.get("AvailableChallenges", []):
                log.info("account has no email-code sign-in", extra={"email": mask_email(email)})
                return decoy
            with translated(SERVICE, "AdminRespondToAuthChallenge", hide_unknown=True):
                answer = await self._client.admin_respond_to_auth_challenge(
                    UserPoolId=self._user_pool_id,
                    ClientId=self._app_client_id,
                    ChallengeName=SELECT_CHALLENGE,
                    ChallengeResponses={"USERNAME": email, "ANSWER": EMAIL_OTP},
                    Session=answer["Session"],
                )
        if answer.get("ChallengeName") != EMAIL_OTP or not answer.get("Session"):
            log.error("unexpected sign-in challenge", extra={"challenge": answer.get("ChallengeName")})
            raise UpstreamUnavailableError(UNAVAILABLE_MESSAGE)
        destination = answer.get("ChallengeParameters", {}).get("CODE_DELIVERY_DESTINATION") or decoy.destination
        return OtpChallenge(session=str(answer["Session"]), destination=destination, valid_for_seconds=valid_for)

    async def check_code(self, email: str, session: str, code: str) -> IssuedTokens:
        """AdminRespondToAuthChallenge EMAIL_OTP."""
        known = {
            "CodeMismatchException": _wrong_code,
            "NotAuthorizedException": _session_dead,
            "ExpiredCodeException": _session_dead,
        }
        with translated(SERVICE, "AdminRespondToAuthChallenge", known, hide_unknown=True):
            answer = await self._client.admin_respond_to_auth_challenge(
                UserPoolId=self._user_pool_id,
                ClientId=self._app_client_id,
                ChallengeName=EMAIL_OTP,
                ChallengeResponses={"USERNAME": email, "EMAIL_OTP_CODE": code},
                Session=session,
            )
        result = answer.get("AuthenticationResult")
        if not result or not result.get("RefreshToken"):
            log.error("sign-in answered without tokens", extra={"challenge": answer.get("ChallengeName")})
            raise UpstreamUnavailableError(UNAVAILABLE_MESSAGE)
        return _tokens(result)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """REFRESH_TOKEN_AUTH, or GetTokensFromRefreshToken when the client rotates refresh tokens."""
        known = {"NotAuthorizedException": _token_refused, "RefreshTokenReuseException": _token_refused}
        if self._refresh_token_rotation:
            with translated(SERVICE, "GetTokensFromRefreshToken", known, hide_unknown=True):
                rotated = await self._client.get_tokens_from_refresh_token(
                    RefreshToken=refresh_token, ClientId=self._app_client_id
                )
            return _tokens(rotated.get("AuthenticationResult", {}))
        with translated(SERVICE, "AdminInitiateAuth", known, hide_unknown=True):
            answer = await self._client.admin_initiate_auth(
                UserPoolId=self._user_pool_id,
                ClientId=self._app_client_id,
                AuthFlow="REFRESH_TOKEN_AUTH",
                AuthParameters={"REFRESH_TOKEN": refresh_token},
            )
        return _tokens(answer.get("AuthenticationResult", {}))

    async def revoke(self, refresh_token: str) -> None:
        """RevokeToken: the refresh token and every token issued from it."""
        known = {"UnsupportedTokenTypeException": _token_refused, "UnauthorizedException": _token_refused}
        with translated(SERVICE, "RevokeToken", known, hide_unknown=True):
            await self._client.revoke_token(Token=refresh_token, ClientId=self._app_client_id)

    async def session_validity_seconds(self) -> float:
        """The app client's AuthSessionValidity in seconds: how long a sign-in session (and its code) lives."""
        if self._session_validity_seconds is None:
            with translated(SERVICE, "DescribeUserPoolClient", hide_unknown=True):
                described = await self._client.describe_user_pool_client(
                    UserPoolId=self._user_pool_id, ClientId=self._app_client_id
                )
            minutes = described.get("UserPoolClient", {}).get("AuthSessionValidity")
            self._session_validity_seconds = 60.0 * (minutes or DEFAULT_AUTH_SESSION_VALIDITY_MINUTES)
        return self._session_validity_seconds


def _tokens(result: Mapping[str, Any]) -> IssuedTokens:
    if not result.get("AccessToken") or not result.get("IdToken"):
        log.error("token answer without tokens")
        raise UpstreamUnavailableError(UNAVAILABLE_MESSAGE)
    return IssuedTokens(
        id_token=str(result["IdToken"]),
        access_token=str(result["AccessToken"]),
        refresh_token=str(result["RefreshToken"]) if result.get("RefreshToken") else None,
        expires_in_seconds=int(result.get("ExpiresIn", 3600)),
        token_type=str(result.get("TokenType", "Bearer")),
    )
