"""The delta coalescer as a state machine driven by a controllable clock, and the outbox that runs it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain import GuestId, Sub, TokenDelivery, Usage
from gateway.services.chat.coalescer import DeltaCoalescer, FlushPolicy
from gateway.services.chat.events import (
    ChatEventBody,
    StopReason,
    TextDelta,
    TokenDeliveryEvent,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)
from gateway.services.chat.outbox import EndOfTurn, OutboxItem, TurnFailed, TurnOutbox

POLICY = FlushPolicy(interval_seconds=0.030, latency_budget_seconds=0.150, messages_per_second=1000, max_chars=50)
TOKENS = TokenDelivery(
    "id", "access", "refresh", 3600, "Bearer", GuestId("GST-2026-AAAAAA"), "a@example.com", Sub("sub-1")
)


def coalescer(open_streams: int = 1) -> DeltaCoalescer:
    return DeltaCoalescer(POLICY, lambda: POLICY.interval(open_streams))


def texts(bodies: list[ChatEventBody]) -> list[str]:
    return [b.text for b in bodies if isinstance(b, TextDelta)]


def test_the_first_delta_goes_out_at_once() -> None:
    c = coalescer()
    assert c.push(TextDelta("Hello"), now=10.0) == [TextDelta("Hello")]
    assert c.due_at() is None


def test_deltas_within_the_interval_are_held_and_merged_when_it_is_over() -> None:
    c = coalescer()
    c.push(TextDelta("Hel"), now=10.000)
    assert c.push(TextDelta("lo "), now=10.005) == []
    assert c.push(TextDelta("there"), now=10.010) == []
    assert c.due_at() == pytest.approx(10.030)
    assert c.flush_due(10.029) == []
    assert c.flush_due(10.030) == [TextDelta("lo there")]
    assert c.due_at() is None


def test_a_delta_after_a_quiet_interval_goes_out_at_once() -> None:
    c = coalescer()
    c.push(TextDelta("a"), now=10.0)
    assert c.push(TextDelta("b"), now=10.031) == [TextDelta("b")]
    assert c.push(TextDelta("c"), now=10.1) == [TextDelta("c")]


def test_buffered_text_reaching_the_size_limit_goes_out_at_once() -> None:
    c = coalescer()
    c.push(TextDelta("start"), now=10.0)
    assert c.push(TextDelta("x" * 30), now=10.001) == []
    assert c.push(TextDelta("y" * 30), now=10.002) == [TextDelta("x" * 30 + "y" * 30)]
    assert c.due_at() is None


@pytest.mark.parametrize(
    "event",
    [
        ToolCallStarted("c1", "check_availability"),
        ToolCallFinished("c1", "check_availability", True, "free"),
        TokenDeliveryEvent(TOKENS),
        TurnComplete(StopReason.END_TURN, Usage(1, 2)),
    ],
)
def test_other_events_flush_the_text_before_them_and_go_out_at_once(event: ChatEventBody) -> None:
    c = coalescer()
    c.push(TextDelta("Let me "), now=10.0)
    c.push(TextDelta("check"), now=10.001)
    c.push(TextDelta("."), now=10.002)
    assert c.push(event, now=10.003) == [TextDelta("check."), event]
    assert c.due_at() is None


def test_tool_events_are_never_merged_or_split() -> None:
    c = coalescer()
    started = ToolCallStarted("c1", "create_reservation")
    finished = ToolCallFinished("c1", "create_reservation", True, "booked")
    assert c.push(started, now=10.0) == [started]
    assert c.push(finished, now=10.0001) == [finished]


def test_the_interval_widens_with_open_streams_up_to_the_latency_budget() -> None:
    assert POLICY.interval(1) == pytest.approx(0.030)
    assert POLICY.interval(30) == pytest.approx(0.030)
    assert POLICY.interval(100) == pytest.approx(0.100)
    assert POLICY.interval(1000) == pytest.approx(0.150)
    assert POLICY.interval(100_000) == pytest.approx(0.150)


def test_under_load_the_same_deltas_make_fewer_messages() -> None:
    def messages(open_streams: int) -> int:
        c = coalescer(open_streams)
        sent = 0
        for step in range(100):  # a delta every 10 ms for a second
            now = 10.0 + step * 0.010
            sent += len(c.flush_due(now)) + len(c.push(TextDelta("w "), now))
        return sent + len(c.drain(11.0))

    light, heavy = messages(1), messages(1000)
    assert heavy < light < 100


@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.2), st.text(min_size=1, max_size=20) | st.just("<tool>")),
        max_size=60,
    )
)
def test_whatever_the_timing_the_text_and_the_order_of_events_are_kept(steps: list[tuple[float, str]]) -> None:
    c = coalescer()
    now = 100.0
    sent: list[ChatEventBody] = []
    pushed: list[ChatEventBody] = []
    for gap, item in steps:
        now += gap
        sent += c.flush_due(now)
        body: ChatEventBody = ToolCallStarted(f"c{len(pushed)}", "x") if item == "<tool>" else TextDelta(item)
        pushed.append(body)
        sent += c.push(body, now)
    sent += c.drain(now)

    def tools(bodies: list[ChatEventBody]) -> list[ChatEventBody]:
        return [b for b in bodies if not isinstance(b, TextDelta)]

    assert tools(sent) == tools(pushed)
    assert "".join(texts(sent)) == "".join(texts(pushed))
    # Text between two tool events stays between them.
    marker = "\x00"
    assert marker.join(
        "".join(b.text for b in chunk if isinstance(b, TextDelta)) for chunk in _split(sent)
    ) == marker.join("".join(b.text for b in chunk if isinstance(b, TextDelta)) for chunk in _split(pushed))


def _split(bodies: list[ChatEventBody]) -> list[list[ChatEventBody]]:
    chunks: list[list[ChatEventBody]] = [[]]
    for body in bodies:
        if isinstance(body, TextDelta):
            chunks[-1].append(body)
        else:
            chunks.append([])
    return chunks


def outbox(interval: float) -> TurnOutbox:
    return TurnOutbox(DeltaCoalescer(POLICY, lambda: interval), asyncio.get_running_loop().time)


async def test_the_outbox_sends_everything_in_order_and_flushes_at_the_end() -> None:
    box = outbox(10.0)
    items: list[OutboxItem] = [
        TextDelta("a"),
        TextDelta("b"),
        ToolCallStarted("c1", "list_properties"),
        TextDelta("c"),
        TextDelta("d"),
        TurnComplete(StopReason.END_TURN, Usage()),
        EndOfTurn(),
    ]
    for item in items:
        box.put(item)
    out = [body async for body in box.events()]
    # Text that arrived together goes out together; the tool event flushes nothing held before it.
    assert out == [
        TextDelta("ab"),
        ToolCallStarted("c1", "list_properties"),
        TextDelta("cd"),
        TurnComplete(StopReason.END_TURN, Usage()),
    ]


async def test_the_outbox_sends_held_text_when_its_time_comes_without_waiting_for_more() -> None:
    box = outbox(0.05)
    bodies = box.events()
    box.put(TextDelta("a"))
    assert await anext(bodies) == TextDelta("a")
    box.put(TextDelta("b"))
    box.put(TextDelta("c"))
    # Nothing more arrives, yet the held "bc" goes out once the interval is over, and not before.
    sent = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(anext(bodies), timeout=10) == TextDelta("bc")
    assert asyncio.get_running_loop().time() - sent >= 0.04
    await bodies.aclose()


async def test_held_text_does_not_wake_the_consumer_but_other_events_and_a_full_buffer_do() -> None:
    box = outbox(30.0)
    bodies = box.events()
    box.put(TextDelta("first"))
    assert await anext(bodies) == TextDelta("first")
    pending = asyncio.ensure_future(anext(bodies))
    for _ in range(5):
        box.put(TextDelta("x"))
        await asyncio.sleep(0)
    # Five tokens inside the (long) interval: held, the consumer still asleep.
    assert not pending.done()
    box.put(TextDelta("y" * POLICY.max_chars))
    # The buffer reached max_chars: out at once, as one message.
    assert await asyncio.wait_for(pending, timeout=10) == TextDelta("xxxxx" + "y" * POLICY.max_chars)
    pending = asyncio.ensure_future(anext(bodies))
    box.put(TextDelta("z"))
    await asyncio.sleep(0)
    assert not pending.done()
    box.put(ToolCallStarted("c1", "check_availability"))
    assert await asyncio.wait_for(pending, timeout=10) == TextDelta("z")
    assert await asyncio.wait_for(anext(bodies), timeout=10) == ToolCallStarted("c1", "check_availability")
    await bodies.aclose()


async def test_the_outbox_raises_the_producers_failure() -> None:
    box = outbox(0.03)
    box.put(TextDelta("a"))
    box.put(TurnFailed(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        async for _ in box.events():
            pass


def test_token_delivery_never_shows_its_tokens_in_a_repr() -> None:
    rendered = repr(TokenDeliveryEvent(TOKENS)) + repr(TOKENS)
    for secret in ("'id'", "'access'", "'refresh'"):
        assert secret not in rendered
