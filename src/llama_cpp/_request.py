"""One request path: validation of a generation's arguments and the ``_core.GenerationRequest``
built from them, shared by ``Llama``, its async twins and ``LlamaPool``. Works on the model's
own handles (its ``_core.Model`` and the context's n_ctx per sequence), never on a ``Llama``."""

from __future__ import annotations

from collections.abc import Sequence

from . import _core
from ._errors import api_errors
from ._replies import RenderedChat
from ._validate import INT32_MAX, prompt_tokens_or_text, require_int, stop_list
from .config import KV_CACHE_TYPES, POOLING_TYPES, SPLIT_MODES, LlamaConfig
from .errors import ValidationError
from .grammar import LlamaGrammar
from .sampling import SamplingParams

_SAMPLER_FIELDS = (
    "temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "penalty_last_n",
    "frequency_penalty", "presence_penalty", "mirostat", "mirostat_tau", "mirostat_eta",
    "xtc_probability", "xtc_threshold", "top_n_sigma", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "min_keep",
)


def sampler_config(sampling: SamplingParams, default_seed: int | None) -> _core.SamplingConfig:
    """``sampling`` as C++ takes it; a seed of ``None`` falls back to ``default_seed``."""
    config = _core.SamplingConfig()
    for name in _SAMPLER_FIELDS:
        setattr(config, name, getattr(sampling, name))
    config.dry_sequence_breakers = list(sampling.dry_sequence_breakers)
    config.logit_bias = [(int(t), float(b)) for t, b in (sampling.logit_bias or {}).items()]
    seed = sampling.seed if sampling.seed is not None else default_seed
    config.seed = _core.LLAMA_DEFAULT_SEED if seed is None or seed == -1 else seed
    return config


def model_params(config: LlamaConfig) -> _core.ModelParams:
    params = _core.ModelParams()
    params.path = str(config.model_path or "")
    params.n_gpu_layers = min(config.n_gpu_layers, INT32_MAX)  # more layers than the model has: all
    params.vocab_only = config.vocab_only
    params.use_mmap = config.use_mmap
    placement = _core.Placement()
    placement.split_mode = -1 if config.split_mode is None else SPLIT_MODES[config.split_mode]
    placement.main_gpu = config.main_gpu
    placement.tensor_split = list(config.tensor_split or [])
    placement.devices = [str(d) for d in config.devices or []]  # an index travels as its digits
    placement.rpc_servers = list(config.rpc_servers or [])
    params.placement = placement
    return params


def context_params(config: LlamaConfig) -> _core.ContextParams:
    params = _core.ContextParams()
    params.n_ctx = config.n_ctx
    params.n_batch = config.n_batch
    params.n_ubatch = config.n_ubatch
    params.n_seq_max = config.n_seq_max
    params.n_threads = config.n_threads or 0
    params.n_threads_batch = config.n_threads_batch or 0
    params.offload_kqv = config.offload_kqv
    params.embeddings = config.embeddings
    params.flash_attn = -1 if config.flash_attn is None else int(config.flash_attn)
    params.cpu_poll = -1 if config.cpu_poll is None else config.cpu_poll
    params.pooling_type = -1 if config.pooling_type is None else POOLING_TYPES[config.pooling_type]
    params.type_k = -1 if config.type_k is None else KV_CACHE_TYPES[config.type_k]
    params.type_v = -1 if config.type_v is None else KV_CACHE_TYPES[config.type_v]
    return params


def build(
    api: str,
    model: _core.Model,
    n_ctx_seq: int,
    default_seed: int | None,
    prompt: str | Sequence[int],
    max_tokens: int | None,
    sampling: SamplingParams | None,
    stop: str | Sequence[str] | None,
    grammar: LlamaGrammar | None,
    *,
    logprobs: int = -1,
    chat: RenderedChat | None = None,
) -> _core.GenerationRequest:
    """Validates a generation request and turns it into what C++ takes; errors name ``api``
    (``Llama.generate``). ``n_ctx_seq`` is the context of one sequence. ``chat``: the rendered
    chat request, whose tool-call grammar and marker tokens the generation uses."""
    if max_tokens is not None:
        # More than int32 tokens is no limit at all: the context ends generation first.
        max_tokens = min(require_int(api, "max_tokens", max_tokens, minimum=1), INT32_MAX)
    if sampling is None:
        sampling = SamplingParams()
    elif not isinstance(sampling, SamplingParams):
        raise ValidationError(f"[{api}] sampling must be a SamplingParams, got {type(sampling).__name__}")
    if grammar is not None and not isinstance(grammar, LlamaGrammar):
        raise ValidationError(f"[{api}] grammar must be a LlamaGrammar, got {type(grammar).__name__}")
    stops = stop_list(api, stop)
    prompt = prompt_tokens_or_text(api, prompt, int(model.n_vocab))
    if isinstance(prompt, str):
        with api_errors(api):
            tokens = list(model.tokenize(prompt, True, True))
    else:
        tokens = prompt
    if not tokens:
        raise ValidationError(f"[{api}] the prompt is empty")
    if len(tokens) >= n_ctx_seq:
        raise ValidationError(
            f"[{api}] the prompt has {len(tokens)} tokens but the context holds n_ctx={n_ctx_seq} "
            "(and needs room for at least one generated token)"
        )
    native = sampler_config(sampling, default_seed)
    if grammar is not None:
        native.grammar = grammar.gbnf
        native.grammar_root = grammar.root
    elif chat is not None and chat.grammar:
        native.grammar = chat.grammar
        native.grammar_lazy = chat.grammar_lazy
        native.grammar_trigger_patterns = list(chat.grammar_trigger_patterns)
        native.grammar_trigger_tokens = list(chat.grammar_trigger_tokens)
        native.grammar_prefill = list(chat.grammar_prefill)
    request = _core.GenerationRequest()
    if chat is not None:
        request.text_tokens = list(chat.text_tokens)
    request.prompt = tokens
    request.max_tokens = max_tokens or 0
    request.sampling = native
    request.stop = stops
    request.logprobs = logprobs
    return request
