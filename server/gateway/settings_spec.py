"""How a setting is declared once: its flat key (flag and GATEWAY_* variable), cast, default and help; a leaf module.

Every settings group (`gateway.config`, `gateway.transport.settings`) declares its fields with `option()`. From
that one declaration come the `--flag`, the `GATEWAY_*` variable, the validation of text (one line naming the key
and the bad value) and the table in docs/configuration.md. This module imports nothing of ours, so the transport
can declare its settings without importing the composition root.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ConfigError",
    "DeclaredOption",
    "Option",
    "as_text",
    "boolean",
    "choice",
    "comma_list",
    "env_key",
    "existing_dir",
    "existing_file",
    "flag",
    "host_port",
    "int_between",
    "is_loopback_host",
    "metadata_key",
    "networks",
    "non_negative_float",
    "option",
    "options_of",
    "origins",
    "parse_host_port",
    "positive_float",
    "positive_int",
    "text",
]


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


# Casts: text (a flag or a variable) to a value; a ValueError's message becomes the end of the one-line error.


def positive_float(text: str) -> float:
    """A number greater than 0."""
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def non_negative_float(text: str) -> float:
    """A number, 0 or more."""
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def positive_int(text: str) -> int:
    """A whole number, 1 or more."""
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A cast to a whole number in low..high."""

    def cast(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}")
        return value

    return cast


def boolean(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (empty is false)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def choice(*options: str) -> Callable[[str], str]:
    """A cast that accepts exactly one of `options`."""

    def cast(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text

    return cast


def host_port(text: str) -> str:
    """A "HOST:PORT" address, kept as text (parse it with `parse_host_port`)."""
    parse_host_port(text)
    return text


def existing_file(text: str) -> Path:
    """The path of a file that exists."""
    path = Path(text)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def existing_dir(text: str) -> Path:
    """The path of a directory that exists."""
    path = Path(text)
    if not path.is_dir():
        raise ValueError("no such directory")
    return path


def time_zone(text: str) -> str:
    """An IANA time zone name the system knows ("Europe/Berlin", "UTC")."""
    name = text.strip()
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ConfigError(f"{text!r} is not a time zone; use an IANA name like Europe/Berlin or UTC") from None
    return name


def comma_list(text: str) -> tuple[str, ...]:
    """Comma-separated items, trimmed, empty ones dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def text(value: str) -> str:
    """Any text, as given."""
    return value


def origins(text: str) -> tuple[str, ...]:
    """Comma-separated web origins (scheme://host[:port]), normalised as browsers send them."""
    # Browsers send the origin lower-cased and without a trailing slash.
    found = tuple(origin.lower().rstrip("/") for origin in comma_list(text))
    for origin in found:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(f"{origin!r} is not an origin like https://chat.example.com (scheme://host[:port])")
    return found


def networks(text: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks."""
    found = comma_list(text)
    for network in found:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not an IP address or CIDR network") from None
    return found


def metadata_key(text: str) -> str:
    """A gRPC metadata key (ASCII, not binary), lower-cased."""
    key = text.strip().lower()
    if not key or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in key) or key.endswith("-bin"):
        raise ValueError("expected a gRPC metadata key like x-forwarded-for")
    return key


# Declaration ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """How one setting is read: its flat key, cast and help text.

    The key names the flag (`--chat-max-rounds`) and the variable (`GATEWAY_CHAT_MAX_ROUNDS`); it is the field's
    name unless the group's field drops a prefix the group already says (`chat.max_rounds`). A switch is a flag
    without a value; a repeatable flag may be given several times, its values joined with commas before the cast.
    """

    key: str
    cast: Callable[[str], Any]
    help: str
    switch: bool = False
    repeat: bool = False


def option(
    default: Any,
    cast: Callable[[str], Any],
    help: str,
    *,
    key: str | None = None,
    switch: bool = False,
    repeat: bool = False,
) -> Any:
    """Declare a settings field with how to parse it from text (`key`: the flat name, if not the field's)."""
    return field(default=default, metadata={"option": (key, cast, help, switch, repeat)})


@dataclass(frozen=True)
class DeclaredOption:
    """One option as declared on a group: the field it fills, its default and how it is read."""

    field_name: str
    default: Any
    spec: Option


def options_of(group: type[Any]) -> Iterator[DeclaredOption]:
    """The options a settings group declares, in declaration order."""
    for f in dataclasses.fields(group):
        key, cast, help_text, switch, repeat = f.metadata["option"]
        yield DeclaredOption(f.name, f.default, Option(key or f.name, cast, help_text, switch, repeat))


def env_key(key: str) -> str:
    """The environment variable of an option: "listen" -> "GATEWAY_LISTEN"."""
    return f"GATEWAY_{key.upper()}"


def flag(key: str) -> str:
    """The command-line flag of an option: "grace_seconds" -> "--grace-seconds"."""
    return f"--{key.replace('_', '-')}"


def as_text(value: Any) -> str:
    """A value written back as the text its cast reads (booleans as true/false, tuples as a comma list)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)
