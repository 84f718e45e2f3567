"""A ``LlamaPool`` request on its way through the scheduler (:class:`Job`) and the async
iterators that stream its pieces (:class:`PoolStream`), chat chunks (:func:`chat_stream`) and
completion chunks (:func:`completion_stream`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from . import _core, _openai
from ._replies import ReplyParser


class Job:
    """One request's journey through the scheduler: its future, its optional stream of
    pieces (delivered to an event loop or a thread-safe queue), and its cancel flag.
    ``wake`` is set by the replica that queues the job: cancelling must wake that replica's
    scheduler, and only the replica knows which one it is."""

    _ids = itertools.count()

    def __init__(self, api: str, request: _core.GenerationRequest, on_piece: Any = None) -> None:
        self.api = f"LlamaPool.{api}"  # named on the request's errors
        self.request = request
        request.stream = on_piece is not None
        self.future: concurrent.futures.Future[_core.GenerationResult] = concurrent.futures.Future()
        self.on_piece = on_piece
        self.logprobs = request.logprobs >= 0  # events then carry tokens: they travel whole
        self.cancelled = threading.Event()
        self.wake: Callable[[], None] | None = None
        self.number = next(self._ids)

    def cancel(self) -> None:
        """Asks the scheduler holding the job to drop it (and free its sequence) at its next round."""
        self.cancelled.set()
        if self.wake is not None:
            self.wake()

    def _deliver(self, item: Any) -> None:
        # The consumer may be gone (its event loop closed after it left a stream early): the
        # request is then cancelled, and the scheduler carries on with the others.
        if self.on_piece is None:
            return
        try:
            self.on_piece(item)
        except Exception:
            self.on_piece = None
            self.cancelled.set()

    def emit(self, event: _core.SlotEvent) -> None:
        """Hands on the text an event releases; with logprobs, the event itself (its tokens too)."""
        if self.logprobs:
            if event.text or len(event.logprobs):
                self._deliver(event)
        elif event.text:
            self._deliver(event.text)

    def finish(self, result: _core.GenerationResult) -> None:
        if not self.future.done():
            self.future.set_result(result)
        self._deliver(None)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        self._deliver(error)


class LoopMailbox:
    """Pieces on their way from the scheduler thread to one event loop. Posting wakes the loop
    once; every piece posted before it runs rides along (one wake-up per scheduler round, not
    one per piece per stream), each into its own queue, in order."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox] = weakref.WeakKeyDictionary()
    _by_loop_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[Any], Any]] = []
        self._scheduled = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LoopMailbox:
        with cls._by_loop_lock:
            mailbox = cls._by_loop.get(loop)
            if mailbox is None:
                mailbox = cls._by_loop[loop] = cls(loop)
            return mailbox

    def post(self, queue: asyncio.Queue[Any], item: Any) -> None:
        """Raises RuntimeError once the loop is closed (the job is then cancelled)."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise RuntimeError("the event loop of this stream is closed")
        with self._lock:
            self._items.append((queue, item))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            with self._lock:
                self._scheduled = False
            raise

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for queue, item in items:
            queue.put_nowait(item)


class PoolStream:
    """The pieces of one pool request as an async iterator. The request is queued on the
    first iteration; leaving early (break, an exception, or ``aclose()``) cancels it, which
    frees its sequence at the scheduler's next step. Once the last piece is out, ``result``
    is the request's ``GenerationResult`` (``n_prompt_tokens``, ``tokens``, ``finish_reason``)."""

    def __init__(self, enqueue: Callable[[Job], Job], api: str, request: _core.GenerationRequest) -> None:
        self._enqueue = enqueue  # the pool's: it picks the replica
        self._api, self._request = api, request
        self._pieces: AsyncGenerator[str, None] | None = None
        self._state = _StreamState()  # what the pieces' generator shares with the stream

    @property
    def result(self) -> Any:
        """The request's ``GenerationResult`` once the last piece is out, else None."""
        return self._state.outcome[0] if self._state.outcome else None

    def __aiter__(self) -> PoolStream:
        return self

    async def __anext__(self) -> str:
        if self._pieces is None:
            self._pieces = _pieces(self._enqueue, self._api, self._request, self._state)
        return await self._pieces.__anext__()

    def take_logprobs(self) -> _core.TokenLogprobs:
        """With logprobs requested: the tokens the pieces yielded since the last call released,
        with their log-probabilities (a piece may then be empty: it only releases tokens)."""
        taken, self._state.logprobs = self._state.logprobs, _core.TokenLogprobs()
        return taken

    async def aclose(self) -> None:
        """Cancels the request if it is still running."""
        if self._pieces is not None:
            await self._pieces.aclose()

class _StreamState:
    """The result and the not yet taken tokens of a PoolStream, shared with its generator."""

    def __init__(self) -> None:
        self.outcome: list[_core.GenerationResult] = []
        self.logprobs = _core.TokenLogprobs()

    def text(self, item: Any) -> Any:
        """An event with tokens (logprobs requested) as its text; its tokens join those to take."""
        if isinstance(item, _core.SlotEvent):
            self.logprobs.extend(item.logprobs)
            return item.text
        return item


async def _pieces(
    enqueue: Callable[[Job], Job], api: str, request: _core.GenerationRequest, state: _StreamState
) -> AsyncGenerator[str, None]:
    # A function, not a PoolStream method: a generator holding its stream would be a reference
    # cycle, and a stream left by ``break`` would then be cancelled only at the next garbage
    # collection instead of as soon as it is dropped (asyncio closes unreferenced generators).
    mailbox = LoopMailbox.of(asyncio.get_running_loop())
    queue: asyncio.Queue[Any] = asyncio.Queue()
    job = enqueue(Job(api, request, lambda item: mailbox.post(queue, item)))
    try:
        held: list[Any] = []  # the end (None or an error) read while joining pieces
        while True:
            item = state.text(held.pop() if held else await queue.get())
            # Pieces that queued up while this consumer was busy leave as one: a server under
            # load then writes one event for them instead of one each.
            while isinstance(item, str) and not queue.empty():
                following = state.text(queue.get_nowait())
                if not isinstance(following, str):
                    held.append(following)
                    break
                item += following
            if item is None:
                state.outcome.append(job.future.result())
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not job.future.done():
            job.cancel()


async def chat_stream(
    pieces: PoolStream, model: str, replies: ReplyParser, piece_texts: _openai.PieceTexts | None
) -> AsyncIterator[dict[str, Any]]:
    chunks = _openai.ChatChunks(model, replies, piece_texts)
    try:
        yield chunks.start()
        async for piece in pieces:
            for chunk in chunks.piece(piece, pieces.take_logprobs()):
                yield chunk
        for chunk in chunks.end(pieces.result):
            yield chunk
    finally:  # closed early: the request is cancelled now, not when the generator is collected
        await pieces.aclose()


async def completion_stream(
    pieces: PoolStream, model: str, echo_prefix: str, piece_texts: _openai.PieceTexts | None
) -> AsyncIterator[dict[str, Any]]:
    chunks = _openai.CompletionChunks(model, echo_prefix, piece_texts)
    try:
        for chunk in chunks.start():
            yield chunk
        async for piece in pieces:
            for chunk in chunks.piece(piece, pieces.take_logprobs()):
                yield chunk
        yield chunks.end(pieces.result)
    finally:
        await pieces.aclose()
