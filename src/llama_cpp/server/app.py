"""``create_app(settings)``: the FastAPI application (usable inside a user's own ASGI stack)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, install_handlers
from .metrics import Metrics
from .routes_generate import router as generate_router
from .routes_info import router as info_router
from .served import ServedModels
from .settings import ServerSettings

PUBLIC_PATHS = frozenset({"/health", "/metrics"})
# The endpoint label of requests_total; any other path counts as "other" (a label per path
# that clients invent would grow the metrics without bound).
ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health"})


class _Guard:
    """Pure ASGI middleware (it does not break streaming or disconnect detection): the API key
    (``Authorization: Bearer`` or ``X-Api-Key``, compared in constant time; ``/health`` and
    ``/metrics`` are public) and the ``requests_total`` counter by endpoint and status."""

    def __init__(self, app: ASGIApp, api_key: str | None, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self._digest = hashlib.sha256(api_key.encode()).digest() if api_key else None

    def _authorized(self, scope: Scope) -> bool:
        if self._digest is None or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key", b"")
        bearer = headers.get(b"authorization", b"")
        if bearer[:7].lower() == b"bearer ":
            given = bearer[7:].strip()
        return hmac.compare_digest(hashlib.sha256(given).digest(), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            if not self._authorized(scope):
                error = APIError(401, "Invalid API key: pass it as 'Authorization: Bearer <key>'",
                                 code="invalid_api_key")
                await error.response()(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            if path != "/metrics":
                self.metrics.count("requests_total", endpoint=path if path in ENDPOINTS else "other",
                                   status=str(status))


def create_app(settings: ServerSettings) -> FastAPI:
    """The server's application. The models load on a background thread when the app starts
    (``/health`` answers 503 until they have) and are freed when it stops."""
    models = ServedModels(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        loading = loop.run_in_executor(None, models.load)
        try:
            yield
        finally:
            await loading
            await loop.run_in_executor(None, models.close)

    app = FastAPI(title="llama-cpp-nanobind", lifespan=lifespan)
    app.state.models = models
    app.state.metrics = metrics
    app.state.settings = settings
    install_handlers(app)
    app.include_router(generate_router)
    app.include_router(info_router)
    app.add_middleware(_Guard, api_key=settings.api_key, metrics=metrics)
    return app
