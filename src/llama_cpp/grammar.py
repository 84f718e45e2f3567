"""LlamaGrammar: constrain generation with a GBNF grammar or a JSON schema."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from . import _core
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
        _core.validate_grammar(gbnf, root, None)
        self._gbnf = gbnf
        self._root = root

    @classmethod
    def from_string(cls, gbnf: str, root: str = "root") -> LlamaGrammar:
        """A grammar from GBNF text."""
        return cls(gbnf, root)

    @classmethod
    def from_file(cls, path: str | Path, root: str = "root") -> LlamaGrammar:
        """A grammar from a ``.gbnf`` file."""
        return cls(Path(path).read_text(encoding="utf-8"), root)

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
            text = schema
        else:
            raise ValidationError(f"[LlamaGrammar.from_json_schema] schema must be a dict or str, got {schema!r}")
        return _grammar_for_schema(text)

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
