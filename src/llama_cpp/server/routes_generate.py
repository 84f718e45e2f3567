"""``POST /v1/chat/completions`` and ``POST /v1/completions``: every request is a
``LlamaPool`` request; streams are SSE."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from starlette.responses import JSONResponse

from ..sampling import SamplingParams
from .protocol import ChatCompletionRequest, CompletionRequest
from .served import ServedModel, ServedModels, Ticket
from .metrics import Metrics
from .streaming import StreamStats, events, sse_response, until_disconnect

router = APIRouter()


def _state(request: Request) -> tuple[ServedModels, Metrics]:
    return request.app.state.models, request.app.state.metrics


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finished(metrics: Metrics, model: str, started: float, outcome: str, usage: dict[str, int] | None) -> None:
    if outcome == "cancelled":
        metrics.count("requests_cancelled_total", model=model)
    if usage is not None:
        metrics.count("prompt_tokens_total", usage["prompt_tokens"], model=model)
        metrics.count("tokens_predicted_total", usage["completion_tokens"], model=model)
    metrics.observe("e2e_request_latency_seconds", time.monotonic() - started, model=model)


def _n_generated(model: ServedModel, text: str) -> int:
    """Tokens of generated text, counted again (the chat stream does not report them)."""
    assert model.pool is not None
    return len(model.pool.llama.tokenize(text, add_bos=False, special=True)) if text else 0


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI's chat completions: tools, ``tool_choice``, ``response_format``,
    ``reasoning_content``, logprobs (not streamed), stop, seed; ``stream`` answers SSE."""
    models, metrics = _state(request)
    model = models.pick(body.model, embedding=False)
    pool = model.pool
    assert pool is not None  # a completion model that has loaded
    started = time.monotonic()
    kwargs = body.chat_kwargs(body.model or model.name)
    ticket = models.admit(model)
    if not body.stream:
        try:
            finished, reply = await until_disconnect(request, pool.create_chat_completion(body.messages, **kwargs))
        finally:
            ticket.release()
        if not finished:
            _finished(metrics, model.name, started, "cancelled", None)
            return Response(status_code=204)  # nobody is listening
        _finished(metrics, model.name, started, "ok", cast("dict[str, Any]", reply)["usage"])
        return JSONResponse(reply)
    try:
        # Validated here (a bad request is a 400 before any header goes out); queued on the first chunk.
        chunks = cast("AsyncIterator[dict[str, Any]]", await pool.create_chat_completion(
            body.messages, **kwargs, stream=True))
    except BaseException:
        ticket.release()
        raise
    return sse_response(_chat_events(chunks, model, metrics, ticket, started, body.include_usage()),
                        models.settings.sse_ping_s)


def _chat_events(chunks: AsyncIterator[dict[str, Any]], model: ServedModel, metrics: Metrics, ticket: Ticket,
                 started: float, include_usage: bool) -> AsyncIterator[str]:
    stats = StreamStats(metrics, model.name, started)
    last: dict[str, Any] = {}

    def on_chunk(chunk: dict[str, Any]) -> None:
        # The pool's last chunk carries the decoded token counts (``usage``); it is not sent on
        # unless the client asked for usage (OpenAI's stream_options.include_usage).
        usage = chunk.pop("usage", None)
        if usage is not None:
            last["usage"] = usage
        last.update(chunk)
        for choice in chunk["choices"]:
            delta = choice["delta"]
            stats.piece((delta.get("content") or "") + (delta.get("reasoning_content") or "") +
                        "".join(c.get("function", {}).get("arguments") or "" for c in delta.get("tool_calls") or ()))

    def finish(outcome: str) -> list[dict[str, Any]]:
        usage = last.get("usage") if outcome == "ok" else None
        _finished(metrics, model.name, started, outcome, usage)
        if outcome != "ok" or not include_usage:
            return []
        return [{"id": last.get("id"), "object": "chat.completion.chunk", "created": last.get("created"),
                 "model": last.get("model"), "choices": [], "usage": usage}]

    async def close() -> None:
        ticket.release()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    return events(chunks, on_chunk, finish, close)


def _generation_arguments(body: CompletionRequest) -> tuple[SamplingParams, Any, Any]:
    """(sampling, stop, grammar) of a completion request."""
    kwargs = body.common_kwargs()
    stop, grammar = kwargs.pop("stop", None), kwargs.pop("grammar", None)
    if "mirostat_mode" in kwargs:
        kwargs["mirostat"] = kwargs.pop("mirostat_mode")
    return SamplingParams(**kwargs), stop, grammar


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """OpenAI's (legacy) text completions: one prompt (text or token ids), ``echo``, stop,
    seed; ``stream`` answers SSE."""
    models, metrics = _state(request)
    model = models.pick(body.model, embedding=False)
    pool = model.pool
    assert pool is not None
    started = time.monotonic()
    prompt = body.prompt_value()
    sampling, stop, grammar = _generation_arguments(body)
    pieces = pool.generate_stream(prompt, body.limit(), sampling=sampling, stop=stop, grammar=grammar)
    ticket = models.admit(model)
    name = body.model or model.name
    cid, created = f"cmpl-{uuid.uuid4()}", int(time.time())
    echo = (prompt if isinstance(prompt, str) else pool.llama.detokenize(prompt).decode(errors="replace")) \
        if body.echo else ""

    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": name,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]}

    def outcome_of(text: str) -> tuple[str, dict[str, int]]:
        # The pool's stream keeps its result (token counts, why it stopped) once it has ended.
        result = getattr(pieces, "result", None)
        if result is not None:
            n_prompt, n_generated = int(result.n_prompt_tokens), len(result.tokens)
            reason = "length" if result.finish_reason == "length" else "stop"
        else:
            n_prompt = len(prompt) if not isinstance(prompt, str) else pool.llama.n_tokens(prompt)
            n_generated = _n_generated(model, text)
            reason = "length" if n_generated >= body.limit() else "stop"
        return reason, _usage(n_prompt, n_generated)

    if not body.stream:
        async def collect() -> str:
            return "".join([piece async for piece in pieces])

        try:
            finished, text = await until_disconnect(request, collect())
        finally:
            ticket.release()
        if not finished or text is None:
            _finished(metrics, model.name, started, "cancelled", None)
            return Response(status_code=204)
        reason, usage = outcome_of(text)
        _finished(metrics, model.name, started, "ok", usage)
        reply = chunk(echo + text, reason)
        reply["usage"] = usage
        return JSONResponse(reply)

    stats = StreamStats(metrics, model.name, started)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        if echo:
            yield chunk(echo, None)
        async for piece in pieces:
            stats.piece(piece)
            yield chunk(piece, None)
        yield chunk("", outcome_of(stats.text)[0])

    def finish(outcome: str) -> list[dict[str, Any]]:
        usage = outcome_of(stats.text)[1] if outcome == "ok" else None
        _finished(metrics, model.name, started, outcome, usage)
        if usage is None or not body.include_usage():
            return []
        return [{**chunk("", None), "choices": [], "usage": usage}]

    async def close() -> None:
        ticket.release()
        await pieces.aclose()  # type: ignore[attr-defined]  # the pool's stream: cancels the request

    return sse_response(events(chunks(), lambda c: None, finish, close), models.settings.sse_ping_s)
