"""Process-wide control of llama.cpp's log output (it has one log sink per process)."""

from __future__ import annotations

import logging

from . import _core

_DEFAULT_LEVEL = 3  # llama.cpp errors only
_LEVELS = {logging.DEBUG: 0, logging.INFO: 1, logging.WARNING: 2, logging.ERROR: 3, logging.CRITICAL: 4}


def set_log_level(level: int) -> None:
    """Sets the lowest llama.cpp log level written to stderr, as a ``logging`` level
    (``logging.DEBUG`` .. ``logging.CRITICAL``; CRITICAL silences llama.cpp).

    The level is global: it applies to every model and context in the process.
    """
    if level not in _LEVELS:
        from .errors import ValidationError

        raise ValidationError(f"[set_log_level] level must be one of logging.DEBUG..CRITICAL, got {level!r}")
    _core.set_log_level(_LEVELS[level])


def disable_logging() -> None:
    """Silences llama.cpp entirely (errors still reach exception messages)."""
    _core.set_log_level(4)


def reset_logging() -> None:
    """Back to the default: llama.cpp errors are written to stderr, nothing else."""
    _core.set_log_level(_DEFAULT_LEVEL)


def print_system_info() -> None:
    """Prints llama.cpp's version and CPU features, whether this build has CUDA (and why
    not, when it has none), the ggml backends and devices llama.cpp found (with memory for
    GPUs) and whether layers can be offloaded to a GPU."""
    print(_core.system_info())
