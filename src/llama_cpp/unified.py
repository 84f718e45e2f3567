"""UnifiedLLM: one class that chats correctly with any model family.

It is a :class:`~llama_cpp.Llama` (every method of ``Llama`` works) that knows its family
(:class:`ModelFamily`, detected from the GGUF itself), takes the family's recommended sampling
unless told otherwise, takes its context length from the model, and treats a prompt as a
user's turn: ``generate("Why is the sky blue?")`` goes through the model's chat template and
returns the answer, with any reasoning separated (``thinking=True|False|None``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import _chat, _core
from ._async import AsyncStream, run_cancellable
from ._replies import RenderedChat, ReplyParser
from ._validate import require_bool, stop_list
from .config import LlamaConfig
from .errors import ValidationError
from .families import FamilyInfo, ModelFamily, detect_family, family_info
from .grammar import LlamaGrammar
from .llama import Llama
from .sampling import SamplingParams

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._arguments import ChatArgs

__all__ = ["UnifiedLLM", "ModelFamily", "FamilyInfo"]

# Largest context UnifiedLLM takes from a model by default (a model trained on 128k tokens would
# otherwise allocate a KV cache of many GiB); pass n_ctx to choose another size.
MAX_DEFAULT_N_CTX = 32768

_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")


class UnifiedLLM(Llama):
    """A :class:`Llama` that chats correctly with every major model family.

    ``UnifiedLLM(path, config=None, **config_fields)``. ``family`` is the detected
    :class:`ModelFamily`. Generation methods take ``thinking=True|False|None`` (None: the
    model's default); answers and reasoning come apart (``message.content`` and
    ``message.reasoning_content``). Without ``n_ctx`` the context is the model's training
    length (at most 32768 tokens). Sampling arguments left out take the family's
    recommendation (:func:`llama_cpp.families.family_info`).
    """

    def __init__(
        self, model_path: str | os.PathLike[str] | None = None, config: LlamaConfig | None = None, **config_fields: Any
    ) -> None:
        self._n_ctx_given = "n_ctx" in config_fields or (config is not None and config.n_ctx != LlamaConfig.n_ctx)
        super().__init__(model_path, config=config, **config_fields)
        self._family = detect_family(self.metadata, self.chat_template, self.model_path)
        self._view.set_thinking_mode(family_info(self._family).thinking)

    def _context_config(self, config: LlamaConfig) -> LlamaConfig:
        if self._n_ctx_given or config.vocab_only:
            return config
        return replace(config, n_ctx=min(self._view.n_ctx_train(), MAX_DEFAULT_N_CTX))

    @property
    def family(self) -> ModelFamily:
        """The model's family, detected from the GGUF (architecture, name, chat template,
        tokenizer; the file name only as a fallback)."""
        return self._family

    @property
    def family_info(self) -> FamilyInfo:
        """The family's recommended sampling and where it comes from."""
        return family_info(self._family)

    @property
    def thinking_mode(self) -> str:
        """``"hybrid"`` (``thinking`` turns reasoning on and off), ``"always"`` (the model
        always reasons; ``thinking=False`` is refused) or ``"none"`` (``thinking=True`` is
        refused)."""
        return self._view.thinking_mode("UnifiedLLM.thinking_mode")

    def recommended_sampling(self, thinking: bool | None = None) -> SamplingParams:
        """The family's recommended sampling (for a hybrid model, the thinking or the
        non-thinking settings); the library's defaults when the family publishes none."""
        info = self.family_info
        if thinking is False and info.sampling_no_think is not None:
            return info.sampling_no_think
        return info.sampling or SamplingParams()

    def kv_cache_clear(self) -> None:
        """Empties the KV cache: the next call starts from nothing (the same as ``reset()``)."""
        self.reset()

    # ---- a prompt as a user's turn -------------------------------------------------------------

    def _chat_job(self, api: str, prompt: str | Sequence[dict[str, Any]], thinking: bool | None,
                  max_tokens: int | None, sampling: SamplingParams | None, stop: str | Sequence[str] | None,
                  grammar: LlamaGrammar | None) -> tuple[Any, RenderedChat]:
        if isinstance(prompt, str):
            messages: Sequence[dict[str, Any]] = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, Sequence) and not isinstance(prompt, (bytes, str)) and \
                all(isinstance(m, dict) for m in prompt):
            messages = prompt
        else:
            raise ValidationError(f"[UnifiedLLM.{api}] prompt must be a str (the user's turn) or a list of "
                                  f"OpenAI message dicts, got {type(prompt).__name__}")
        if not messages:
            raise ValidationError(f"[UnifiedLLM.{api}] prompt is an empty list of messages")
        stops = stop_list(f"UnifiedLLM.{api}", stop)
        rendered = _chat.render(f"UnifiedLLM.{api}", self._view, messages, thinking=thinking)
        if sampling is None:
            sampling = self.recommended_sampling(thinking)
        stops = list(rendered.stops) + stops
        job = self._prepare(api, rendered.prompt, max_tokens, sampling, stops, True, grammar, chat=rendered)
        return job, rendered

    def generate(  # type: ignore[override]
        self,
        prompt: str | Sequence[dict[str, Any]],
        thinking: bool | None = None,
        max_tokens: int | None = None,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> str:
        """The model's answer to ``prompt`` (the user's turn, or a list of messages), through
        the chat template. Reasoning is left out of the answer (use
        :meth:`create_chat_completion` to read it). ``max_tokens=None``: until the model ends
        its turn or the context is full. ``sampling=None``: the family's recommendation."""
        job, rendered = self._chat_job("generate", prompt, thinking, max_tokens, sampling, stop, grammar)
        result = job.run(None)
        return _answer(rendered, result)

    def generate_stream(  # type: ignore[override]
        self,
        prompt: str | Sequence[dict[str, Any]],
        thinking: bool | None = None,
        max_tokens: int | None = None,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> Iterator[str]:
        """Like :meth:`generate`, yielding the answer's text as it is decoded (reasoning is
        decoded but not yielded). Leaving the loop early stops decoding within one token."""
        job, rendered = self._chat_job("generate_stream", prompt, thinking, max_tokens, sampling, stop, grammar)
        return _answer_pieces(job.stream(), rendered.replies)

    async def generate_async(  # type: ignore[override]
        self,
        prompt: str | Sequence[dict[str, Any]],
        thinking: bool | None = None,
        max_tokens: int | None = None,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        grammar: LlamaGrammar | None = None,
    ) -> str | AsyncIterator[str]:
        """Async :meth:`generate`; with ``stream=True`` an async iterator of answer pieces."""
        require_bool("UnifiedLLM.generate_async", "stream", stream)
        if stream:
            pieces = self.generate_stream(prompt, thinking, max_tokens, sampling=sampling, stop=stop, grammar=grammar)
            return AsyncStream(lambda: pieces)
        job, rendered = self._chat_job("generate_async", prompt, thinking, max_tokens, sampling, stop, grammar)
        result = await run_cancellable(job.run)
        return _answer(rendered, result)

    def create_chat_completion(
        self, messages: Sequence[dict[str, Any]], **kwargs: Unpack[ChatArgs]
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """:meth:`Llama.create_chat_completion` with the family's recommended sampling for any
        of temperature, top_p, top_k, min_p and repeat_penalty left out. ``tools``,
        ``tool_choice`` and ``thinking`` as there."""
        recommended = self.recommended_sampling(kwargs.get("thinking"))
        for key in _SAMPLING_KEYS:
            if key not in kwargs:
                kwargs[key] = getattr(recommended, key)  # type: ignore[literal-required]
        return super().create_chat_completion(messages, **kwargs)

    def __repr__(self) -> str:
        return f"UnifiedLLM({self.model_path!r}, family={self._family.name})"


def _answer(rendered: RenderedChat, result: _core.GenerationResult) -> str:
    """The answer of a finished reply (its reasoning and tool calls left out)."""
    return str(rendered.replies.parse(str(result.text)).get("content") or "")


def _answer_pieces(stream: Any, replies: ReplyParser) -> Iterator[str]:
    """The content deltas of a streamed reply (reasoning and tool calls are not yielded)."""
    deltas = replies.stream()
    with stream:
        for piece in stream:
            for delta in deltas.feed(piece):
                if "content" in delta:
                    yield delta["content"]
        for delta in deltas.finish()[0]:
            if "content" in delta:
                yield delta["content"]
