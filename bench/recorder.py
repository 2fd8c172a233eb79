"""Inside a benchmark server: when each tagged turn's model stream closed and when the turn's tasks were gone.

Times are CLOCK_MONOTONIC (`time.monotonic`), which every process on the machine shares, so the orchestrator can
subtract the client's cancel time from them. The tasks of a turn are the tasks that exist when its model
stream opens and did not exist when the server became idle (`mark_idle`): the RPC's handler task and, in the
gateway, the turn's producer task. Each one's end is taken from a done callback, not by polling. grpc.aio's
accept task (waiting for the server's next call, whoever makes it) belongs to no turn and is left out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

# grpc.aio's server keeps one task waiting for the next incoming call; it ends when another call arrives.
_GRPC_ACCEPT_TASK = "AioServer._request_registered_call"


def _belongs_to_no_turn(task: asyncio.Task[Any]) -> bool:
    return getattr(task.get_coro(), "__qualname__", "") == _GRPC_ACCEPT_TASK


@dataclass
class TurnRecord:
    """One tagged turn as the server saw it."""

    tag: str
    opened_at: float
    model_task_done_at: float | None = None
    model_closed_at: float | None = None
    tasks: int = 0
    tasks_done: list[float] = field(default_factory=list)

    def model_closed(self) -> None:
        """The model's token stream was closed (finished, or cancelled by the transport)."""
        self.model_closed_at = time.monotonic()

    def as_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "opened_at": self.opened_at,
            "model_closed_at": self.model_closed_at,
            "model_task_done_at": self.model_task_done_at,
            "tasks": self.tasks,
            "all_tasks_done_at": max(self.tasks_done) if len(self.tasks_done) == self.tasks else None,
        }


class Recorder:
    """Collects `TurnRecord`s for the server's report."""

    def __init__(self) -> None:
        self._idle: set[asyncio.Task[Any]] = set()
        self.records: list[TurnRecord] = []

    def mark_idle(self) -> None:
        """Remember the tasks of the idle server (serving loop, pollers): they belong to no turn."""
        self._idle = set(asyncio.all_tasks())

    def opened(self, tag: str) -> TurnRecord | None:
        """A tagged turn's model stream opened (call from inside it); None for an untagged turn."""
        if not tag:
            return None
        record = TurnRecord(tag, time.monotonic())
        current = asyncio.current_task()
        turn_tasks = [
            t for t in asyncio.all_tasks() if t not in self._idle and not t.done() and not _belongs_to_no_turn(t)
        ]
        record.tasks = len(turn_tasks)
        for task in turn_tasks:
            task.add_done_callback(lambda _: record.tasks_done.append(time.monotonic()))
        if current is not None:

            def model_task_done(_: asyncio.Task[Any]) -> None:
                record.model_task_done_at = time.monotonic()

            current.add_done_callback(model_task_done)
        self.records.append(record)
        return record

    def leftover_tasks(self) -> int:
        """Tasks alive now that belong to neither the idle server nor the caller."""
        current = asyncio.current_task()
        return sum(
            1
            for t in asyncio.all_tasks()
            if t not in self._idle and t is not current and not t.done() and not _belongs_to_no_turn(t)
        )

    def report(self) -> dict[str, Any]:
        return {"turns": [r.as_json() for r in self.records], "leftover_tasks": self.leftover_tasks()}
