"""Server-sent events and client disconnects.

A stream is an async generator of SSE ``data:`` payloads ending with ``[DONE]``; an error
after the headers went out is sent as ``data: {"error": ...}`` and ends the stream (the OpenAI
SDK raises it). When the client goes away, sse-starlette cancels the generator: its ``finally``
closes the pool's stream, which frees the request's sequence at the pool's next step. A
request that does not stream races its work against the client's disconnect
(:func:`until_disconnect`), so a client that gives up frees its sequence too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from sse_starlette import EventSourceResponse
from starlette.requests import Request

from .errors import from_exception
from .metrics import Metrics

T = TypeVar("T")


def frame(payload: Any) -> bytes:
    """One SSE event, ``data: <compact JSON>`` and a blank line, encoded: sse-starlette sends
    bytes as they are. JSON escapes every line break inside strings, so the payload is one
    line (SSE splits lines only at CR and LF). orjson writes UTF-8 as is (the json module's
    encoding was a tenth of the event loop's time in a profile of the GPU server under 64
    streams); a float that is not finite (a -inf log-probability) becomes null."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def sse_response(events: AsyncIterator[bytes], ping_s: float) -> EventSourceResponse:
    """``text/event-stream`` of the given frames (:func:`frame`), with keep-alive comments
    every ``ping_s`` seconds while the stream waits (the SDK skips comments)."""
    return EventSourceResponse(events, sep="\n", ping=ping_s, headers={"Cache-Control": "no-cache"})


class StreamStats:
    """Times of one streamed reply, for the metrics: time to first token and the latency
    between pieces. Latencies reach the metrics in batches (every ``FLUSH`` pieces and
    at :meth:`flush`), not one lock per piece."""

    FLUSH = 32

    def __init__(self, metrics: Metrics, model: str, started: float) -> None:
        self.metrics, self.model, self.started = metrics, model, started
        self.last: float | None = None
        self._gaps: list[float] = []

    def piece(self, text: str) -> None:
        """Records a piece of generated text arriving now."""
        if not text:
            return
        now = time.monotonic()
        if self.last is None:
            self.metrics.observe("time_to_first_token_seconds", now - self.started, model=self.model)
        else:
            self._gaps.append(now - self.last)
            if len(self._gaps) >= self.FLUSH:
                self.flush()
        self.last = now

    def flush(self) -> None:
        """Hands the latencies not yet recorded to the metrics."""
        if self._gaps:
            self.metrics.observe_many("inter_token_latency_seconds", self._gaps, model=self.model)
            self._gaps = []


async def events(
    chunks: AsyncIterator[dict[str, Any]],
    on_chunk: Callable[[dict[str, Any]], None],
    finish: Callable[[str], list[dict[str, Any]]],
    close: Callable[[], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The SSE frames of a stream of chunks: each chunk (``on_chunk`` sees it first), then
    the chunks ``finish("ok")`` adds (a usage chunk), then ``[DONE]``. ``finish`` is called
    with ``"error"`` or ``"cancelled"`` when the stream ends otherwise; ``close`` always runs."""
    outcome = "cancelled"
    try:
        try:
            async for chunk in chunks:
                on_chunk(chunk)
                yield frame(chunk)
        except Exception as exc:  # the headers went out: the error travels in the stream
            outcome = "error"
            yield frame(from_exception(exc).body())
            return
        outcome = "ok"
        for extra in finish("ok"):
            yield frame(extra)
        yield DONE
    finally:
        if outcome != "ok":
            finish(outcome)
        await close()  # last: under cancellation, an await here may be interrupted


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Runs ``work`` unless the client disconnects first, in which case ``work`` is cancelled
    (a pool request then frees its sequence). Returns (finished, result)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if not task.done() or task.cancelled():
        try:
            await task
        except asyncio.CancelledError:
            pass
        return False, None
    return True, task.result()
