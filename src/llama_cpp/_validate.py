"""Small argument checks shared by the public classes; each raises ValidationError
with the API name, the field, the value and the limit."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence
from typing import Any

from .errors import ValidationError

INT32_MAX = 2**31 - 1


def _kind(value: Any) -> str:
    return type(value).__name__


def require_text(api: str, name: str, value: Any, *, allow_bytes: bool = False) -> str | bytes:
    """``value`` as text C++ can take: a str that is valid UTF-8 (no lone surrogates), or
    bytes when ``allow_bytes``."""
    if allow_bytes and isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        kinds = "a str or bytes" if allow_bytes else "a str"
        raise ValidationError(f"[{api}] {name} must be {kinds}, got {_kind(value)}")
    check_utf8(api, name, value)
    return value


def check_utf8(api: str, name: str, text: str) -> str:
    """``text`` unchanged; a lone surrogate (not encodable as UTF-8) raises ValidationError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"[{api}] {name} is not valid Unicode text: lone surrogate {text[exc.start]!r} at index {exc.start}"
        ) from None
    return text


def require_path(api: str, name: str, value: Any) -> str:
    """``value`` (a str or os.PathLike) as a file-system path: no NUL, encodable by the file system."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, str):
        raise ValidationError(f"[{api}] {name} must be a str or os.PathLike, got {_kind(value)}")
    if "\x00" in value:
        raise ValidationError(f"[{api}] {name} contains a NUL character: {value!r}")
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        raise ValidationError(f"[{api}] {name} cannot be encoded for the file system: {value!r}") from None
    return value


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
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError(f"[{api}] {name}={value} is out of range for a float") from None
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


def token_list(api: str, tokens: Any, name: str = "tokens", n_vocab: int | None = None) -> list[int]:
    """``tokens`` as a list of token ids: ints in int32 range, and below ``n_vocab`` when it is
    given (else the vocabulary is C++'s check)."""
    if isinstance(tokens, (str, bytes)) or tokens is None:
        raise ValidationError(f"[{api}] {name} must be a sequence of token ids, got {_kind(tokens)}")
    try:
        ids = list(tokens)
    except TypeError:
        raise ValidationError(f"[{api}] {name} must be a sequence of token ids, got {_kind(tokens)}") from None
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValidationError(f"[{api}] {name}: token ids must be ints, got {t!r}")
        if n_vocab is not None and not 0 <= t < n_vocab:
            raise ValidationError(f"[{api}] {name}: token id {t} is out of range (the vocabulary has {n_vocab} tokens)")
        if not -(2**31) <= t <= INT32_MAX:
            raise ValidationError(f"[{api}] {name}: token id {t} is out of range")
    return ids


def prompt_tokens_or_text(api: str, prompt: Any, n_vocab: int) -> str | list[int]:
    """A generation's ``prompt``: valid text, or a sequence of token ids."""
    if isinstance(prompt, str):
        return check_utf8(api, "prompt", prompt)
    if prompt is None or isinstance(prompt, (bytes, bytearray, dict)):
        raise ValidationError(f"[{api}] prompt must be a str or a sequence of token ids, got {_kind(prompt)}")
    return token_list(api, prompt, "prompt", n_vocab)


def stop_list(api: str, stop: str | Sequence[str] | None) -> list[str]:
    """``stop`` as a list of non-empty strings."""
    if stop is None:
        return []
    if isinstance(stop, (bytes, bytearray, dict)) or not isinstance(stop, (str, Sequence)):
        raise ValidationError(f"[{api}] stop must be a str or a list of str, got {_kind(stop)}")
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str):
            raise ValidationError(f"[{api}] stop must be a str or a list of str, got {s!r}")
        check_utf8(api, "stop", s)
    return [s for s in stops if s]


def read_file(api: str, name: str, path: Any) -> bytes:
    """The bytes of the regular file at ``path`` (a FIFO or a device would block or never
    end: refused before it is opened)."""
    where = require_path(api, name, path)
    try:
        if not stat.S_ISREG(os.stat(where).st_mode):
            raise ValidationError(f"[{api}] {name} '{where}' is not a regular file")
        with open(where, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValidationError(f"[{api}] cannot read {name} '{where}': {exc.strerror or exc}") from None


def write_file(api: str, name: str, path: Any, data: bytes) -> None:
    """Writes ``data`` to the file at ``path``; failures raise ValidationError naming ``name``."""
    where = require_path(api, name, path)
    try:
        with open(where, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise ValidationError(f"[{api}] cannot write {name} '{where}': {exc.strerror or exc}") from None


def text_list(api: str, name: str, texts: Any) -> list[str]:
    """``texts`` (a list or tuple of str, each valid Unicode) as a list."""
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise ValidationError(f"[{api}] {name} must be a str or a list of str, got {_kind(texts)}")
    return [check_utf8(api, name, t) for t in texts]
