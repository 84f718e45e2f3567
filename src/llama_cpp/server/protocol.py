"""The request bodies (pydantic models, OpenAI's field names plus llama.cpp's sampling
extensions) and their translation into ``LlamaPool`` arguments. Unknown fields are accepted
and ignored, as OpenAI-compatible servers do (clients send ``user``, ``metadata``, ...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ValidationError
from ..grammar import LlamaGrammar


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = None
    n: int = 1
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    # llama.cpp's samplers, as llama-server and llama-cpp-python accept them
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_penalty: float | None = None
    mirostat_mode: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    grammar: str | None = Field(default=None, description="a GBNF grammar the reply must match")

    def include_usage(self) -> bool:
        """``stream_options.include_usage``: a last chunk with ``usage`` and no choices."""
        return bool((self.stream_options or {}).get("include_usage"))

    def common_kwargs(self) -> dict[str, Any]:
        """The sampling arguments the request sets (the rest keep ``LlamaPool``'s defaults)."""
        if self.n != 1:
            raise ValidationError(f"n={self.n}: this server returns one choice per request (n=1)")
        out: dict[str, Any] = {}
        for name in ("temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty", "top_k",
                     "min_p", "typical_p", "repeat_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.logit_bias:
            try:
                out["logit_bias"] = {int(token): bias for token, bias in self.logit_bias.items()}
            except ValueError:
                raise ValidationError("logit_bias keys must be token ids") from None
        if self.grammar is not None:
            out["grammar"] = LlamaGrammar.from_string(self.grammar)
        return out


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    thinking: bool | None = Field(default=None, description="turn a hybrid model's reasoning on or off")
    chat_template_kwargs: dict[str, Any] | None = None

    def chat_kwargs(self, model: str) -> dict[str, Any]:
        """``LlamaPool.create_chat_completion``'s keyword arguments."""
        out = self.common_kwargs()
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        if max_tokens is not None:
            out["max_tokens"] = max_tokens
        for name in ("response_format", "tools", "tool_choice", "parallel_tool_calls", "thinking",
                     "chat_template_kwargs", "top_logprobs"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.logprobs:
            out["logprobs"] = True
        if self.tool_choice == "none" and not self.tools:
            out.pop("tool_choice")
        out["model"] = model
        return out


class CompletionRequest(_Request):
    """``POST /v1/completions``."""

    prompt: str | list[str] | list[int]
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None

    def prompt_value(self) -> str | list[int]:
        """The one prompt of the request."""
        if self.suffix:
            raise ValidationError("suffix (fill-in-the-middle) is not supported")
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ValidationError(f"prompt: {len(prompt)} prompts in one request; this server takes one")
            return str(prompt[0])
        return prompt  # type: ignore[return-value]  # a str or token ids

    def completion_kwargs(self, model: str) -> dict[str, Any]:
        """``LlamaPool.create_completion``'s keyword arguments (``max_tokens`` defaults to 16,
        as OpenAI's; ``logprobs`` 0 to 20 is checked there)."""
        out = self.common_kwargs()
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        out["echo"] = self.echo
        out["model"] = model
        return out


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="allow")

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
