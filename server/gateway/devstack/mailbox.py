"""The dev mailbox: where the local emulator "emails" one-time codes.

A person signing in locally reads the code on the `gateway serve` console; tests read it through
`latest_code` / `wait_for_code`. Codes are announced through a callback (stdout for `serve`), never through
`logging`: the structured logs must stay free of codes in every configuration.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.devstack.email_otp import OtpDelivery
from gateway.redact import mask_email


@dataclass(frozen=True)
class MailboxMessage:
    """One code as it arrived."""

    email: str
    code: str = field(repr=False)
    destination: str
    sent_at: float


class DevMailbox:
    """Collects the emulator's codes per address (case-insensitive). Safe to use from any thread.

    `announce`, when given, receives one line per code for a person to read, like
    "[dev mailbox] code for j***@example.com: 12345678".
    """

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self._announce = announce
        self._lock = threading.Lock()
        self._messages: dict[str, list[MailboxMessage]] = {}

    def deliver(self, delivery: OtpDelivery) -> None:
        """Receive a code from the emulator (called on the emulator's thread)."""
        message = MailboxMessage(delivery.email, delivery.code, delivery.destination, delivery.sent_at)
        with self._lock:
            self._messages.setdefault(delivery.email.lower(), []).append(message)
        if self._announce is not None:
            self._announce(f"[dev mailbox] code for {mask_email(delivery.email)}: {delivery.code}")

    def messages(self, email: str) -> list[MailboxMessage]:
        """Every code sent to `email`, oldest first."""
        with self._lock:
            return list(self._messages.get(email.lower(), ()))

    def latest_code(self, email: str) -> str | None:
        """The newest code sent to `email`, or None when none was."""
        received = self.messages(email)
        return received[-1].code if received else None

    async def wait_for_code(self, email: str, *, after: int = 0, wait_seconds: float = 5.0) -> str:
        """The newest code once more than `after` codes have reached `email`; TimeoutError after `wait_seconds`."""
        async with asyncio.timeout(wait_seconds):
            while True:
                received = self.messages(email)
                if len(received) > after:
                    return received[-1].code
                await asyncio.sleep(0.01)
