"""The one streaming primitive: C++ decodes on a worker thread and puts each released
piece of text into a C++ queue (no GIL is taken per token); the caller's iteration takes
pieces from it, waiting with the GIL released.

Closing the iterator (``break``, ``close()``, garbage collection) sets the queue's cancel
flag, which C++ checks after every token, so decoding stops before the next one; the worker
is then joined, so the instance is ready for the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import _core


class GenerationStream:
    """Iterator of text pieces from a generation running on a background thread.
    ``result`` holds the final GenerationResult once the iterator is exhausted."""

    def __init__(self, run: Callable[[Any], Any]) -> None:
        self._run = run
        self._pieces = _core.PieceQueue()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._error: BaseException | None = None
        self.result: Any = None

    @property
    def running(self) -> bool:
        """True while the background thread is still generating."""
        return self._thread is not None and self._thread.is_alive()

    def _work(self) -> None:
        try:
            self.result = self._run(self._pieces)
        except BaseException as exc:  # handed to the consumer thread
            self._error = exc
        finally:
            self._pieces.close()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="llama-cpp-stream", daemon=True)
            self._thread.start()
        piece = self._pieces.get()
        if piece is not None:
            return piece
        self._finished = True
        self._thread.join()
        if self._error is not None:
            raise self._error
        raise StopIteration

    def close(self) -> None:
        """Stops decoding (within one token) and waits for the worker to finish."""
        if self._finished:
            return
        self._pieces.cancel()
        self._finished = True
        # The worker itself can drop the last reference (its target is a bound method):
        # then there is nothing to wait for.
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
