"""The client's address: the gRPC peer, or, behind a trusted proxy, the address the proxy says it forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _peer_ip(peer: str) -> IpAddress | None:
    """The IP of a grpc peer string: "ipv4:1.2.3.4:5678", "ipv6:[::1]:5678" (None for unix sockets etc.)."""
    kind, _, rest = unquote(peer).partition(":")
    host = rest.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else ""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class ClientAddressResolver:
    """Finds the address rate limits count a call by.

    Only when the direct peer is one of `trusted_proxies` is the `header` metadata believed: its comma-separated
    hops are read from the right (the hop nearest to us first), skipping trusted proxies, and the first other
    address is the client. Anything unparsable falls back to the peer itself.
    """

    def __init__(self, trusted_proxies: Sequence[str] = (), header: str = "x-forwarded-for") -> None:
        self._trusted: tuple[IpNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        self._header = header.lower()

    def _is_trusted(self, address: IpAddress) -> bool:
        return any(address.version == network.version and address in network for network in self._trusted)

    def resolve(self, peer: str, metadata: Sequence[tuple[str, str | bytes]]) -> str:
        """The client address of a call from `peer` carrying `metadata` ("" when unknown)."""
        direct = _peer_ip(peer)
        if direct is None:
            return ""
        if not self._is_trusted(direct):
            return str(direct)
        forwarded = [value for key, value in metadata if key.lower() == self._header and isinstance(value, str)]
        hops = [hop.strip() for value in forwarded for hop in value.split(",")]
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return str(direct)
            if not self._is_trusted(address):
                return str(address)
        return str(direct)
