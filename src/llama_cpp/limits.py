"""Limits on what a chat template may do (the template comes from the model file, that is,
from whoever published it). Parsing and rendering run in llama.cpp's own Jinja engine, which
interprets templates and cannot run Python or shell code; these bounds keep a hostile or
broken template from exhausting the stack, the CPU or memory. Past one, the call raises
``ValidationError`` naming the limit and the place in the template.

    import llama_cpp
    limits = llama_cpp.template_limits()            # TemplateLimits(max_depth=512, ...)
    llama_cpp.set_template_limits(dataclasses.replace(limits, max_seconds=3.0))

The limits are process-wide and apply to every later parse and render.
"""

from __future__ import annotations

import dataclasses
import math

from . import _core
from ._errors import api_errors
from .errors import ValidationError

_API = "set_template_limits"


@dataclasses.dataclass(frozen=True)
class TemplateLimits:
    """Bounds on parsing and rendering one chat template call.

    Attributes:
        max_depth: nesting of blocks and expressions, when parsing and when executing
            (macro recursion counts).
        max_steps: statements and expressions executed by one call (``format_chat``, one
            chat completion's prompt, or loading the template, which renders it a few times
            to learn its capabilities).
        max_bytes: characters in any one string the template builds.
        max_items: items in any one list, and pieces of any one string.
        max_seconds: wall time of one call.
    """

    max_depth: int = 512
    max_steps: int = 2_000_000
    max_bytes: int = 16 << 20
    max_items: int = 100_000
    max_seconds: float = 1.0


def template_limits() -> TemplateLimits:
    """The limits in force."""
    depth, steps, size, items, seconds = _core.template_limits()
    return TemplateLimits(depth, steps, size, items, seconds)


def set_template_limits(limits: TemplateLimits) -> None:
    """Replaces the limits for every later template parse and render in this process."""
    if not isinstance(limits, TemplateLimits):
        raise ValidationError(f"[{_API}] expected a TemplateLimits, got {type(limits).__name__}")
    for field in ("max_depth", "max_steps", "max_bytes", "max_items"):
        value = getattr(limits, field)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value >= 2**63:
            raise ValidationError(f"[{_API}] {field} must be a positive int, got {value!r}")
    seconds = limits.max_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"[{_API}] max_seconds must be a finite number > 0, got {seconds!r}")
    with api_errors(_API):
        _core.set_template_limits(
            max_depth=limits.max_depth, max_steps=limits.max_steps, max_bytes=limits.max_bytes,
            max_items=limits.max_items, max_seconds=float(seconds),
        )
