"""The one streaming primitive. Iterating a ``GenerationStream`` starts the generation on the
caller's thread: C++ decodes the prompt and the first token there (GIL released), so the
first piece comes with no thread hand-off. The context's own C++ stream thread decodes the rest and puts each released piece into a C++ queue (no Python
and no GIL on that thread); the caller takes pieces from it, waiting with the GIL released.

Closing the iterator (``break``, ``close()``, garbage collection) cancels: C++ checks after
every token, so decoding stops before the next one; ``close()`` then waits until the
context is free, so the instance is ready for the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from . import _core
from ._errors import api_errors


class GenerationStream:
    """Iterator of text pieces from a generation running on a background thread.
    ``result`` holds the final GenerationResult once the iterator is exhausted."""

    def __init__(self, start: Callable[[], _core.Stream], api: str) -> None:
        self._start: Callable[[], _core.Stream] | None = start
        self._api = api  # names the public method on the generation's errors
        self._stream: _core.Stream | None = None
        self._result: _core.GenerationResult | None = None  # converted once, when the generation has ended
        self._finished = False

    @property
    def result(self) -> _core.GenerationResult | None:
        """The GenerationResult, once the generation has ended (else None)."""
        stream = self._stream
        if self._result is None and stream is not None and stream.done:
            try:
                self._result = stream.result()
            except Exception:  # the error was (or will be) raised by the iteration
                return None
        return self._result

    @property
    def running(self) -> bool:
        """True while the background thread is still generating."""
        return self._stream is not None and not self._stream.done

    def take_logprobs(self) -> _core.TokenLogprobs:
        """With logprobs requested: the tokens the pieces returned since the last call released,
        with their log-probabilities (a piece may then be empty: it only releases tokens)."""
        stream = self._stream
        return _core.TokenLogprobs() if stream is None else stream.take_logprobs()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        if self._stream is None:
            start, self._start = self._start, None
            assert start is not None
            try:
                self._stream = start()
            except BaseException:
                self._finished = True
                raise
        piece = self._stream.get()
        if piece is not None:
            return piece
        self._finished = True
        stream, self._stream = self._stream, None  # an ended stream lets go of the context (and model)
        stream.wait()
        try:
            with api_errors(self._api):
                self._result = stream.result()  # raises the generation's error, if any
        finally:
            del stream  # not kept alive by the traceback of the error raised here
        raise StopIteration

    def close(self) -> None:
        """Stops decoding (within one token) and waits until the instance is free."""
        if self._finished:
            return
        self._finished = True
        self._start = None
        stream = self._stream
        if stream is not None:
            stream.cancel()
            stream.wait()
            _ = self.result  # kept: the stream lets go of the context (and model) below
            self._stream = None

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
