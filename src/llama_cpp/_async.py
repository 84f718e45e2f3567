"""Async iteration over the sync streaming primitive, without blocking the event loop
and without polling: a worker thread drives the sync iterator and hands each item to
the loop with ``call_soon_threadsafe``. Leaving the ``async for`` early (or cancelling the
consuming task) closes the sync iterator, which stops decoding within one token.

Also ``Llama``'s async twins (:class:`AsyncTwins`), built on its sync methods: validation and
prompt rendering in the caller's frame, decoding on a worker thread."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _core
from ._arguments import ChatArgs, CompletionArgs
from ._streaming import GenerationStream
from ._validate import require_bool
from .grammar import LlamaGrammar
from .sampling import SamplingParams

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T")
_ITEM, _END, _ERROR = 0, 1, 2


async def run_cancellable(run: Callable[[_core.CancelToken], T]) -> T:
    """``run(token)`` on a worker thread. If the awaiting task is cancelled (asyncio.run does
    that on Ctrl-C), the token stops decoding within one token, and the cancellation
    propagates only once ``run`` has returned: the instance is idle by then."""
    token = _core.CancelToken()
    future = asyncio.get_running_loop().run_in_executor(None, run, token)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        token.cancel()
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:  # cancelled again: still wait for the worker
                pass
        if not future.cancelled():
            future.exception()  # its error (the cancellation itself) is not the caller's
        raise


class AsyncStream(Generic[T]):
    """Async iterator over the items of a sync iterator made on a worker thread."""

    def __init__(self, make_iterator: Callable[[], Iterator[T]]) -> None:
        self._make_iterator = make_iterator
        self._queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False

    def _put(self, kind: int, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    def _work(self) -> None:
        iterator = self._make_iterator()
        try:
            for item in iterator:
                if self._stop.is_set():
                    break
                self._put(_ITEM, item)
            self._put(_END, None)
        except BaseException as exc:  # handed to the consumer
            self._put(_ERROR, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="llama-cpp-async-stream", daemon=True)
            self._thread.start()
        try:
            kind, value = await self._queue.get()
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if kind == _ITEM:
            return value  # type: ignore[no-any-return]
        self._done = True
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stops the stream (decoding ends within one token) and waits for the worker."""
        self._done = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, thread.join)


class Job:
    """A validated generation: run here (``run(cancel)``: a ``CancelToken``, or Ctrl-C on the
    main thread, stops it within one token), or streamed (``stream()``)."""

    def __init__(
        self,
        api: str,
        run: Callable[[_core.CancelToken | None], _core.GenerationResult],
        start: Callable[[], _core.Stream],
    ) -> None:
        self.api = api
        self.run = run
        self.start = start

    def stream(self) -> GenerationStream:
        return GenerationStream(self.start, self.api)


# Set by the async twins while they call a sync method in the caller's frame: the method then
# returns a Deferred (its validated job and how to shape the result) instead of generating.
_defer_run: contextvars.ContextVar[bool] = contextvars.ContextVar("llama_cpp_defer_run", default=False)


class Deferred:
    """A sync method's validated job and the function that shapes its result."""

    def __init__(self, job: Job, finish: Callable[[_core.GenerationResult], Any]) -> None:
        self.job = job
        self.finish = finish


def complete(job: Job, finish: Callable[[_core.GenerationResult], Any]) -> Any:
    """Runs ``job`` and shapes its result; under an async twin, hands both back instead."""
    if _defer_run.get():
        return Deferred(job, finish)
    return finish(job.run(None))


class AsyncTwins:
    """``Llama``'s async methods. The work runs on worker threads, so the event loop stays
    responsive; calls on one instance are serialised by the instance's lock, as the sync
    methods are."""

    if TYPE_CHECKING:  # what Llama provides
        def generate_stream(
            self, prompt: str | Sequence[int], max_tokens: int | None = ..., *, sampling: SamplingParams | None = ...,
            stop: str | Sequence[str] | None = ..., reset_kv_cache: bool = ..., grammar: LlamaGrammar | None = ...,
        ) -> GenerationStream: ...
        def _prepare(
            self, api: str, prompt: str | Sequence[int], max_tokens: int | None, sampling: SamplingParams | None,
            stop: str | Sequence[str] | None, reset_kv_cache: bool, grammar: LlamaGrammar | None,
        ) -> Job: ...
        def create_completion(self, prompt: str | Sequence[int], **kwargs: Unpack[CompletionArgs]) -> Any: ...
        def create_chat_completion(self, messages: Sequence[dict[str, Any]], **kwargs: Unpack[ChatArgs]) -> Any: ...
        def create_embedding(self, input: str | Sequence[str], model: str | None = ...) -> dict[str, Any]: ...
        def _require_model(self, api: str) -> Any: ...

    async def generate_async(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        reset_kv_cache: bool = True,
        grammar: LlamaGrammar | None = None,
    ) -> str | AsyncStream[str]:
        """Async :meth:`generate`. With ``stream=True`` it returns an async iterator of
        text pieces (``async for piece in await llm.generate_async(..., stream=True)``);
        leaving the loop early stops decoding within one token."""
        require_bool("Llama.generate_async", "stream", stream)
        if stream:
            pieces = self.generate_stream(prompt, max_tokens, sampling=sampling, stop=stop,
                                          reset_kv_cache=reset_kv_cache, grammar=grammar)
            return AsyncStream(lambda: pieces)
        job = self._prepare("generate_async", prompt, max_tokens, sampling, stop, reset_kv_cache, grammar)
        result = await run_cancellable(job.run)
        return str(result.text)

    async def create_completion_async(self, prompt: str | Sequence[int], **kwargs: Unpack[CompletionArgs]) -> Any:
        """Async :meth:`create_completion` (same arguments); with ``stream=True`` an async
        iterator of chunks."""
        self._require_model("create_completion_async")
        return await _deferred_call(self.create_completion, prompt, kwargs)

    async def create_chat_completion_async(
        self, messages: Sequence[dict[str, Any]], **kwargs: Unpack[ChatArgs]
    ) -> Any:
        """Async :meth:`create_chat_completion` (same arguments); with ``stream=True`` an
        async iterator of ``chat.completion.chunk`` dicts."""
        self._require_model("create_chat_completion_async")
        return await _deferred_call(self.create_chat_completion, messages, kwargs)

    async def create_embedding_async(self, input: str | Sequence[str], model: str | None = None) -> dict[str, Any]:
        """Async :meth:`create_embedding`."""
        self._require_model("create_embedding_async")
        call = functools.partial(self.create_embedding, input, model)
        return await asyncio.get_running_loop().run_in_executor(None, call)


async def _deferred_call(method: Callable[..., Any], first: Any, kwargs: Any) -> Any:
    if kwargs.get("stream"):
        # Validation and prompt rendering happen here; decoding starts on iteration.
        chunks = method(first, **kwargs)
        return AsyncStream(lambda: chunks)
    # Validation and prompt rendering here, in the caller's frame; decoding on a worker
    # thread, stopped within one token if this task is cancelled.
    token = _defer_run.set(True)
    try:
        deferred = method(first, **kwargs)
    finally:
        _defer_run.reset(token)
    return deferred.finish(await run_cancellable(deferred.job.run))
