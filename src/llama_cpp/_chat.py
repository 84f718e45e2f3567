"""Chat requests: messages turned into a prompt, stop strings and a grammar through the model's
chat template, and the OpenAI-style arguments into sampler settings. Shared by ``Llama`` and
``LlamaPool``; works on a :class:`ModelView`, never on a ``Llama``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ._arguments import ChatOptions
from ._model import ModelView
from ._openai import chat_messages, grammar_for, token_limit
from ._validate import require_bool, require_int, stop_list
from .grammar import LlamaGrammar
from .sampling import SamplingParams


class ChatRequest(NamedTuple):
    """A validated chat request, ready for :func:`llama_cpp._request.build`."""

    prompt: str
    stops: list[str]
    grammar: LlamaGrammar | None
    max_tokens: int | None
    sampling: SamplingParams
    logprobs: int  # alternatives to record per token; -1: none


def prepare(api: str, view: ModelView, messages: Sequence[dict[str, Any]], options: ChatOptions) -> ChatRequest:
    """The conversation through the chat template (its stop strings added to the caller's),
    the grammar ``grammar`` or ``response_format`` asks for, and the sampler settings."""
    pairs = chat_messages(api, messages)
    grammar = grammar_for(api, options.response_format, options.grammar)
    prompt, template_stops = view.render_chat(api, pairs)
    stops = stop_list(api, options.stop) + template_stops
    require_bool(api, "logprobs", options.logprobs)
    n_logprobs = -1
    if options.logprobs:
        top = options.top_logprobs if options.top_logprobs is not None else 0
        n_logprobs = require_int(api, "top_logprobs", top, minimum=0, maximum=20)
    sampling = SamplingParams(
        temperature=options.temperature, top_p=options.top_p, min_p=options.min_p, typical_p=options.typical_p,
        seed=options.seed, top_k=options.top_k, repeat_penalty=options.repeat_penalty,
        frequency_penalty=options.frequency_penalty, presence_penalty=options.presence_penalty,
        mirostat=options.mirostat_mode, mirostat_tau=options.mirostat_tau, mirostat_eta=options.mirostat_eta,
        logit_bias=options.logit_bias,
    )
    return ChatRequest(prompt, stops, grammar, token_limit(options.max_tokens), sampling, n_logprobs)
