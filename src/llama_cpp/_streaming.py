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


class _Outcome:
    """What the worker leaves behind. The worker holds this, the queue and the run function,
    never the stream itself, so dropping the stream (``break``) really closes it."""

    __slots__ = ("result", "error")

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None


def _work(run: Callable[[Any], Any], pieces: Any, outcome: _Outcome) -> None:
    try:
        outcome.result = run(pieces)
    except BaseException as exc:  # handed to the consumer thread
        outcome.error = exc
    finally:
        pieces.close()


class GenerationStream:
    """Iterator of text pieces from a generation running on a background thread.
    ``result`` holds the final GenerationResult once the iterator is exhausted."""

    def __init__(self, run: Callable[[Any], Any]) -> None:
        self._run = run
        self._pieces = _core.PieceQueue()
        self._outcome = _Outcome()
        self._thread: threading.Thread | None = None
        self._finished = False

    @property
    def result(self) -> Any:
        """The GenerationResult, once the generation has ended (else None)."""
        return self._outcome.result

    @property
    def running(self) -> bool:
        """True while the background thread is still generating."""
        return self._thread is not None and self._thread.is_alive()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=_work, args=(self._run, self._pieces, self._outcome),
                                            name="llama-cpp-stream", daemon=True)
            self._thread.start()
        piece = self._pieces.get()
        if piece is not None:
            return piece
        self._finished = True
        self._thread.join()
        if self._outcome.error is not None:
            raise self._outcome.error
        raise StopIteration

    def close(self) -> None:
        """Stops decoding (within one token) and waits for the worker to finish."""
        if self._finished:
            return
        self._pieces.cancel()
        self._finished = True
        # The cyclic garbage collector may run __del__ on any thread, the worker's included:
        # a thread cannot wait for itself (it sees the cancel flag at its next token).
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
