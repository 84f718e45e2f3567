"""A rendered chat request (:class:`RenderedChat`: prompt, stops, tool-call grammar) and the
reading of its reply: the text into an OpenAI assistant message (``content``,
``reasoning_content``, ``tool_calls``), whole or as deltas while it streams. The model's own
format is read by llama.cpp's common chat parser (:class:`NativeReplies`); the tool format
this package adds for templates that cannot describe tools is read by
:class:`llama_cpp._generic_tools.GenericReplies`. Both give the same shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import _core
from .errors import GenerationError


class DeltaStream(Protocol):
    """A reply read piece by piece. Deltas are dicts with one of ``content``,
    ``reasoning_content`` or ``tool_call`` ({index, id?, name?, arguments})."""

    def feed(self, piece: str) -> list[dict[str, Any]]: ...

    def finish(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The remaining deltas and the whole message."""
        ...


class ReplyParser(Protocol):
    def parse(self, text: str) -> dict[str, Any]:
        """The reply as an OpenAI assistant message; a reply that does not match the format
        is returned whole as ``content`` (nothing the model wrote is lost)."""
        ...

    def stream(self) -> DeltaStream: ...


def finish_message(message: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's shape: a reply that is only tool calls has ``content`` None."""
    if message.get("tool_calls") and not message.get("content"):
        message["content"] = None
    return message


class _NativeStream:
    def __init__(self, parser: _core.ChatParser) -> None:
        self._stream = _core.ChatStreamParser(parser)

    def feed(self, piece: str) -> list[dict[str, Any]]:
        return list(json.loads(self._stream.feed(piece)))

    def finish(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        final = json.loads(self._stream.finish())
        return list(final["deltas"]), finish_message(final["message"])


class NativeReplies:
    """The parser llama.cpp's common chat layer built for the request's format."""

    def __init__(self, parser: _core.ChatParser) -> None:
        self._parser = parser

    def parse(self, text: str) -> dict[str, Any]:
        try:
            message: dict[str, Any] = json.loads(self._parser.parse(text, False))
        except GenerationError:
            return {"role": "assistant", "content": text}
        return finish_message(message)

    def stream(self) -> DeltaStream:
        return _NativeStream(self._parser)


@dataclass
class RenderedChat:
    """What a generation needs from the chat template for one request: the prompt, stop
    strings, the tool-call grammar (lazy: waits for a trigger; ``grammar_prefill``: tokens
    of the prompt the grammar starts with), the special tokens whose text the parser reads,
    and the reply's parser."""

    prompt: str
    stops: list[str]
    replies: ReplyParser
    grammar: str = ""
    grammar_lazy: bool = False
    grammar_trigger_patterns: list[str] = field(default_factory=list)
    grammar_trigger_tokens: list[int] = field(default_factory=list)
    grammar_prefill: list[int] = field(default_factory=list)
    text_tokens: list[int] = field(default_factory=list)

    @classmethod
    def native(cls, chat: _core.ChatPrompt) -> RenderedChat:
        """llama.cpp's rendering of the request, read by its own parser."""
        return cls(str(chat.prompt), list(chat.stops), NativeReplies(chat.parser), str(chat.grammar),
                   bool(chat.grammar_lazy), list(chat.grammar_trigger_patterns), list(chat.grammar_trigger_tokens),
                   list(chat.grammar_prefill), list(chat.text_tokens))
