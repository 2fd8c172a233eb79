"""Settings: the gateway's whole configuration by concern, read once at start from GATEWAY_* variables and flags.

This is the only module that reads `os.environ`. Each option is declared once, on its group, with
`gateway.settings_spec.option`; that declaration gives its flag, its `GATEWAY_*` variable, its validation and its
row in docs/configuration.md (`python -m gateway.config --markdown`). A flag wins over the environment. Bad values
stop the start with one line naming the key and the value.

Groups: `transport` (gateway.transport.settings), `observability`, `aws`, `auth` (Cognito pool and bearer
verification), `login` (codes, sign-in rate limits, refresh tokens), `chat` (the agent, its bounds, its text
flushing, Bedrock), `devstack` (the embedded local AWS). Flags and variables keep their flat names
(`--chat-max-rounds` fills `settings.chat.max_rounds`); `Settings.build` and `Settings.replace` take flat names too.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.domain import RateLimit
from gateway.services.bearer import BearerPolicy
from gateway.services.chat import ChatLimits, ChatQuota, FlushPolicy
from gateway.services.login import LoginPolicy
from gateway.settings_spec import (
    ConfigError,
    DeclaredOption,
    as_text,
    boolean,
    choice,
    comma_list,
    env_key,
    flag,
    host_port,
    int_between,
    is_loopback_host,
    non_negative_float,
    option,
    options_of,
    parse_host_port,
    positive_float,
    positive_int,
    text,
    time_zone,
)
from gateway.transport.settings import TransportSettings

__all__ = [
    "DEVSTACK_TRUST_FD_VARIABLE",
    "DOCS_PAGE",
    "AuthSettings",
    "AwsSettings",
    "ChatSettings",
    "ConfigError",
    "DevstackSettings",
    "LoginSettings",
    "ObservabilitySettings",
    "Settings",
    "TransportSettings",
    "argument_parser",
    "env_key",
    "is_loopback_host",
    "main",
    "markdown_table",
    "parse_host_port",
    "started_by_devstack_supervisor",
    "with_table",
]


@dataclass(frozen=True)
class ObservabilitySettings:
    """Logs, metrics and traces."""

    log_level: str = option("INFO", choice("DEBUG", "INFO", "WARNING", "ERROR"), "log level")
    log_format: str = option("json", choice("json", "text"), "log line format: json lines or text")
    metrics_listen: str | None = option(None, host_port, "HOST:PORT serving Prometheus /metrics (unset = off)")
    otlp_endpoint: str | None = option(None, text, "OTLP/gRPC collector for traces, like http://127.0.0.1:4317")


@dataclass(frozen=True)
class AwsSettings:
    """Where DynamoDB and Cognito are. With no user pool configured, `serve` points these at the devstack."""

    endpoint_url: str | None = option(
        None, text, "AWS endpoint URL (unset = the real AWS endpoints)", key="aws_endpoint_url"
    )
    region: str = option("us-east-1", text, "AWS region", key="aws_region")
    table_name: str = option("booking-gateway", text, "DynamoDB table (single-table design)")
    timeout_seconds: float = option(
        5.0, positive_float, "connect and read timeout of every AWS call", key="aws_timeout_seconds"
    )
    cognito_endpoint_url: str | None = option(None, text, "Cognito endpoint URL (unset = --aws-endpoint-url)")


def _loopback_http_url(url: str) -> bool:
    """True for an http:// URL on a loopback host (the devstack's JWKS)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return scheme == "http" and is_loopback_host(host)


@dataclass(frozen=True)
class AuthSettings:
    """The Cognito pool and app client, and how bearer tokens are verified (JWKS, revocations, cache)."""

    user_pool_id: str | None = option(None, text, "Cognito user pool id (unset = embedded local AWS)")
    app_client_id: str | None = option(None, text, "Cognito app client id used for sign-in")
    issuer: str | None = option(None, text, "expected `iss` of access tokens (default: from pool and region)")
    jwks_url: str | None = option(None, text, "JWKS URL (default: the issuer's /.well-known/jwks.json)")
    allowed_client_ids: tuple[str, ...] = option(
        (), comma_list, "comma-separated app client ids accepted in tokens (default: the app client)"
    )
    jwt_leeway_seconds: float = option(30.0, non_negative_float, "clock skew allowed on exp and iat")
    max_token_bytes: int = option(8192, positive_int, "longest bearer token accepted")
    jwks_refetch_interval_seconds: float = option(
        10.0, positive_float, "an unknown key id refetches the JWKS at most this often"
    )
    jwks_max_stale_seconds: float = option(
        86400.0, positive_float, "use the last good JWKS this long when fetches fail"
    )
    jwks_timeout_seconds: float = option(3.0, positive_float, "timeout of one JWKS fetch")
    revocation_poll_seconds: float = option(2.0, positive_float, "how often each replica polls new sign-outs")
    token_cache_size: int = option(10000, positive_int, "verified tokens remembered until they expire")

    def __post_init__(self) -> None:
        if self.user_pool_id is not None and not self.app_client_id:
            raise ConfigError("GATEWAY_APP_CLIENT_ID must be set with GATEWAY_USER_POOL_ID")
        # Keys fetched in cleartext could be swapped on the way; only loopback (the devstack) may use http.
        if self.jwks_url is not None and not (
            self.jwks_url.startswith("https://") or _loopback_http_url(self.jwks_url)
        ):
            raise ConfigError(f"GATEWAY_JWKS_URL={self.jwks_url!r}: must be https (http only on a loopback address)")

    def effective_issuer(self, region: str) -> str:
        """The `iss` access tokens must carry: configured, or the user pool's issuer in `region`."""
        if self.issuer:
            return self.issuer
        if self.user_pool_id is None:
            raise ConfigError("GATEWAY_USER_POOL_ID or GATEWAY_ISSUER must be set to verify tokens")
        return f"https://cognito-idp.{region}.amazonaws.com/{self.user_pool_id}"

    def effective_jwks_url(self, region: str) -> str:
        """Where the signing keys are: configured, or the issuer's well-known JWKS."""
        return self.jwks_url or f"{self.effective_issuer(region)}/.well-known/jwks.json"

    @property
    def effective_client_ids(self) -> frozenset[str]:
        """App client ids accepted in access tokens: configured, or the sign-in client."""
        if self.allowed_client_ids:
            return frozenset(self.allowed_client_ids)
        return frozenset({self.app_client_id} if self.app_client_id else ())

    def bearer_policy(self, region: str) -> BearerPolicy:
        """What an acceptable access token looks like, for a pool in `region`."""
        return BearerPolicy(
            issuer=self.effective_issuer(region),
            allowed_client_ids=self.effective_client_ids,
            leeway_seconds=self.jwt_leeway_seconds,
            max_token_bytes=self.max_token_bytes,
        )


@dataclass(frozen=True)
class LoginSettings:
    """Sign-in: one-time codes, rate limits (counted in DynamoDB, so they hold across replicas), refresh tokens."""

    otp_max_attempts: int = option(3, positive_int, "codes that may be tried per login before it is dead")
    otp_max_lifetime_seconds: float = option(
        600.0, positive_float, "longest a code is honoured (the app client's AuthSessionValidity, capped at this)"
    )
    resend_cooldown_seconds: float = option(
        60.0,
        positive_float,
        "InitiateLogin for one email at most once per this many seconds",
        key="login_resend_cooldown_seconds",
    )
    per_email_limit: int = option(
        5, positive_int, "InitiateLogin calls per email per window", key="login_per_email_limit"
    )
    per_email_window_seconds: float = option(
        3600.0, positive_float, "window of --login-per-email-limit", key="login_per_email_window_seconds"
    )
    per_peer_limit: int = option(
        20, positive_int, "InitiateLogin calls per client address per window", key="login_per_peer_limit"
    )
    per_peer_window_seconds: float = option(
        3600.0, positive_float, "window of --login-per-peer-limit", key="login_per_peer_window_seconds"
    )
    verify_per_peer_limit: int = option(30, positive_int, "VerifyOtp calls per client address per window")
    verify_per_peer_window_seconds: float = option(300.0, positive_float, "window of --verify-per-peer-limit")
    refresh_token_rotation: bool = option(
        False, boolean, "the app client rotates refresh tokens: refresh with GetTokensFromRefreshToken"
    )
    refresh_token_lifetime_seconds: float = option(
        30 * 86400.0, positive_float, "the app client's RefreshTokenValidity (how long sign-out must outlast)"
    )

    def policy(self) -> LoginPolicy:
        """The login service's numbers."""
        return LoginPolicy(
            max_attempts=self.otp_max_attempts,
            max_code_lifetime_seconds=self.otp_max_lifetime_seconds,
            resend_cooldown=RateLimit("login-resend", 1, self.resend_cooldown_seconds),
            per_email=RateLimit("login-email", self.per_email_limit, self.per_email_window_seconds),
            per_peer=RateLimit("login-peer", self.per_peer_limit, self.per_peer_window_seconds),
            verify_per_peer=RateLimit("verify-peer", self.verify_per_peer_limit, self.verify_per_peer_window_seconds),
            refresh_token_lifetime_seconds=self.refresh_token_lifetime_seconds,
        )


@dataclass(frozen=True)
class ChatSettings:
    """The booking agent's stream: its model, the bounds of a session and a turn, and how text is flushed."""

    agent_model: str = option("scripted", choice("scripted", "bedrock"), "the agent's model: scripted or bedrock")
    session_ttl_seconds: float = option(
        86400.0,
        positive_float,
        "a chat session and its history are kept this long after their last turn",
        key="chat_session_ttl_seconds",
    )
    anonymous_session_ttl_seconds: float = option(
        3600.0,
        positive_float,
        "a chat session nobody has signed into is kept this long after its last turn",
        key="chat_anonymous_session_ttl_seconds",
    )
    anonymous_turns_per_minute: int = option(
        20,
        positive_int,
        "chat turns a minute per client address without a bearer",
        key="chat_anonymous_turns_per_minute",
    )
    anonymous_sessions_per_hour: int = option(
        10,
        positive_int,
        "new chat sessions an hour per client address without a bearer",
        key="chat_anonymous_sessions_per_hour",
    )
    guest_turns_per_minute: int = option(
        60, positive_int, "chat turns a minute per signed-in guest", key="chat_guest_turns_per_minute"
    )
    client_tokens_per_day: int = option(
        200_000,
        positive_int,
        "model tokens (input + output) a UTC day per client: a signed-in guest, or an address",
        key="chat_client_tokens_per_day",
    )
    gateway_tokens_per_day: int = option(
        20_000_000,
        positive_int,
        "model tokens (input + output) a UTC day for all chats of the gateway together (every replica)",
        key="chat_gateway_tokens_per_day",
    )
    max_rounds: int = option(
        8, positive_int, "model rounds (a model call and its tools) in one turn", key="chat_max_rounds"
    )
    turn_timeout_seconds: float = option(
        60.0, positive_float, "longest turn; then it ends with stop reason TIMEOUT", key="chat_turn_timeout_seconds"
    )
    history_turns: int = option(
        20, positive_int, "earlier turns of a session the model reads", key="chat_history_turns"
    )
    approval_ttl_seconds: float = option(
        600.0,
        positive_float,
        "a booking or cancellation held for the person's approval waits this long for their decision",
        key="chat_approval_ttl_seconds",
    )
    flush_interval_ms: float = option(
        30.0,
        positive_float,
        "text deltas closer together than this are merged into one message",
        key="chat_flush_interval_ms",
    )
    latency_budget_ms: float = option(
        80.0,
        positive_float,
        "under load the flush interval widens, but never beyond this",
        key="chat_latency_budget_ms",
    )
    text_messages_per_second: float = option(
        5000.0,
        positive_float,
        "text messages a second all streams together aim at; beyond, the interval widens",
        key="chat_text_messages_per_second",
    )
    flush_max_chars: int = option(
        1024, positive_int, "buffered reply text of this size is sent at once", key="chat_flush_max_chars"
    )
    time_zone: str = option(
        "UTC",
        time_zone,
        'the gateway\'s time zone, an IANA name like Europe/Berlin: the agent reads dates in it ("tomorrow" is'
        " tomorrow there) and a stay, over RPC or in the chat, may not start before today there",
        key="chat_time_zone",
    )
    scripted_delta_delay_ms: float = option(
        0.0, non_negative_float, "pause between the scripted agent's words (it types like a model)"
    )
    bedrock_model_id: str = option(
        "anthropic.claude-3-5-haiku-20241022-v1:0", text, "Bedrock model id (or inference profile) for the agent"
    )
    bedrock_region: str | None = option(None, text, "Bedrock region (default: --aws-region)")
    bedrock_endpoint_url: str | None = option(None, text, "Bedrock runtime endpoint URL (unset = AWS)")
    bedrock_max_tokens: int = option(1024, positive_int, "most tokens the model may write in one round")
    bedrock_timeout_seconds: float = option(60.0, positive_float, "longest wait for the model's next bytes")
    bedrock_max_connections: int | None = option(
        None,
        positive_int,
        "connections to Bedrock at once; each streaming model round holds one, and a round beyond them waits for "
        "one to free (default: --max-concurrent-rpcs)",
    )

    def __post_init__(self) -> None:
        if self.latency_budget_ms < self.flush_interval_ms:
            raise ConfigError(
                f"GATEWAY_CHAT_LATENCY_BUDGET_MS={self.latency_budget_ms!r}: must be at least "
                f"GATEWAY_CHAT_FLUSH_INTERVAL_MS ({self.flush_interval_ms!r})"
            )

    def limits(self) -> ChatLimits:
        """The bounds of a chat session and of one turn."""
        return ChatLimits(
            max_rounds=self.max_rounds,
            turn_timeout_seconds=self.turn_timeout_seconds,
            session_ttl_seconds=self.session_ttl_seconds,
            history_turns=self.history_turns,
            approval_ttl_seconds=self.approval_ttl_seconds,
        )

    def quota(self) -> ChatQuota:
        """The per-client bounds on chat: turns, new sessions and model tokens."""
        return ChatQuota(
            anonymous_turns=RateLimit("chat-turns-anon", self.anonymous_turns_per_minute, 60.0),
            anonymous_sessions=RateLimit("chat-sessions-anon", self.anonymous_sessions_per_hour, 3600.0),
            guest_turns=RateLimit("chat-turns-guest", self.guest_turns_per_minute, 60.0),
            client_tokens=RateLimit("chat-tokens-client", self.client_tokens_per_day, 86400.0),
            gateway_tokens=RateLimit("chat-tokens-gateway", self.gateway_tokens_per_day, 86400.0),
        )

    def flush_policy(self) -> FlushPolicy:
        """When buffered reply text goes out."""
        return FlushPolicy(
            interval_seconds=self.flush_interval_ms / 1000,
            latency_budget_seconds=self.latency_budget_ms / 1000,
            messages_per_second=self.text_messages_per_second,
            max_chars=self.flush_max_chars,
        )


@dataclass(frozen=True)
class DevstackSettings:
    """The embedded local AWS that `serve` starts when no user pool is configured."""

    listen: str = option("127.0.0.1:0", host_port, "HOST:PORT of the embedded AWS emulator", key="devstack_listen")
    otp_length: int = option(
        8,
        int_between(6, 8),
        "digits in the emulator's one-time codes (Cognito: 8; VerifyOtp accepts 6..8)",
        key="devstack_otp_length",
    )
    demo_data: bool = option(True, boolean, "load demo properties into an empty table")

    @property
    def listen_address(self) -> tuple[str, int]:
        """The parsed emulator address."""
        return parse_host_port(self.listen)


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration, one group per concern. Build it with `Settings.load`; pass it down explicitly.

    Every group checks its own rules when it is built, so a Settings object is always valid.
    """

    transport: TransportSettings = field(default_factory=TransportSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    devstack: DevstackSettings = field(default_factory=DevstackSettings)

    @property
    def uses_devstack(self) -> bool:
        """True when no Cognito pool is configured: `serve` then runs the embedded local AWS."""
        return self.auth.user_pool_id is None

    def bearer_policy(self) -> BearerPolicy:
        """What an acceptable access token looks like (the issuer defaults from the pool and the AWS region)."""
        return self.auth.bearer_policy(self.aws.region)

    @property
    def effective_jwks_url(self) -> str:
        """Where the signing keys are: configured, or the issuer's well-known JWKS."""
        return self.auth.effective_jwks_url(self.aws.region)

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """Settings from typed values by flat option name (`listen=...`, `chat_max_rounds=...`), defaults elsewhere."""
        return cls().replace(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some options changed, by flat name (or whole groups by group name), validated again."""
        by_group: dict[str, dict[str, Any]] = {}
        whole: dict[str, Any] = {}
        for name, value in changes.items():
            if name in _GROUPS:
                whole[name] = value
                continue
            where = _OPTIONS.get(name)
            if where is None:
                raise TypeError(f"Settings has no option {name!r}")
            group_name, declared = where
            by_group.setdefault(group_name, {})[declared.field_name] = value
        for group_name, group_changes in by_group.items():
            base = whole.get(group_name, getattr(self, group_name))
            whole[group_name] = dataclasses.replace(base, **group_changes)
        return dataclasses.replace(self, **whole)

    @classmethod
    def load(cls, environ: Mapping[str, str], argv: Sequence[str] = ()) -> Settings:
        """Build Settings from environment variables, then flags; raise ConfigError on a bad value."""
        parser = argument_parser(add_help=False)
        namespace, _ = parser.parse_known_args(list(argv))
        values: dict[str, Any] = {}
        for key, (_, declared) in _OPTIONS.items():
            spec = declared.spec
            flag_value = getattr(namespace, key, None)
            raw: str | None
            source: str
            if isinstance(flag_value, list):
                raw, source = ",".join(flag_value), flag(key)
            elif flag_value is not None:
                raw, source = str(flag_value), flag(key)
            elif env_key(key) in environ:
                raw, source = environ[env_key(key)], env_key(key)
            else:
                continue
            try:
                values[key] = spec.cast(raw)
            except ValueError as exc:
                raise ConfigError(f"{source}={raw!r}: {exc}") from None
        return cls.build(**values)

    def to_environment(self) -> dict[str, str]:
        """GATEWAY_* variables that rebuild these Settings in another process (defaults left out)."""
        env: dict[str, str] = {}
        for key, (group_name, declared) in _OPTIONS.items():
            value = getattr(getattr(self, group_name), declared.field_name)
            if value == declared.default or value is None:
                continue
            env[env_key(key)] = as_text(value)
        return env

    @classmethod
    def from_environment(cls, argv: Sequence[str] = ()) -> Settings:
        """Settings from this process's environment and `argv` flags."""
        return cls.load(os.environ, argv)


_GROUPS: dict[str, type[Any]] = {f.name: type(getattr(Settings(), f.name)) for f in dataclasses.fields(Settings)}
# Flat option key -> (group name, declaration), in declaration order: the flags, the variables, the docs table.
_OPTIONS: dict[str, tuple[str, DeclaredOption]] = {}
for _group_name, _cls in _GROUPS.items():
    for _declared in options_of(_cls):
        if _declared.spec.key in _OPTIONS or _declared.spec.key in _GROUPS:
            raise RuntimeError(f"option {_declared.spec.key!r} is declared twice")
        _OPTIONS[_declared.spec.key] = (_group_name, _declared)


# The number of a pipe inherited from the process that runs the embedded emulator: a pointer, never trust itself.
DEVSTACK_TRUST_FD_VARIABLE = "GATEWAY_INTERNAL_DEVSTACK_TRUST_FD"


def started_by_devstack_supervisor(settings: Settings) -> int | None:
    """The descriptor on which the process running the embedded emulator (`--workers` over the devstack, a test
    session) handed this gateway its trust in the emulator's signing key, or None.

    Only where to look: `gateway.devstack.trust.confirm` reads the secret from that inherited pipe and checks it
    against the emulator, so no variable can make a gateway trust the key. Standard streams never count, and the
    JWKS must be fetched from a loopback address.
    """
    value = os.environ.get(DEVSTACK_TRUST_FD_VARIABLE, "")
    if not (value.isascii() and value.isdigit() and 3 <= int(value) < 65536):
        return None
    if settings.auth.jwks_url is None or not _loopback_http_url(settings.auth.jwks_url):
        return None
    return int(value)


def argument_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    """A parser with one flag per option, grouped by concern (values kept as text; Settings.load casts them)."""
    parser = argparse.ArgumentParser(add_help=add_help)
    sections = {name: parser.add_argument_group(f"{name} settings") for name in _GROUPS}
    for key, (group_name, declared) in _OPTIONS.items():
        spec = declared.spec
        section = sections[group_name]
        help_text = f"{spec.help} [env {env_key(key)}]"
        if spec.switch:
            section.add_argument(flag(key), dest=key, action="store_const", const="true", default=None, help=help_text)
        elif spec.repeat:
            section.add_argument(flag(key), dest=key, action="append", default=None, metavar="VALUE", help=help_text)
        else:
            section.add_argument(flag(key), dest=key, default=None, metavar="VALUE", help=help_text)
    return parser


def _shown_default(declared: DeclaredOption) -> str:
    value = declared.default
    if value is None:
        return "unset"
    if value == ():
        return "none"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{as_text(value)}`"


def markdown_table() -> str:
    """The settings table of docs/configuration.md, one section per group, generated from the declarations."""
    lines: list[str] = []
    for group_name, cls in _GROUPS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        lines += [f"### `{group_name}`", "", summary, ""]
        lines += ["| flag | variable | field | default | meaning |", "| --- | --- | --- | --- | --- |"]
        for key, (owner, declared) in _OPTIONS.items():
            if owner != group_name:
                continue
            spec = declared.spec
            shown_flag = f"`{flag(key)}`" + (" (switch)" if spec.switch else " (repeatable)" if spec.repeat else "")
            meaning = spec.help.replace("|", "\\|")
            field_path = f"`{group_name}.{declared.field_name}`"
            lines.append(f"| {shown_flag} | `{env_key(key)}` | {field_path} | {_shown_default(declared)} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


TABLE_START = "<!-- settings table: generated by `python -m gateway.config --write-docs`; do not edit by hand -->"
TABLE_END = "<!-- end of settings table -->"
DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def with_table(page: str) -> str:
    """`page` (docs/configuration.md) with the text between the table markers replaced by `markdown_table()`."""
    pattern = re.compile(re.escape(TABLE_START) + r"\n.*?" + re.escape(TABLE_END), re.DOTALL)
    if not pattern.search(page):
        raise ValueError("the page has no settings table markers")
    return pattern.sub(lambda _: f"{TABLE_START}\n{markdown_table()}{TABLE_END}", page)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.config --markdown` prints the settings table; `--write-docs` updates the docs page."""
    parser = argparse.ArgumentParser(prog="python -m gateway.config", description=main.__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print the settings table")
    action.add_argument("--write-docs", action="store_true", help=f"rewrite the table in {DOCS_PAGE.name}")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        DOCS_PAGE.write_text(with_table(DOCS_PAGE.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
