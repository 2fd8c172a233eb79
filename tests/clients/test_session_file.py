"""The file session store: created 0600 under the config directory, refused when corrupt or exposed."""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path

import pytest

from booking_client import FileSessionStore, Session, SessionFileError, connect, default_session_path

EXPIRES = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def a_session(**changes: str) -> Session:
    values = {
        "access_token": "header.access-payload.signature",
        "id_token": "header.id-payload.signature",
        "refresh_token": "opaque-refresh-token",
        "guest_id": "GST-2026-7K2Q9D",
        "email": "jane@example.com",
        "sub": "0b4f6c2e-1111-2222-3333-444455556666",
        **changes,
    }
    return Session(expires_at=EXPIRES, **values)


def test_default_path_follows_xdg_config_home_then_home(tmp_path: Path) -> None:
    assert default_session_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "booking-gateway" / "session.json"
    assert default_session_path({}) == Path.home() / ".config" / "booking-gateway" / "session.json"
    # A relative XDG_CONFIG_HOME is invalid per the XDG spec and ignored.
    assert default_session_path({"XDG_CONFIG_HOME": "relative"}).is_relative_to(Path.home())
    explicit = tmp_path / "elsewhere.json"
    assert default_session_path({"BOOKING_SESSION_FILE": str(explicit), "XDG_CONFIG_HOME": "/x"}) == explicit


def test_save_creates_a_private_file_in_a_private_directory_and_load_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "config" / "booking-gateway" / "session.json"
    store = FileSessionStore(path)
    assert store.load() is None
    session = a_session()
    store.save(session)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.load() == session
    data = json.loads(path.read_text())
    assert data["format"] == "booking-gateway-session"
    assert data["version"] == 1
    assert data["expires_at"] == "2030-01-02T03:04:05+00:00"
    # Saving again replaces the file (atomically) and leaves no temporary file behind.
    store.save(a_session(access_token="header.newer.signature"))
    assert store.load() == a_session(access_token="header.newer.signature")
    assert sorted(p.name for p in path.parent.iterdir()) == ["session.json"]
    store.clear()
    assert not path.exists()
    store.clear()  # harmless when already gone


def test_a_session_never_shows_its_tokens_in_its_repr() -> None:
    text = repr(a_session())
    assert "GST-2026-7K2Q9D" in text
    assert "access-payload" not in text
    assert "id-payload" not in text
    assert "opaque-refresh-token" not in text


def test_a_session_needs_an_aware_expiry() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Session(
            access_token="a", id_token="i", refresh_token="r", expires_at=datetime.datetime(2030, 1, 1),
            guest_id="g", email="e", sub="s",
        )  # fmt: skip


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666, 0o620])
def test_a_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    store = FileSessionStore(tmp_path / "session.json")
    store.save(a_session())
    os.chmod(store.path, mode)
    with pytest.raises(SessionFileError) as caught:
        store.load()
    message = str(caught.value)
    assert str(store.path) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message
    assert "opaque-refresh-token" not in message


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"format": "something-else", "version": 1}',
        b'{"format": "booking-gateway-session", "version": 2}',
    ],
    ids=["empty", "not-json", "not-utf8", "not-an-object", "wrong-format", "future-version"],
)
def test_a_corrupt_file_is_refused_with_a_clear_message(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "session.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(SessionFileError, match=r"is corrupt .*Delete it and sign in again"):
        FileSessionStore(path).load()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("access_token", None),
        ("refresh_token", 42),
        ("expires_at", "next tuesday"),
        ("expires_at", "2030-01-01T00:00:00"),
    ],
    ids=["missing-access-token", "refresh-token-not-text", "expiry-not-a-time", "expiry-without-offset"],
)
def test_a_file_with_a_bad_field_is_refused_and_names_the_field_not_the_tokens(
    tmp_path: Path, field: str, value: object
) -> None:
    store = FileSessionStore(tmp_path / "session.json")
    store.save(a_session())
    data = json.loads(store.path.read_text())
    if value is None:
        del data[field]
    else:
        data[field] = value
    store.path.write_text(json.dumps(data))
    with pytest.raises(SessionFileError) as caught:
        store.load()
    assert field in str(caught.value)
    assert "header.access-payload" not in str(caught.value)


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    real = FileSessionStore(tmp_path / "real.json")
    real.save(a_session())
    link = tmp_path / "session.json"
    link.symlink_to(real.path)
    with pytest.raises(SessionFileError, match="symbolic link"):
        FileSessionStore(link).load()


async def test_connect_refuses_an_unsafe_session_file_before_any_call(tmp_path: Path) -> None:
    store = FileSessionStore(tmp_path / "session.json")
    store.save(a_session())
    os.chmod(store.path, 0o644)
    with pytest.raises(SessionFileError, match="0644"):
        connect("127.0.0.1:1", tls=False, session_store=store)
