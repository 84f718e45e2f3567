"""Small argument checks shared by the public classes; each raises ValidationError
with the API name, the field, the value and the limit."""

from __future__ import annotations

import math
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
