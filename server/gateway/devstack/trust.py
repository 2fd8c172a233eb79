"""How a process that runs the embedded emulator lets the gateways it starts trust the emulator's signing key.

moto signs every emulated pool's tokens with a key whose private half is public, so trusting it must be something
no configuration can ask for: not an environment variable, not a flag, not a file a deployment can mount. The
process that runs the emulator (the `--workers` supervisor, a test session) holds a secret made for this run
(`EmulatorServer` answers proofs of it at `PROOF_PATH`) and hands it to each child down a pipe it creates (`grant`);
only the pipe's number travels in the environment. The child (`confirm`) reads the secret from that pipe and
accepts the hand-off only if the emulator its settings point at proves it knows the same secret, for a fresh nonce.

So a pointer in the environment alone gives nothing: the descriptor must be a pipe (a mounted file or a socket is
refused), its 32 bytes must be the secret of the very emulator the gateway's AWS endpoint and JWKS URL lead to, and
that emulator must be on loopback. Faking it means starting the gateway from a process that runs an emulator
of its own, which is what the devstack is.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from gateway.config import DEVSTACK_TRUST_FD_VARIABLE, Settings, is_loopback_host

log = logging.getLogger(__name__)

PROOF_PATH = "/_devstack/trust-proof"
SECRET_BYTES = 32
_CONTEXT = b"booking-gateway devstack trust v1\x00"
_NONCE_HEX = 64
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Secrets of the emulators running in this process, by base URL: only this process can hand them down.
_secrets: dict[str, bytes] = {}
_lock = threading.Lock()


def _loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname is not None and is_loopback_host(parts.hostname)


def proof(secret: bytes, nonce: bytes) -> str:
    """What an emulator holding `secret` answers to `nonce`."""
    return hmac.new(secret, _CONTEXT + nonce, hashlib.sha256).hexdigest()


def with_trust_proof(app: WsgiApp, secret: bytes) -> WsgiApp:
    """Wrap an emulator's WSGI app so that `GET PROOF_PATH?nonce=<64 hex>` answers the proof for `secret`."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PROOF_PATH:
            return app(environ, start_response)
        nonce = parse_qs(environ.get("QUERY_STRING", "")).get("nonce", [""])[0]
        if len(nonce) != _NONCE_HEX or not all(c in "0123456789abcdef" for c in nonce):
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"nonce: 64 lowercase hex digits\n"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [proof(secret, bytes.fromhex(nonce)).encode()]

    return serve


def new_secret() -> bytes:
    """A secret for one emulator run."""
    return secrets.token_bytes(SECRET_BYTES)


@contextmanager
def registered(endpoint_url: str, secret: bytes) -> Iterator[None]:
    """Make `secret`, which the emulator at `endpoint_url` proves, grantable by this process while the block runs."""
    with _lock:
        _secrets[endpoint_url] = secret
    try:
        yield
    finally:
        with _lock:
            if _secrets.get(endpoint_url) is secret:
                del _secrets[endpoint_url]


@dataclass(frozen=True)
class Grant:
    """What to start one child gateway with: `environment` to add, `pass_fds` to inherit, then `close()`."""

    environment: dict[str, str]
    pass_fds: tuple[int, ...]

    def close(self) -> None:
        """Close this process's copy of the pipe (once the child has started, or did not)."""
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def grant(endpoint_url: str) -> Grant:
    """A pipe holding the secret of the emulator at `endpoint_url`, which must run in this process.

    The pipe's read end is for exactly one child (`pass_fds`); the secret never enters an environment or argv.
    Raises LookupError when no emulator of this process listens there.
    """
    with _lock:
        secret = _secrets.get(endpoint_url)
    if secret is None:
        raise LookupError(f"no emulator of this process runs at {endpoint_url}")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, secret)  # 32 bytes: far below the pipe's buffer, never blocks
    finally:
        os.close(write_end)
    return Grant({DEVSTACK_TRUST_FD_VARIABLE: str(read_end)}, (read_end,))


def _read_secret(fd: int) -> bytes | None:
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        data = b""
        while len(data) <= SECRET_BYTES and (chunk := os.read(fd, SECRET_BYTES + 1 - len(data))):
            data += chunk
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return data if len(data) == SECRET_BYTES else None


async def confirm(settings: Settings, fd: int, *, timeout_seconds: float = 5.0) -> bool:
    """True when `fd` is a pipe carrying the secret of the loopback emulator that `settings` point at.

    Reads and closes `fd`. Any doubt is False (logged as a warning): the gateway then does not trust the
    emulator's key, and emulator-signed tokens are refused.
    """
    secret = _read_secret(fd)
    endpoint = settings.aws.endpoint_url
    jwks_url = settings.auth.jwks_url
    if secret is None or endpoint is None or jwks_url is None:
        log.warning("devstack trust hand-off refused: no secret on the inherited pipe")
        return False
    endpoint = endpoint.rstrip("/")
    if not _loopback_http(endpoint) or not jwks_url.startswith(endpoint + "/"):
        log.warning("devstack trust hand-off refused: the AWS endpoint or the JWKS is not the loopback emulator")
        return False
    nonce = secrets.token_bytes(_NONCE_HEX // 2)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as http,
            http.get(f"{endpoint}{PROOF_PATH}", params={"nonce": nonce.hex()}, allow_redirects=False) as response,
        ):
            answer = (await response.text()).strip() if response.status == 200 else ""
    except (aiohttp.ClientError, TimeoutError):
        answer = ""
    if not hmac.compare_digest(answer.encode(), proof(secret, nonce).encode()):
        log.warning("devstack trust hand-off refused: the emulator does not know the handed secret")
        return False
    log.info("devstack trust handed down: the local emulator's signing key is trusted")
    return True
