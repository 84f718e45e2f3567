"""``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health`` and ``GET /metrics``."""

from __future__ import annotations

import base64
import struct
import time

from fastapi import APIRouter, Request, Response
from starlette.responses import JSONResponse, PlainTextResponse

from ..errors import ValidationError
from .errors import APIError
from .metrics import Metrics
from .protocol import EmbeddingRequest
from .served import ServedModels
from .streaming import until_disconnect

router = APIRouter()


def _state(request: Request) -> tuple[ServedModels, Metrics]:
    return request.app.state.models, request.app.state.metrics


@router.post("/v1/embeddings", response_model=None)
async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
    """OpenAI's embeddings (``encoding_format`` float or base64), from ``--embedding-model``."""
    models, metrics = _state(request)
    model = models.pick(body.model, embedding=True)
    embedder = model.embedder
    assert embedder is not None
    if body.dimensions is not None and body.dimensions != embedder.n_embd():
        raise ValidationError(f"dimensions={body.dimensions}: this model's embeddings have {embedder.n_embd()}")
    started = time.monotonic()
    ticket = models.admit(model)
    try:
        finished, reply = await until_disconnect(
            request, embedder.create_embedding_async(body.input, model=body.model or model.name))
    finally:
        ticket.release()
    metrics.observe("e2e_request_latency_seconds", time.monotonic() - started, model=model.name)
    if not finished or reply is None:
        metrics.count("requests_cancelled_total", model=model.name)
        return Response(status_code=204)
    metrics.count("prompt_tokens_total", reply["usage"]["prompt_tokens"], model=model.name)
    if body.encoding_format == "base64":
        for item in reply["data"]:
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return JSONResponse(reply)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The served models (``id`` is the name requests use)."""
    models, _ = _state(request)
    return {"object": "list", "data": [m.describe() for m in models.models]}


@router.get("/health", response_model=None)
async def health(request: Request) -> Response:
    """200 ``{"status": "ok"}`` once every model has loaded; 503 while loading or after a
    failed load."""
    models, _ = _state(request)
    try:
        models.require_ready()
    except APIError as exc:
        return exc.response()
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text: requests, tokens, queue depth, active sequences, time to first token,
    latency between tokens, tokens per second."""
    models, metrics = _state(request)
    return PlainTextResponse(metrics.render(models.samples()), media_type="text/plain; version=0.0.4",
                             headers={"Process-Start-Time-Unix": str(int(metrics.start_time))})
