"""TransportSettings: where and how the gateway's two faces listen, take calls and drain.

The transport's own settings group (`Settings.transport`), declared with `gateway.settings_spec.option` like the
others, so that the servers receive it without the composition root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.settings_spec import (
    ConfigError,
    boolean,
    choice,
    existing_dir,
    existing_file,
    host_port,
    is_loopback_host,
    metadata_key,
    networks,
    non_negative_float,
    option,
    origins,
    parse_host_port,
    positive_int,
)

__all__ = ["TransportSettings"]


@dataclass(frozen=True)
class TransportSettings:
    """Listen addresses, TLS, workers, concurrency, drain, the web face and the trusted proxies.

    Built validated: a non-loopback address without TLS (and without `insecure`), half a TLS pair, or both faces
    on one address raise ConfigError.
    """

    listen: str = option("127.0.0.1:50051", host_port, "HOST:PORT of the gRPC face (port 0 = pick one)")
    tls_cert: Path | None = option(None, existing_file, "PEM certificate chain; serves TLS with --tls-key")
    tls_key: Path | None = option(None, existing_file, "PEM private key for --tls-cert")
    insecure: bool = option(
        False, boolean, "allow a non-loopback listen address without TLS (behind a TLS-terminating proxy)", switch=True
    )
    workers: int = option(
        1, positive_int, "worker processes sharing the listen port (SO_REUSEPORT: connections are spread, not calls)"
    )
    reuse_port: bool = option(False, boolean, "bind with SO_REUSEPORT (set for workers by --workers)", switch=True)
    grace_seconds: float = option(10.0, non_negative_float, "how long open calls may finish after SIGTERM")
    drain_delay_seconds: float = option(
        0.0, non_negative_float, "after SIGTERM, report NOT_SERVING this long before refusing new calls"
    )
    max_concurrent_rpcs: int = option(
        512, positive_int, "calls in flight before new ones get RESOURCE_EXHAUSTED (OVERLOADED) at once"
    )
    gc_freeze: bool = option(
        True,
        boolean,
        "once started, exempt what start-up loaded (AWS service models, modules) from garbage collection, "
        "so full collections do not pause every stream",
    )
    event_loop: str = option(
        "uvloop",
        choice("uvloop", "asyncio"),
        "the event loop the gateway runs on: uvloop's (faster per call: docs/performance.md) or asyncio's own",
    )
    web_listen: str = option(
        "127.0.0.1:8080", host_port, "HOST:PORT of the web face: browser chat, Connect and gRPC-Web (port 0 = pick one)"
    )
    no_web: bool = option(False, boolean, "do not serve the web face", switch=True)
    web_allowed_origin: tuple[str, ...] = option(
        (), origins, "another origin whose pages may call the web face (repeatable, or a comma list)", repeat=True
    )
    web_static_dir: Path | None = option(
        None, existing_dir, "the built browser chat to serve (default: clients/web/dist of this checkout)"
    )
    trusted_proxies: tuple[str, ...] = option(
        (), networks, "comma-separated proxy addresses/CIDRs whose --client-address-header is believed"
    )
    client_address_header: str = option(
        "x-forwarded-for", metadata_key, "metadata key carrying the client address behind a trusted proxy"
    )

    def __post_init__(self) -> None:
        self.validate()

    @property
    def listen_address(self) -> tuple[str, int]:
        """The parsed gRPC face address."""
        return parse_host_port(self.listen)

    @property
    def web_listen_address(self) -> tuple[str, int]:
        """The parsed web face address."""
        return parse_host_port(self.web_listen)

    def validate(self) -> None:
        """Check the rules between fields; raise ConfigError naming the key at fault."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be given together")
        host, _ = self.listen_address
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
