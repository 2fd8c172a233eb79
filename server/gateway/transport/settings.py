"""The transport's own settings: where both faces listen, TLS, draining and the concurrency limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port)


@dataclass(frozen=True)
class TransportSettings:
    """How the gateway's faces serve (provisional shape; the settings declaration fills it in)."""

    listen: str = "127.0.0.1:50051"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    workers: int = 1
    reuse_port: bool = False
    grace_seconds: float = 10.0
    drain_delay_seconds: float = 0.0
    max_concurrent_rpcs: int = 512
    gc_freeze: bool = True
    web_listen: str = "127.0.0.1:8080"
    no_web: bool = False
    web_allowed_origin: tuple[str, ...] = ()
    web_static_dir: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    client_address_header: str = "x-forwarded-for"

    @property
    def listen_address(self) -> tuple[str, int]:
        """The parsed gRPC listen address."""
        return _host_port(self.listen)

    @property
    def web_listen_address(self) -> tuple[str, int]:
        """The parsed web face listen address."""
        return _host_port(self.web_listen)
