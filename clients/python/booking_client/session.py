"""A signed-in session (the tokens of a `TokenDelivery`) and where it is kept between calls and runs.

Stores:
- `MemorySessionStore`: for the life of the process.
- `FileSessionStore`: a JSON file readable by you alone (mode 0600), by default
  `$XDG_CONFIG_HOME/booking-gateway/session.json` (or `~/.config/booking-gateway/session.json`). A file that is
  corrupt, not yours, a symbolic link, or readable or writable by group or others is refused with
  `SessionFileError`; it is never used silently. See docs/clients.md for the format.

Tokens never appear in a `Session`'s repr, and this module logs nothing about them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import errno
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from booking.v1 import auth_pb2
from booking_client._errors import SessionFileError

FILE_FORMAT = "booking-gateway-session"
FILE_VERSION = 1
SESSION_FILE_ENV = "BOOKING_SESSION_FILE"
_TEXT_FIELDS = ("access_token", "id_token", "refresh_token", "guest_id", "email", "sub")


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.UTC)


def token_expiry(token: str) -> datetime.datetime | None:
    """The `exp` claim of a JWT, read without verifying it (the client's own access token: the gateway verifies
    it), or None when the token has no readable `exp`."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8 or bad JSON
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        return datetime.datetime.fromtimestamp(exp, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _expires_at(access_token: str, expires_in: int, now: datetime.datetime) -> datetime.datetime:
    """When the access token expires: its `exp` claim, else `now + expires_in`.

    `expires_in` counts from when the tokens were issued, so it is late for tokens delivered again later (a
    TokenDelivery replayed by ResumeChat keeps its original `expires_in`). The claim is used when it falls between
    now and `now + expires_in`; outside that this machine's clock disagrees with the issuer's (or the token
    already expired), and `expires_in` is the safer guess (a token the gateway finds expired is refreshed then).
    """
    counted = now + datetime.timedelta(seconds=expires_in)
    claimed = token_expiry(access_token)
    return claimed if claimed is not None and now < claimed <= counted else counted


@dataclass(frozen=True)
class Session:
    """A signed-in person's tokens and profile. `expires_at` is when the access token stops working."""

    access_token: str = field(repr=False)
    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime.datetime
    guest_id: str
    email: str
    sub: str

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None or self.expires_at.utcoffset() is None:
            raise ValueError("Session.expires_at must be timezone-aware")

    @classmethod
    def from_token_delivery(
        cls, delivery: auth_pb2.TokenDelivery, *, received_at: datetime.datetime | None = None
    ) -> Session:
        """The session a `TokenDelivery` (from VerifyOtp or the Chat stream) starts."""
        now = received_at or utcnow()
        return cls(
            access_token=delivery.access_token,
            id_token=delivery.id_token,
            refresh_token=delivery.refresh_token,
            expires_at=_expires_at(delivery.access_token, delivery.expires_in, now),
            guest_id=delivery.guest_id,
            email=delivery.email,
            sub=delivery.sub,
        )

    def refreshed(
        self, answer: auth_pb2.RefreshSessionResponse, *, received_at: datetime.datetime | None = None
    ) -> Session:
        """This session with the new tokens of a RefreshSession answer (keeping the refresh token unless rotated)."""
        now = received_at or utcnow()
        return replace(
            self,
            access_token=answer.access_token,
            id_token=answer.id_token or self.id_token,
            refresh_token=answer.refresh_token or self.refresh_token,
            expires_at=_expires_at(answer.access_token, answer.expires_in, now),
        )

    def expires_within(self, margin: datetime.timedelta, *, now: datetime.datetime | None = None) -> bool:
        """True when the access token expires within `margin` from now (or already has)."""
        return self.expires_at - (now or utcnow()) <= margin

    def to_json(self) -> dict[str, Any]:
        """The session as the session file stores it."""
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "guest_id": self.guest_id,
            "email": self.email,
            "sub": self.sub,
            "expires_at": self.expires_at.isoformat(),
            "token_type": "Bearer",
            "access_token": self.access_token,
            "id_token": self.id_token,
            "refresh_token": self.refresh_token,
        }

    @classmethod
    def from_json(cls, data: object) -> Session:
        """Read `to_json`'s output back. Raises ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        if data.get("format") != FILE_FORMAT or data.get("version") != FILE_VERSION:
            raise ValueError(f"not a {FILE_FORMAT} file of version {FILE_VERSION}")
        values: dict[str, str] = {}
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if not isinstance(value, str) or (name != "id_token" and not value):
                raise ValueError(f"field {name!r} is missing or not a string")
            values[name] = value
        expires = data.get("expires_at")
        if not isinstance(expires, str):
            raise ValueError("field 'expires_at' is missing or not a string")
        try:
            expires_at = datetime.datetime.fromisoformat(expires)
        except ValueError:
            raise ValueError("field 'expires_at' is not an ISO 8601 time") from None
        if expires_at.tzinfo is None:
            raise ValueError("field 'expires_at' has no UTC offset")
        return cls(expires_at=expires_at, **values)


class SessionStore(Protocol):
    """Where a client keeps its session. Methods are quick and synchronous (a file of a few kilobytes at most)."""

    def load(self) -> Session | None:
        """The stored session, or None. Raises `SessionFileError` (or similar) rather than return a doubtful one."""
        ...

    def save(self, session: Session) -> None:
        """Store `session`, replacing any earlier one."""
        ...

    def clear(self) -> None:
        """Forget the session (harmless when there is none)."""
        ...


class MemorySessionStore:
    """Keeps the session in this process only."""

    def __init__(self, session: Session | None = None) -> None:
        self._session = session

    def load(self) -> Session | None:
        return self._session

    def save(self, session: Session) -> None:
        self._session = session

    def clear(self) -> None:
        self._session = None


def default_session_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$BOOKING_SESSION_FILE`, else `$XDG_CONFIG_HOME/booking-gateway/session.json`, else under `~/.config`."""
    env = os.environ if environ is None else environ
    explicit = env.get(SESSION_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config_home = env.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home and Path(config_home).is_absolute() else Path.home() / ".config"
    return base / "booking-gateway" / "session.json"


class FileSessionStore:
    """Keeps the session in a JSON file that only you can read (mode 0600), replaced atomically on save."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_session_path()

    def load(self) -> Session | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise SessionFileError(
                    f"session file {self.path} is a symbolic link; refusing to use it. "
                    f"Replace it with a regular file or delete it and sign in again."
                ) from None
            raise SessionFileError(f"session file {self.path} cannot be read: {error.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            self._check_trustworthy(info)
            raw = handle.read(1 << 20)
        try:
            return Session.from_json(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as error:
            raise SessionFileError(
                f"session file {self.path} is corrupt ({_short(error)}); refusing to use it. "
                f"Delete it and sign in again."
            ) from None

    def _check_trustworthy(self, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise SessionFileError(f"session file {self.path} is not a regular file; refusing to use it.")
        getuid = getattr(os, "getuid", None)
        if getuid is not None and info.st_uid != getuid():
            raise SessionFileError(
                f"session file {self.path} belongs to another user (uid {info.st_uid}); refusing to use it. "
                f"Delete it and sign in again."
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SessionFileError(
                f"session file {self.path} has permissions {mode:04o}, so other users may read or change "
                f"your tokens; refusing to use it. Run `chmod 600 {self.path}` if you trust its contents, "
                f"or delete it and sign in again."
            )

    def save(self, session: Session) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = (json.dumps(session.to_json(), indent=2) + "\n").encode("utf-8")
        # mkstemp creates the file with mode 0600 (O_EXCL), so the tokens are never readable by others,
        # not even for a moment; os.replace then swaps it in atomically.
        fd, temporary = tempfile.mkstemp(prefix=".session-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]
