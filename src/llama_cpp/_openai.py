"""Dicts in llama-cpp-python's (OpenAI's) shapes, and the argument handling of the
OpenAI-style methods. No generation logic lives here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from . import _core
from ._streaming import GenerationStream
from ._replies import ReplyParser
from .errors import ValidationError
from .grammar import LlamaGrammar


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


def _completion_logprobs(result: _core.GenerationResult, pieces: dict[int, str], offset: int) -> dict[str, Any]:
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


def completion_chunks(stream: GenerationStream, model: str, echo_prefix: str) -> Iterator[dict[str, Any]]:
    cid, created = f"cmpl-{uuid.uuid4()}", int(time.time())

    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        }

    with stream:
        if echo_prefix:
            yield chunk(echo_prefix, None)
        for piece in stream:
            yield chunk(piece, None)
        yield chunk("", _finish_reason(_ended(stream)))


def _chat_logprobs(result: _core.GenerationResult, pieces: dict[int, str]) -> dict[str, Any]:
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
    return {"content": content}


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
                "logprobs": None if pieces is None else _chat_logprobs(result, pieces),
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
    request's ``usage``."""

    def __init__(self, model: str, replies: ReplyParser) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4()}", int(time.time()), model
        self._deltas = replies.stream()

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def start(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant"}, None)

    def piece(self, text: str) -> list[dict[str, Any]]:
        return [self._chunk(_delta(d), None) for d in self._deltas.feed(text)]

    def end(self, result: _core.GenerationResult) -> list[dict[str, Any]]:
        deltas, message = self._deltas.finish()
        chunks = [self._chunk(_delta(d), None) for d in deltas]
        last = self._chunk({}, _chat_finish_reason(result, message))
        last["usage"] = _usage(result)  # the decoded token counts, as llama-server's last chunk has them
        chunks.append(last)
        return chunks


def chat_chunks(stream: GenerationStream, model: str, replies: ReplyParser) -> Iterator[dict[str, Any]]:
    chunks = ChatChunks(model, replies)
    with stream:
        yield chunks.start()
        for piece in stream:
            yield from chunks.piece(piece)
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
