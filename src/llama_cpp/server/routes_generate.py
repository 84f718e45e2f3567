"""``POST /v1/chat/completions`` and ``POST /v1/completions``: every request is a
``LlamaPool`` request; streams are SSE."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from starlette.responses import JSONResponse

from .protocol import ChatCompletionRequest, CompletionRequest
from .served import ServedModel, ServedModels, Ticket
from .metrics import Metrics
from .streaming import StreamStats, events, sse_response, until_disconnect

router = APIRouter()


def _state(request: Request) -> tuple[ServedModels, Metrics]:
    return request.app.state.models, request.app.state.metrics


def _finished(metrics: Metrics, model: str, started: float, outcome: str, usage: dict[str, int] | None) -> None:
    if outcome == "cancelled":
        metrics.count("requests_cancelled_total", model=model)
    if usage is not None:
        metrics.count("prompt_tokens_total", usage["prompt_tokens"], model=model)
        metrics.count("tokens_predicted_total", usage["completion_tokens"], model=model)
    metrics.observe("e2e_request_latency_seconds", time.monotonic() - started, model=model)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI's chat completions: tools, ``tool_choice``, ``response_format``,
    ``reasoning_content``, logprobs (streamed too: each chunk carries its tokens'), stop, seed;
    ``stream`` answers SSE."""
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
    return sse_response(_chunk_events(chunks, model, metrics, ticket, started, body.include_usage(), _chat_text),
                        models.settings.sse_ping_s)


def _chat_text(chunk: dict[str, Any]) -> str:
    out = []
    for choice in chunk["choices"]:
        delta = choice["delta"]
        out.append((delta.get("content") or "") + (delta.get("reasoning_content") or "") +
                   "".join(c.get("function", {}).get("arguments") or "" for c in delta.get("tool_calls") or ()))
    return "".join(out)


def _chunk_events(chunks: AsyncIterator[dict[str, Any]], model: ServedModel, metrics: Metrics, ticket: Ticket,
                  started: float, include_usage: bool, generated: Callable[[dict[str, Any]], str]
                  ) -> AsyncIterator[bytes]:
    """The SSE events of the pool's chunks (chat or text completion); ``generated`` reads the
    generated text of a chunk, for the metrics."""
    stats = StreamStats(metrics, model.name, started)
    last: dict[str, Any] = {}

    def on_chunk(chunk: dict[str, Any]) -> None:
        # The pool's last chunk carries the decoded token counts (``usage``); it is not sent on
        # unless the client asked for usage (OpenAI's stream_options.include_usage).
        usage = chunk.pop("usage", None)
        if usage is not None:
            last["usage"] = usage
        last.update(chunk)
        stats.piece(generated(chunk))

    def finish(outcome: str) -> list[dict[str, Any]]:
        stats.flush()
        usage = last.get("usage") if outcome == "ok" else None
        _finished(metrics, model.name, started, outcome, usage)
        if outcome != "ok" or not include_usage:
            return []
        return [{"id": last.get("id"), "object": last.get("object"), "created": last.get("created"),
                 "model": last.get("model"), "choices": [], "usage": usage}]

    async def close() -> None:
        ticket.release()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    return events(chunks, on_chunk, finish, close)


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """OpenAI's (legacy) text completions: one prompt (text or token ids), ``echo``,
    ``logprobs`` (0 to 20 alternatives; streamed too), stop, seed; ``stream`` answers SSE."""
    models, metrics = _state(request)
    model = models.pick(body.model, embedding=False)
    pool = model.pool
    assert pool is not None
    started = time.monotonic()
    prompt = body.prompt_value()
    kwargs = body.completion_kwargs(body.model or model.name)
    ticket = models.admit(model)
    if not body.stream:
        try:
            finished, reply = await until_disconnect(request, pool.create_completion(prompt, **kwargs))
        finally:
            ticket.release()
        if not finished:
            _finished(metrics, model.name, started, "cancelled", None)
            return Response(status_code=204)
        _finished(metrics, model.name, started, "ok", cast("dict[str, Any]", reply)["usage"])
        return JSONResponse(reply)
    try:
        chunks = cast("AsyncIterator[dict[str, Any]]", await pool.create_completion(prompt, **kwargs, stream=True))
    except BaseException:
        ticket.release()
        raise
    echoed = [not body.echo]  # the echoed prompt's chunk is not generated text

    def generated(chunk: dict[str, Any]) -> str:
        if not echoed[0]:
            echoed[0] = True
            return ""
        return "".join(choice["text"] for choice in chunk["choices"])

    return sse_response(_chunk_events(chunks, model, metrics, ticket, started, body.include_usage(), generated),
                        models.settings.sse_ping_s)
