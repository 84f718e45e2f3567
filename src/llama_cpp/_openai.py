"""Dicts in llama-cpp-python's (OpenAI's) shapes, and the argument handling of the
OpenAI-style methods. No generation logic lives here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import _core
from ._streaming import GenerationStream
from ._replies import ReplyParser
from .errors import ValidationError
from .grammar import LlamaGrammar


# Tokens with their log-probabilities: a whole result, or the tokens one streamed piece released.
Tokens = _core.GenerationResult | _core.TokenLogprobs
# The text of every token (and alternative) of some Tokens (ModelView.piece_texts).
PieceTexts = Callable[[Tokens], dict[int, str]]


def _ended(stream: GenerationStream) -> _core.GenerationResult:
    result = stream.result
    assert result is not None  # the iteration has ended without an error
    return result


def _usage(result: _core.GenerationResult) -> dict[str, Any]:
    prompt, completion = int(result.n_prompt_tokens), len(result.tokens)
    # cached_tokens: prompt tokens whose KV cells were reused rather than decoded (OpenAI's field).
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(result.n_reused_tokens)}}


def _finish_reason(result: _core.GenerationResult) -> str:
    # A cancelled generation only happens when a stream is closed early; report it as
    # OpenAI does any generation cut short by the caller.
    return "length" if result.finish_reason == "length" else "stop"


def _completion_logprobs(result: Tokens, pieces: dict[int, str], offset: int) -> dict[str, Any]:
    """The legacy shape: ``tokens``, ``text_offset`` (in the whole reply, echo included),
    ``token_logprobs`` and ``top_logprobs`` (``{token text: logprob}`` per token)."""
    tokens = [pieces[t] for t in result.tokens]
    offsets = []
    for text in tokens:
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": tokens,
        "text_offset": offsets,
        "token_logprobs": list(result.token_logprobs),
        "top_logprobs": [{pieces[t]: lp for t, lp in alternatives} for alternatives in result.top_logprobs],
    }


def completion(result: _core.GenerationResult, model: str, echo_prefix: str, pieces: dict[int, str] | None) -> dict[str, Any]:
    return {
        "id": f"cmpl-{uuid.uuid4()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "text": echo_prefix + str(result.text),
                "index": 0,
                "logprobs": None if pieces is None else _completion_logprobs(result, pieces, len(echo_prefix)),
                "finish_reason": _finish_reason(result),
            }
        ],
        "usage": _usage(result),
    }


class CompletionChunks:
    """Makes the ``text_completion`` chunks of one streamed completion: the echoed prompt
    first, then one chunk per piece, then an empty one with the finish reason and ``usage``.
    With logprobs (``piece_texts``), each chunk carries the legacy ``logprobs`` of the tokens
    its text released (a piece may then have no text and only tokens: text held back for a
    stop string or a partial character comes with a later piece)."""

    def __init__(self, model: str, echo_prefix: str, piece_texts: PieceTexts | None) -> None:
        self.id, self.created, self.model = f"cmpl-{uuid.uuid4()}", int(time.time()), model
        self._echo, self._piece_texts, self._offset = echo_prefix, piece_texts, len(echo_prefix)

    def _chunk(self, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}],
        }

    def start(self) -> list[dict[str, Any]]:
        return [self._chunk(self._echo, None, None)] if self._echo else []

    def piece(self, text: str, released: _core.TokenLogprobs) -> list[dict[str, Any]]:
        logprobs = None
        if self._piece_texts is not None and len(released):
            logprobs = _completion_logprobs(released, self._piece_texts(released), self._offset)
            self._offset += sum(len(t) for t in logprobs["tokens"])
        return [self._chunk(text, logprobs, None)] if text or logprobs else []

    def end(self, result: _core.GenerationResult) -> dict[str, Any]:
        last = self._chunk("", None, _finish_reason(result))
        last["usage"] = _usage(result)
        return last


def completion_chunks(
    stream: GenerationStream, model: str, echo_prefix: str, piece_texts: PieceTexts | None
) -> Iterator[dict[str, Any]]:
    chunks = CompletionChunks(model, echo_prefix, piece_texts)
    with stream:
        yield from chunks.start()
        for piece in stream:
            yield from chunks.piece(piece, stream.take_logprobs())
        yield chunks.end(_ended(stream))


def _chat_logprobs(result: Tokens, pieces: dict[int, str]) -> list[dict[str, Any]]:
    """``logprobs.content`` of chat: one entry per token."""
    content = []
    for token, lp, alternatives in zip(result.tokens, result.token_logprobs, result.top_logprobs):
        text = pieces[token]
        content.append(
            {
                "token": text,
                "logprob": lp,
                "bytes": list(text.encode()),
                "top_logprobs": [
                    {"token": pieces[t], "logprob": alp, "bytes": list(pieces[t].encode())} for t, alp in alternatives
                ],
            }
        )
    return content


def _chat_finish_reason(result: _core.GenerationResult, message: dict[str, Any]) -> str:
    if message.get("tool_calls") and result.finish_reason != "length":
        return "tool_calls"
    return _finish_reason(result)


def chat_completion(
    result: _core.GenerationResult, model: str, pieces: dict[int, str] | None, replies: ReplyParser
) -> dict[str, Any]:
    """The reply parsed by its chat format: ``message.content``, ``message.reasoning_content``
    (when the model reasoned) and ``message.tool_calls`` (``finish_reason="tool_calls"``)."""
    message = replies.parse(str(result.text))
    return {
        "id": f"chatcmpl-{uuid.uuid4()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None if pieces is None else {"content": _chat_logprobs(result, pieces)},
                "finish_reason": _chat_finish_reason(result, message),
            }
        ],
        "usage": _usage(result),
    }


def _delta(item: dict[str, Any]) -> dict[str, Any]:
    """A ChatStreamParser delta as an OpenAI ``delta``."""
    call = item.get("tool_call")
    if call is None:
        return item
    entry: dict[str, Any] = {"index": call["index"], "function": {"arguments": call["arguments"]}}
    if "id" in call:
        entry["id"] = call["id"]
        entry["type"] = "function"
    if "name" in call:
        entry["function"]["name"] = call["name"]
    return {"tool_calls": [entry]}


class ChatChunks:
    """Makes the ``chat.completion.chunk`` dicts of one streamed reply: the role first, then
    the deltas the reply's parser finds in each piece (``content``, ``reasoning_content`` or
    ``tool_calls`` as OpenAI streams them), then an empty delta with the finish reason and the
    request's ``usage``.

    With logprobs (``piece_texts``), a chunk's ``logprobs.content`` lists the tokens whose
    text was released since the previous chunk: each token once, in order, so the entries of
    all chunks together are the unstreamed reply's. Text the generation holds back (a
    possible stop string, a partial UTF-8 character) or the parser holds back (a tool call,
    a reasoning marker) moves its tokens to the chunk that comes out next, or to the last."""

    def __init__(self, model: str, replies: ReplyParser, piece_texts: PieceTexts | None = None) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4()}", int(time.time()), model
        self._deltas = replies.stream()
        self._piece_texts = piece_texts
        self._held: list[dict[str, Any]] = []  # logprobs entries no chunk carried yet

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        logprobs = None
        if self._held:
            logprobs, self._held = {"content": self._held}, []
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
        }

    def start(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant"}, None)

    def piece(self, text: str, released: _core.TokenLogprobs | None = None) -> list[dict[str, Any]]:
        if self._piece_texts is not None and released is not None and len(released):
            self._held.extend(_chat_logprobs(released, self._piece_texts(released)))
        return [self._chunk(_delta(d), None) for d in self._deltas.feed(text)] if text else []

    def end(self, result: _core.GenerationResult) -> list[dict[str, Any]]:
        deltas, message = self._deltas.finish()
        chunks = [self._chunk(_delta(d), None) for d in deltas]
        last = self._chunk({}, _chat_finish_reason(result, message))
        last["usage"] = _usage(result)  # the decoded token counts, as llama-server's last chunk has them
        chunks.append(last)
        return chunks


def chat_chunks(
    stream: GenerationStream, model: str, replies: ReplyParser, piece_texts: PieceTexts | None
) -> Iterator[dict[str, Any]]:
    chunks = ChatChunks(model, replies, piece_texts)
    with stream:
        yield chunks.start()
        for piece in stream:
            yield from chunks.piece(piece, stream.take_logprobs())
        yield from chunks.end(_ended(stream))


def embedding(vectors: list[list[float]], n_tokens: int, model: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }


def token_limit(max_tokens: int | None) -> int | None:
    """llama-cpp-python's convention: ``max_tokens`` None or <= 0 means no limit."""
    return None if max_tokens is None or max_tokens <= 0 else min(max_tokens, 2**31 - 1)


def grammar_for(api: str, response_format: dict[str, Any] | None, grammar: LlamaGrammar | None) -> LlamaGrammar | None:
    """The grammar a chat request asks for, through ``grammar`` or ``response_format``."""
    if response_format is None:
        return grammar
    if not isinstance(response_format, dict):
        raise ValidationError(f"[{api}] response_format must be a dict, got {type(response_format).__name__}")
    if grammar is not None:
        raise ValidationError(f"[{api}] give either grammar or response_format, not both")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return LlamaGrammar.json() if schema is None else LlamaGrammar.from_json_schema(schema)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            raise ValidationError(f"[{api}] response_format json_schema needs json_schema.schema")
        return LlamaGrammar.from_json_schema(schema)
    raise ValidationError(f"[{api}] response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
