"""Waiting, bounded, for state that announces no change of its own (another process, a replica, a counter)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["eventually"]

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout_seconds: float, interval_seconds: float = ..., what: str = ...
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T | None], *, timeout_seconds: float, interval_seconds: float = ..., what: str = ...
) -> T: ...


async def eventually(
    check: Callable[[], T | Awaitable[T | None] | None],
    *,
    timeout_seconds: float,
    interval_seconds: float = 0.05,
    what: str = "",
) -> T:
    """Call `check` (plain or async) until it returns something truthy, and return that.

    Only for state nothing signals: where there is a future, an event, a log line or a stream to await, await
    that instead. Raises TimeoutError (naming `what`) when `check` has not held within `timeout_seconds`; an
    exception from `check` propagates at once.
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            while True:
                outcome = check()
                value: T | None = await outcome if inspect.isawaitable(outcome) else outcome
                if value:
                    return value
                await asyncio.sleep(interval_seconds)  # sleep-ok: the one poll for state that sends no signal
    except TimeoutError:
        raise TimeoutError(f"not {what or 'true'} within {timeout_seconds} s") from None
