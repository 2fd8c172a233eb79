"""The gateway's one wall clock and calendar: now in UTC, and today in the configured time zone.

The reservation rules ("not before today") and the chat's dates ("tomorrow") read today from the same
`Calendar`, built once in `app.py` from `--chat-time-zone`, so the agent never offers a day the service refuses.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["Calendar", "utc_now"]


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Calendar:
    """Today in the gateway's time zone, from an injectable clock (an aware `datetime`)."""

    zone: ZoneInfo
    clock: Callable[[], datetime.datetime] = utc_now

    @classmethod
    def named(cls, zone: str, clock: Callable[[], datetime.datetime] | None = None) -> Calendar:
        """The calendar of an IANA time zone name ("Europe/Berlin")."""
        return cls(ZoneInfo(zone), clock or utc_now)

    @property
    def zone_name(self) -> str:
        return self.zone.key

    def today(self) -> datetime.date:
        """The date it is now in the calendar's time zone."""
        return self.clock().astimezone(self.zone).date()
