"""LlamaGrammar: constrain generation with a GBNF grammar or a JSON schema."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from . import _core
from ._validate import check_utf8, read_file, require_text
from .errors import ValidationError


class LlamaGrammar:
    """A validated GBNF grammar. Pass it as ``grammar=`` to generation calls.

    Grammars are parsed by llama.cpp's own parser when created; an invalid one raises
    ``ValidationError`` carrying the parser's message. The constraint is applied first in
    the sampler chain, so the other sampling parameters still act on the allowed tokens.
    """

    __slots__ = ("_gbnf", "_root")

    def __init__(self, gbnf: str, root: str = "root") -> None:
        if not isinstance(gbnf, str):
            raise ValidationError(f"[LlamaGrammar] the grammar must be a str, got {type(gbnf).__name__}")
        check_utf8("LlamaGrammar", "the grammar", gbnf)
        require_text("LlamaGrammar", "root", root)
        _core.validate_grammar(gbnf, root, None)
        self._gbnf = gbnf
        self._root = root

    @classmethod
    def from_string(cls, gbnf: str, root: str = "root") -> LlamaGrammar:
        """A grammar from GBNF text."""
        return cls(gbnf, root)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], root: str = "root") -> LlamaGrammar:
        """A grammar from a ``.gbnf`` file."""
        data = read_file("LlamaGrammar.from_file", "path", path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"[LlamaGrammar.from_file] the file is not UTF-8 text: {exc}") from None
        return cls(text, root)

    @classmethod
    def from_json_schema(cls, schema: str | dict[str, Any]) -> LlamaGrammar:
        """A grammar accepting exactly the JSON documents valid under ``schema`` (a dict
        or JSON text), converted by llama.cpp's json-schema-to-grammar. Properties are
        generated in the order the schema lists them (a dict's insertion order).
        Conversions are cached, so a repeated schema costs nothing."""
        if isinstance(schema, dict):
            # Not sort_keys: the order of "properties" is the order the model writes them in.
            try:
                text = json.dumps(schema)
            except (TypeError, ValueError, RecursionError) as exc:
                raise ValidationError(f"[LlamaGrammar.from_json_schema] the schema is not JSON: {exc}") from None
        elif isinstance(schema, str):
            text = check_utf8("LlamaGrammar.from_json_schema", "schema", schema)
        else:
            raise ValidationError(f"[LlamaGrammar.from_json_schema] schema must be a dict or str, got {schema!r}")
        _check_bounds(schema if isinstance(schema, dict) else text)
        try:
            return _grammar_for_schema(text)
        except ValidationError as exc:
            if "left recursion" not in str(exc):
                raise
            raise ValidationError(f"[LlamaGrammar.from_json_schema] the schema refers to itself ($ref cycle) before "
                                  f"any text is matched, so no document can satisfy it: {exc}") from None

    @classmethod
    def json(cls) -> LlamaGrammar:
        """Any JSON object (what ``response_format={"type": "json_object"}`` uses)."""
        return _grammar_for_schema(json.dumps({"type": "object"}))

    @property
    def gbnf(self) -> str:
        """The grammar's GBNF source (for a JSON schema: what llama.cpp converted it to)."""
        return self._gbnf

    @property
    def root(self) -> str:
        """The name of the start rule."""
        return self._root

    def __repr__(self) -> str:
        return f"LlamaGrammar({len(self._gbnf)} chars of GBNF)"


@functools.lru_cache(maxsize=128)
def _grammar_for_schema(schema_text: str) -> LlamaGrammar:
    return LlamaGrammar(_core.json_schema_to_gbnf(schema_text))


_BOUNDS = (("minLength", "maxLength"), ("minItems", "maxItems"), ("minProperties", "maxProperties"),
           ("minimum", "maximum"), ("minContains", "maxContains"))


def _check_bounds(schema: dict[str, Any] | str) -> None:
    """A lower bound above its upper bound (``minLength`` 2, ``maxLength`` 1) matches no
    document: refused here (llama.cpp's converter hung on some and silently swapped others)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except (ValueError, RecursionError):
            return  # llama.cpp's parser reports it
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            for low, high in _BOUNDS:
                lo, hi = node.get(low), node.get(high)
                if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi and \
                        not isinstance(lo, bool) and not isinstance(hi, bool):
                    raise ValidationError(f"[LlamaGrammar.from_json_schema] the schema's {low} {lo} is above its "
                                          f"{high} {hi}: no document can satisfy it")
            pending.extend(node.values())
