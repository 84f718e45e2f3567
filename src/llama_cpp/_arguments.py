"""The OpenAI-style keyword arguments of ``create_completion`` and ``create_chat_completion``
(llama-cpp-python's names and defaults), defined once: a ``TypedDict`` for the signatures of
``Llama``, its async twins and ``LlamaPool`` (``**kwargs: Unpack[ChatArgs]``), and a frozen
dataclass with the defaults that rejects unknown names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypedDict

from ._validate import require_bool, require_int, require_text
from .errors import ValidationError
from .grammar import LlamaGrammar
from .sampling import SamplingParams


class ChatArgs(TypedDict, total=False):
    """The keyword arguments of ``create_chat_completion`` (llama-cpp-python's names); the
    defaults are :class:`ChatOptions`'."""

    max_tokens: int | None
    temperature: float
    top_p: float
    min_p: float
    typical_p: float
    stop: str | Sequence[str] | None
    stream: bool
    seed: int | None
    top_k: int
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    mirostat_mode: int
    mirostat_tau: float
    mirostat_eta: float
    response_format: dict[str, Any] | None
    grammar: LlamaGrammar | None
    logit_bias: dict[int, float] | None
    logprobs: bool
    top_logprobs: int | None
    model: str | None
    tools: Sequence[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool
    thinking: bool | None
    chat_template_kwargs: dict[str, Any] | None


@dataclass(frozen=True)
class ChatOptions:
    """:class:`ChatArgs` with their defaults. ``max_tokens`` None or <= 0 runs until the model
    stops or the context is full; ``model`` names the reply's ``model`` field. ``tools``,
    ``tool_choice`` and ``parallel_tool_calls`` are OpenAI's; ``thinking`` True/False turns a
    hybrid model's reasoning on or off (None: the model's default); ``chat_template_kwargs``
    are extra variables for the chat template."""

    max_tokens: int | None = None
    temperature: float = 0.2
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    stop: str | Sequence[str] | None = None
    stream: bool = False
    seed: int | None = None
    top_k: int = 40
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    response_format: dict[str, Any] | None = None
    grammar: LlamaGrammar | None = None
    logit_bias: dict[int, float] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    model: str | None = None
    tools: Sequence[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = False
    thinking: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @classmethod
    def parse(cls, api: str, kwargs: Mapping[str, Any]) -> ChatOptions:
        """The options of ``kwargs``; an unknown name raises ``ValidationError`` naming it."""
        options = cls(**_known(api, kwargs, _CHAT_NAMES))
        _check_shared(api, options)
        return options


class CompletionArgs(TypedDict, total=False):
    """The keyword arguments of ``create_completion``; the defaults are :class:`CompletionOptions`'."""

    max_tokens: int | None
    temperature: float
    top_p: float
    min_p: float
    typical_p: float
    stop: str | Sequence[str] | None
    stream: bool
    seed: int | None
    top_k: int
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    mirostat_mode: int
    mirostat_tau: float
    mirostat_eta: float
    logprobs: int | None
    echo: bool
    grammar: LlamaGrammar | None
    logit_bias: dict[int, float] | None
    model: str | None


@dataclass(frozen=True)
class CompletionOptions:
    """:class:`CompletionArgs` with their defaults."""

    max_tokens: int | None = 16
    temperature: float = 0.8
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    stop: str | Sequence[str] | None = None
    stream: bool = False
    seed: int | None = None
    top_k: int = 40
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    logprobs: int | None = None
    echo: bool = False
    grammar: LlamaGrammar | None = None
    logit_bias: dict[int, float] | None = None
    model: str | None = None

    @classmethod
    def parse(cls, api: str, kwargs: Mapping[str, Any]) -> CompletionOptions:
        """The options of ``kwargs``; an unknown name raises ``ValidationError`` naming it."""
        options = cls(**_known(api, kwargs, _COMPLETION_NAMES))
        _check_shared(api, options)
        require_bool(api, "echo", options.echo)
        if options.logprobs is not None:
            require_int(api, "logprobs", options.logprobs, minimum=0, maximum=20)
        return options

    def sampling(self) -> SamplingParams:
        """The sampler the options ask for (``SamplingParams`` checks the values)."""
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, min_p=self.min_p, typical_p=self.typical_p,
            seed=self.seed, top_k=self.top_k, repeat_penalty=self.repeat_penalty,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            mirostat=self.mirostat_mode, mirostat_tau=self.mirostat_tau, mirostat_eta=self.mirostat_eta,
            logit_bias=self.logit_bias,
        )


def _check_shared(api: str, options: ChatOptions | CompletionOptions) -> None:
    """The arguments both kinds of request take that no later step checks (the sampler's are
    checked by ``SamplingParams``, ``stop`` and the grammar by the request builder)."""
    if options.max_tokens is not None:
        require_int(api, "max_tokens", options.max_tokens)
    require_bool(api, "stream", options.stream)
    if options.model is not None:
        require_text(api, "model", options.model)


def _known(api: str, kwargs: Mapping[str, Any], names: frozenset[str]) -> Mapping[str, Any]:
    unknown = set(kwargs) - names
    if unknown:
        raise ValidationError(f"[{api}] unknown argument(s): {', '.join(sorted(unknown))}")
    return kwargs


_CHAT_NAMES = frozenset(f.name for f in fields(ChatOptions))
_COMPLETION_NAMES = frozenset(f.name for f in fields(CompletionOptions))
