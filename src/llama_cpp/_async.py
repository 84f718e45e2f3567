"""Async iteration over the sync streaming primitive, without blocking the event loop
and without polling: a worker thread drives the sync iterator and hands each item to
the loop with ``call_soon_threadsafe``. Leaving the ``async for`` early (or cancelling the
consuming task) closes the sync iterator, which stops decoding within one token."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from . import _core

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
