"""Every open ``Llama`` and ``LlamaPool``, so that :func:`shutdown` can close them."""

from __future__ import annotations

import threading
import weakref
from typing import Protocol

from . import _core


class Closeable(Protocol):
    def close(self) -> None: ...


_lock = threading.Lock()
_first: weakref.WeakSet[Closeable] = weakref.WeakSet()  # pools: each stops its scheduler first
_then: weakref.WeakSet[Closeable] = weakref.WeakSet()


def register(instance: Closeable, *, close_first: bool = False) -> None:
    """Adds an open instance; ``close_first`` ones are closed before the others."""
    with _lock:
        (_first if close_first else _then).add(instance)


def unregister(instance: Closeable) -> None:
    """Removes a closed instance (no error if it was not registered)."""
    with _lock:
        _first.discard(instance)
        _then.discard(instance)


def shutdown() -> None:
    """Closes every live ``Llama`` and ``LlamaPool`` and frees llama.cpp's backend. Safe to call twice;
    a closed instance raises ``LlamaError`` on use instead of crashing."""
    with _lock:
        instances = [*_first, *_then]
    for instance in instances:
        instance.close()
    _core.backend_free()
