"""Small argument checks shared by the public classes; each raises ValidationError
with the API name, the field, the value and the limit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import ValidationError


def require_int(api: str, name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"[{api}] {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"[{api}] {name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"[{api}] {name}={value} is above the maximum {maximum}")
    return value


def require_float(
    api: str, name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"[{api}] {name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValidationError(f"[{api}] {name} must not be NaN")
    if minimum is not None and number < minimum:
        raise ValidationError(f"[{api}] {name}={number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise ValidationError(f"[{api}] {name}={number} is above the maximum {maximum}")
    return number


def require_bool(api: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"[{api}] {name} must be a bool, got {value!r}")
    return value


def token_list(api: str, tokens: Any) -> list[int]:
    """``tokens`` as a list of token ids (ints in int32 range); the vocabulary is C++'s check."""
    if isinstance(tokens, (str, bytes)):
        raise ValidationError(f"[{api}] expected a sequence of token ids, got {type(tokens).__name__}")
    try:
        ids = list(tokens)
    except TypeError:
        raise ValidationError(f"[{api}] expected a sequence of token ids, got {type(tokens).__name__}") from None
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValidationError(f"[{api}] token ids must be ints, got {t!r}")
        if not -(2**31) <= t < 2**31:
            raise ValidationError(f"[{api}] token id {t} is out of range")
    return ids


def stop_list(api: str, stop: str | Sequence[str] | None) -> list[str]:
    """``stop`` as a list of non-empty strings."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str):
            raise ValidationError(f"[{api}] stop must be a str or a list of str, got {s!r}")
    return [s for s in stops if s]
