"""The one streaming primitive: C++ decodes on a worker thread and hands each released
piece of text to a callback; the callback feeds a queue the caller iterates over.

Sync streaming iterates the queue directly. Closing the iterator (``break``, ``close()``,
garbage collection) sets a flag the callback returns to C++, which stops decoding before
the next token; the worker is then joined, so the instance is ready for the next call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_TEXT, _DONE, _ERROR = 0, 1, 2


class GenerationStream:
    """Iterator of text pieces from a generation running on a background thread.
    ``result`` holds the final GenerationResult once the iterator is exhausted."""

    def __init__(self, run: Callable[[Callable[[str], bool]], Any]) -> None:
        self._run = run
        self._queue: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self.result: Any = None

    @property
    def running(self) -> bool:
        """True while the background thread is still generating."""
        return self._thread is not None and self._thread.is_alive()

    def _on_text(self, piece: str) -> bool:
        if piece:
            self._queue.put((_TEXT, piece))
        return not self._cancel.is_set()

    def _work(self) -> None:
        try:
            self._queue.put((_DONE, self._run(self._on_text)))
        except BaseException as exc:  # handed to the consumer thread
            self._queue.put((_ERROR, exc))

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="llama-cpp-stream", daemon=True)
            self._thread.start()
        kind, value = self._queue.get()
        if kind == _TEXT:
            return str(value)
        self._finished = True
        self._thread.join()
        if kind == _ERROR:
            raise value
        self.result = value
        raise StopIteration

    def close(self) -> None:
        """Stops decoding (within one token) and waits for the worker to finish."""
        if self._finished:
            return
        self._cancel.set()
        self._finished = True
        # The worker itself can drop the last reference (its target is a bound method):
        # then there is nothing to wait for.
        if self._thread is not None and self._thread is not threading.current_thread():
            while True:
                kind, value = self._queue.get()
                if kind == _DONE:
                    self.result = value
                    break
                if kind == _ERROR:
                    break
            self._thread.join()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
