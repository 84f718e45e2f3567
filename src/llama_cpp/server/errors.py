"""Errors as OpenAI answers them: ``{"error": {"message", "type", "param", "code"}}`` with the
HTTP status the SDK acts on (400 is the caller's fault and never retried; 503 carries
``Retry-After`` and is retried)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from ..errors import LlamaError, ValidationError

log = logging.getLogger("llama_cpp.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 500: "server_error", 503: "unavailable_error"}


class APIError(Exception):
    """An error answered with ``status`` in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` dict."""
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        """The JSON response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_exception(exc: BaseException) -> APIError:
    """The API error for an exception raised while serving a request: a bad argument is the
    caller's (400), anything else the server's (500)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationError):
        message = str(exc)
        code = "context_length_exceeded" if "prompt has" in message and "n_ctx=" in message else None
        return APIError(400, message, code=code)
    if isinstance(exc, LlamaError):
        return APIError(500, str(exc))
    log.exception("unexpected error while serving a request", exc_info=exc)
    return APIError(500, f"internal error: {type(exc).__name__}")


def install_handlers(app: FastAPI) -> None:
    """OpenAI-shaped answers for our errors, FastAPI's body validation (400, not 422) and
    Starlette's 404/405."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return from_exception(exc).response()

    async def bad_body(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "invalid body"))
        return APIError(400, message, param=param).response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return APIError(exc.status_code, str(exc.detail)).response()

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(LlamaError, api_error)
    app.add_exception_handler(RequestValidationError, bad_body)
    app.add_exception_handler(StarletteHTTPException, http_error)
