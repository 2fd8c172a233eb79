"""The benchmarks' agent model: writes the text a `TurnSpec` asks for, fast or paced, and never calls tools.

It implements the `AgentModel` port and is handed to the real gateway through `open_app(..., model=...)`, so
everything between the model and the wire (the turn's task group, the event queue, the coalescer, the
servicer, the interceptor) is the production code.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from bench.recorder import Recorder
from bench.text import TurnSpec
from gateway.domain import (
    ConversationEntry,
    JsonObject,
    ModelOutput,
    RoundEnd,
    TextChunk,
    ToolSpec,
    TurnFacts,
    Usage,
    UserText,
)


class BenchModel:
    """Implements `AgentModel`: one round of `TurnSpec.parse(the person's message)` tokens."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self._recorder = recorder

    async def run_round(
        self,
        conversation: Sequence[ConversationEntry],
        tools: Sequence[ToolSpec],
        facts: TurnFacts,
        memory: JsonObject,
    ) -> AsyncGenerator[ModelOutput, None]:
        last = conversation[-1] if conversation else None
        spec = TurnSpec.parse(last.text if isinstance(last, UserText) else "")
        record = self._recorder.opened(spec.tag) if self._recorder is not None else None
        written = 0
        try:
            async with aclosing(spec.tokens_iter()) as tokens:
                async for token in tokens:
                    yield TextChunk(token)
                    written += 1
            yield RoundEnd(wants_tools=False, usage=Usage(input_tokens=1, output_tokens=written))
        finally:
            if record is not None:
                record.model_closed()
