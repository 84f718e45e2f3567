"""The public API's name on errors from C++. The engine names its own operation
(``prefill: ...``, ``sampling: ...``); the Python layer prepends the method the user called."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._core import LlamaError


def with_api(api: str, error: BaseException) -> BaseException:
    """``error`` as the same class with ``[api] `` prepended; errors that already name an API
    (``[...] ...``: the Python layer's own checks) and non-package errors are returned as they are."""
    if not isinstance(error, LlamaError) or str(error).startswith("["):
        return error
    return type(error)(f"[{api}] {error}")


@contextmanager
def api_errors(api: str) -> Iterator[None]:
    """Re-raises a ``LlamaError`` from ``_core`` with ``[api] `` prepended (see :func:`with_api`)."""
    try:
        yield
    except LlamaError as exc:
        named = with_api(api, exc)
        if named is exc:
            raise
        raise named.with_traceback(exc.__traceback__) from None
