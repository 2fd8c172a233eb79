"""Settings: the gateway's whole configuration, read once at start from GATEWAY_* variables and flags.

This is the only module that reads `os.environ`. Every option has an environment key and a flag; a flag wins
over the environment. Bad values stop the start with one line naming the key and the value.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.transport.settings import TransportSettings


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the key and the value."""


def parse_host_port(text: str) -> tuple[str, int]:
    """Split "HOST:PORT" (IPv6 as "[::1]:PORT"); PORT 0 means "pick a free one"."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise ValueError("port must be 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def cast(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}")
        return value

    return cast


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def cast(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text

    return cast


def _listen(text: str) -> str:
    parse_host_port(text)
    return text


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError("no such directory")
    return path


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _str(text: str) -> str:
    return text


def _origins(text: str) -> tuple[str, ...]:
    # Browsers send the origin lower-cased and without a trailing slash.
    origins = tuple(origin.lower().rstrip("/") for origin in _csv(text))
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(f"{origin!r} is not an origin like https://chat.example.com (scheme://host[:port])")
    return origins


def _networks(text: str) -> tuple[str, ...]:
    networks = _csv(text)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not an IP address or CIDR network") from None
    return networks


def _metadata_key(text: str) -> str:
    key = text.strip().lower()
    if not key or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in key) or key.endswith("-bin"):
        raise ValueError("expected a gRPC metadata key like x-forwarded-for")
    return key


@dataclass(frozen=True)
class Option:
    """How one setting is read: its cast and help text. Key and flag derive from the field name.

    A repeatable flag may be given several times; its values are joined with commas before the cast.
    """

    cast: Callable[[str], Any]
    help: str
    flag_is_switch: bool = False
    flag_is_repeatable: bool = False


def option(default: Any, cast: Callable[[str], Any], help: str, *, switch: bool = False, repeat: bool = False) -> Any:
    """Declare a Settings field with how to parse it from text."""
    return field(default=default, metadata={"option": Option(cast, help, switch, repeat)})


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration. Build it with `Settings.load`; pass it down explicitly."""

    # Serving
    listen: str = option("127.0.0.1:50051", _listen, "HOST:PORT of the gRPC face (port 0 = pick one)")
    tls_cert: Path | None = option(None, _existing_file, "PEM certificate chain; serves TLS with --tls-key")
    tls_key: Path | None = option(None, _existing_file, "PEM private key for --tls-cert")
    insecure: bool = option(
        False, _bool, "allow a non-loopback listen address without TLS (behind a TLS-terminating proxy)", switch=True
    )
    workers: int = option(1, _positive_int, "worker processes sharing the listen port (SO_REUSEPORT)")
    reuse_port: bool = option(False, _bool, "bind with SO_REUSEPORT (set for workers by --workers)", switch=True)
    grace_seconds: float = option(10.0, _non_negative_float, "how long open calls may finish after SIGTERM")
    drain_delay_seconds: float = option(
        0.0, _non_negative_float, "after SIGTERM, report NOT_SERVING this long before refusing new calls"
    )
    max_concurrent_rpcs: int = option(512, _positive_int, "calls in flight before new ones get RESOURCE_EXHAUSTED")
    gc_freeze: bool = option(
        True,
        _bool,
        "once started, exempt what start-up loaded (AWS service models, modules) from garbage collection",
    )
    web_listen: str = option(
        "127.0.0.1:8080", _listen, "HOST:PORT of the web face: browser chat, Connect and gRPC-Web (port 0 = pick one)"
    )
    no_web: bool = option(False, _bool, "do not serve the web face", switch=True)
    web_allowed_origin: tuple[str, ...] = option(
        (), _origins, "another origin whose pages may call the web face (repeatable, or a comma list)", repeat=True
    )
    web_static_dir: Path | None = option(
        None, _existing_dir, "the built browser chat to serve (default: clients/web/dist of this checkout)"
    )
    log_level: str = option("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "log level")
    log_format: str = option("json", _choice("json", "text"), "log line format")
    metrics_listen: str | None = option(None, _listen, "HOST:PORT serving Prometheus /metrics (unset = off)")
    otlp_endpoint: str | None = option(None, _str, "OTLP/gRPC collector for traces, like http://127.0.0.1:4317")

    # AWS: with no user pool configured, `serve` starts the embedded local AWS (moto) and fills these in.
    aws_endpoint_url: str | None = option(None, _str, "AWS endpoint URL (unset = the real AWS endpoints)")
    aws_region: str = option("us-east-1", _str, "AWS region")
    table_name: str = option("booking-gateway", _str, "DynamoDB table (single-table design)")
    user_pool_id: str | None = option(None, _str, "Cognito user pool id (unset = embedded local AWS)")
    app_client_id: str | None = option(None, _str, "Cognito app client id used for sign-in")
    aws_timeout_seconds: float = option(5.0, _positive_float, "connect and read timeout of every AWS call")
    cognito_endpoint_url: str | None = option(None, _str, "Cognito endpoint URL (unset = --aws-endpoint-url)")
    refresh_token_rotation: bool = option(
        False, _bool, "the app client rotates refresh tokens: refresh with GetTokensFromRefreshToken"
    )
    refresh_token_lifetime_seconds: float = option(
        30 * 86400.0, _positive_float, "the app client's RefreshTokenValidity (how long sign-out must outlast)"
    )

    # Embedded local AWS (devstack)
    devstack_listen: str = option("127.0.0.1:0", _listen, "HOST:PORT of the embedded AWS emulator")
    devstack_otp_length: int = option(
        8, _int_between(6, 8), "digits in the emulator's one-time codes (Cognito: 8; VerifyOtp accepts 6..8)"
    )
    demo_data: bool = option(True, _bool, "load demo properties into an empty table")

    # Sign-in: one-time codes and rate limits (counted in DynamoDB, so they hold across replicas)
    otp_max_attempts: int = option(3, _positive_int, "codes that may be tried per login before it is dead")
    otp_max_lifetime_seconds: float = option(
        600.0, _positive_float, "longest a code is honoured (the app client's AuthSessionValidity, capped at this)"
    )
    login_resend_cooldown_seconds: float = option(
        60.0, _positive_float, "InitiateLogin for one email at most once per this many seconds"
    )
    login_per_email_limit: int = option(5, _positive_int, "InitiateLogin calls per email per window")
    login_per_email_window_seconds: float = option(3600.0, _positive_float, "window of --login-per-email-limit")
    login_per_peer_limit: int = option(20, _positive_int, "InitiateLogin calls per client address per window")
    login_per_peer_window_seconds: float = option(3600.0, _positive_float, "window of --login-per-peer-limit")
    verify_per_peer_limit: int = option(30, _positive_int, "VerifyOtp calls per client address per window")
    verify_per_peer_window_seconds: float = option(300.0, _positive_float, "window of --verify-per-peer-limit")
    trusted_proxies: tuple[str, ...] = option(
        (), _networks, "comma-separated proxy addresses/CIDRs whose --client-address-header is believed"
    )
    client_address_header: str = option(
        "x-forwarded-for", _metadata_key, "metadata key carrying the client address behind a trusted proxy"
    )

    # Bearer verification
    issuer: str | None = option(None, _str, "expected `iss` of access tokens (default: from pool and region)")
    jwks_url: str | None = option(None, _str, "JWKS URL (default: the issuer's /.well-known/jwks.json)")
    allowed_client_ids: tuple[str, ...] = option((), _csv, "comma-separated app client ids accepted in tokens")
    jwt_leeway_seconds: float = option(30.0, _non_negative_float, "clock skew allowed on exp and iat")
    max_token_bytes: int = option(8192, _positive_int, "longest bearer token accepted")
    jwks_refetch_interval_seconds: float = option(
        10.0, _positive_float, "an unknown key id refetches the JWKS at most this often"
    )
    jwks_max_stale_seconds: float = option(
        86400.0, _positive_float, "use the last good JWKS this long when fetches fail"
    )
    jwks_timeout_seconds: float = option(3.0, _positive_float, "timeout of one JWKS fetch")
    revocation_poll_seconds: float = option(2.0, _positive_float, "how often each replica polls new sign-outs")
    token_cache_size: int = option(10000, _positive_int, "verified tokens remembered until they expire")

    # Chat: the booking agent's stream
    agent_model: str = option("scripted", _choice("scripted", "bedrock"), "the agent's model: scripted or bedrock")
    chat_session_ttl_seconds: float = option(
        86400.0, _positive_float, "a chat session and its history are kept this long after their last turn"
    )
    chat_max_rounds: int = option(8, _positive_int, "model rounds (a model call and its tools) in one turn")
    chat_turn_timeout_seconds: float = option(
        60.0, _positive_float, "longest turn; then it ends with stop reason TIMEOUT"
    )
    chat_history_turns: int = option(20, _positive_int, "earlier turns of a session the model reads")
    chat_flush_interval_ms: float = option(
        30.0, _positive_float, "text deltas closer together than this are merged into one message"
    )
    chat_latency_budget_ms: float = option(
        80.0, _positive_float, "under load the flush interval widens, but never beyond this"
    )
    chat_text_messages_per_second: float = option(
        5000.0, _positive_float, "text messages a second all streams together aim at; beyond, the interval widens"
    )
    chat_flush_max_chars: int = option(1024, _positive_int, "buffered reply text of this size is sent at once")
    scripted_delta_delay_ms: float = option(
        0.0, _non_negative_float, "pause between the scripted agent's words (it types like a model)"
    )
    bedrock_model_id: str = option(
        "anthropic.claude-3-5-haiku-20241022-v1:0", _str, "Bedrock model id (or inference profile) for the agent"
    )
    bedrock_region: str | None = option(None, _str, "Bedrock region (default: --aws-region)")
    bedrock_endpoint_url: str | None = option(None, _str, "Bedrock runtime endpoint URL (unset = AWS)")
    bedrock_max_tokens: int = option(1024, _positive_int, "most tokens the model may write in one round")
    bedrock_timeout_seconds: float = option(60.0, _positive_float, "longest wait for the model's next bytes")

    @property
    def transport(self) -> TransportSettings:
        """The transport's settings (transitional: the settings groups replace this)."""
        return TransportSettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(TransportSettings)},
        )

    @property
    def uses_devstack(self) -> bool:
        """True when no Cognito pool is configured: `serve` then runs the embedded local AWS."""
        return self.user_pool_id is None

    @property
    def listen_address(self) -> tuple[str, int]:
        """The parsed listen address."""
        return parse_host_port(self.listen)

    @property
    def effective_issuer(self) -> str:
        """The `iss` access tokens must carry: configured, or the user pool's AWS issuer."""
        if self.issuer:
            return self.issuer
        if self.user_pool_id is None:
            raise ConfigError("GATEWAY_USER_POOL_ID or GATEWAY_ISSUER must be set to verify tokens")
        return f"https://cognito-idp.{self.aws_region}.amazonaws.com/{self.user_pool_id}"

    @property
    def effective_jwks_url(self) -> str:
        """Where the signing keys are: configured, or the issuer's well-known JWKS."""
        return self.jwks_url or f"{self.effective_issuer}/.well-known/jwks.json"

    @property
    def effective_client_ids(self) -> frozenset[str]:
        """App client ids accepted in access tokens: configured, or the sign-in client."""
        if self.allowed_client_ids:
            return frozenset(self.allowed_client_ids)
        return frozenset({self.app_client_id} if self.app_client_id else ())

    @property
    def web_listen_address(self) -> tuple[str, int]:
        """The parsed web face listen address."""
        return parse_host_port(self.web_listen)

    @property
    def devstack_listen_address(self) -> tuple[str, int]:
        """The parsed emulator listen address."""
        return parse_host_port(self.devstack_listen)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated again."""
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Check cross-field rules; raise ConfigError naming the key at fault."""
        host, _ = self.listen_address
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be given together")
        if not is_loopback_host(host) and self.tls_cert is None and not self.insecure:
            raise ConfigError(
                f"GATEWAY_LISTEN={self.listen!r}: a non-loopback address needs TLS (--tls-cert/--tls-key), "
                "or --insecure behind a TLS-terminating proxy"
            )
        if not self.no_web:
            web_host, web_port = self.web_listen_address
            if not is_loopback_host(web_host) and self.tls_cert is None and not self.insecure:
                raise ConfigError(
                    f"GATEWAY_WEB_LISTEN={self.web_listen!r}: a non-loopback address needs TLS (--tls-cert/--tls-key), "
                    "or --insecure behind a TLS-terminating proxy"
                )
            if web_port != 0 and (web_host, web_port) == self.listen_address:
                raise ConfigError(f"GATEWAY_WEB_LISTEN={self.web_listen!r}: the gRPC face already listens there")
        if self.user_pool_id is not None and not self.app_client_id:
            raise ConfigError("GATEWAY_APP_CLIENT_ID must be set with GATEWAY_USER_POOL_ID")
        if self.chat_latency_budget_ms < self.chat_flush_interval_ms:
            raise ConfigError(
                f"GATEWAY_CHAT_LATENCY_BUDGET_MS={self.chat_latency_budget_ms!r}: must be at least "
                f"GATEWAY_CHAT_FLUSH_INTERVAL_MS ({self.chat_flush_interval_ms!r})"
            )
        if self.jwks_url is not None:
            # Keys fetched in cleartext could be swapped on the way; only loopback (the devstack) may use http.
            scheme, _, rest = self.jwks_url.partition("://")
            host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
            if scheme != "https" and not (scheme == "http" and is_loopback_host(host)):
                raise ConfigError(
                    f"GATEWAY_JWKS_URL={self.jwks_url!r}: must be https (http only on a loopback address)"
                )

    @classmethod
    def load(cls, environ: Mapping[str, str], argv: Sequence[str] = ()) -> Settings:
        """Build Settings from environment variables, then flags; raise ConfigError on a bad value."""
        parser = argument_parser(add_help=False)
        namespace, _ = parser.parse_known_args(list(argv))
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            spec: Option = f.metadata["option"]
            key = env_key(f.name)
            flag_value = getattr(namespace, f.name, None)
            raw: str | None
            source: str
            if isinstance(flag_value, list):
                raw, source = ",".join(flag_value), f"--{f.name.replace('_', '-')}"
            elif flag_value is not None:
                raw, source = str(flag_value), f"--{f.name.replace('_', '-')}"
            elif key in environ:
                raw, source = environ[key], key
            else:
                continue
            try:
                values[f.name] = spec.cast(raw)
            except ValueError as exc:
                raise ConfigError(f"{source}={raw!r}: {exc}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def to_environment(self) -> dict[str, str]:
        """GATEWAY_* variables that rebuild these Settings in another process (defaults left out)."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default or value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = str(value)
            env[env_key(f.name)] = text
        return env

    @classmethod
    def from_environment(cls, argv: Sequence[str] = ()) -> Settings:
        """Settings from this process's environment and `argv` flags."""
        return cls.load(os.environ, argv)


DEVSTACK_WORKER_MARKER = "GATEWAY_INTERNAL_DEVSTACK_WORKER"


def started_by_devstack_supervisor(settings: Settings) -> bool:
    """True in a worker whose supervisor runs the embedded emulator (`--workers` over the devstack).

    The marker is honoured only when the JWKS is fetched from a loopback address, so it cannot make a gateway
    that talks to real Cognito trust the emulator's public signing key.
    """
    if os.environ.get(DEVSTACK_WORKER_MARKER) != "1" or settings.jwks_url is None:
        return False
    scheme, _, rest = settings.jwks_url.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return scheme == "http" and is_loopback_host(host)


def env_key(name: str) -> str:
    """The environment variable of a Settings field: "listen" -> "GATEWAY_LISTEN"."""
    return f"GATEWAY_{name.upper()}"


def argument_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    """A parser with one flag per Settings field (values kept as text; Settings.load casts them)."""
    parser = argparse.ArgumentParser(add_help=add_help)
    for f in dataclasses.fields(Settings):
        spec: Option = f.metadata["option"]
        flag = f"--{f.name.replace('_', '-')}"
        help_text = f"{spec.help} [env {env_key(f.name)}]"
        if spec.flag_is_switch:
            parser.add_argument(flag, dest=f.name, action="store_const", const="true", default=None, help=help_text)
        elif spec.flag_is_repeatable:
            parser.add_argument(flag, dest=f.name, action="append", default=None, metavar="VALUE", help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar="VALUE", help=help_text)
    return parser
