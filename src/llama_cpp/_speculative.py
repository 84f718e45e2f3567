"""Speculative decoding of a ``Llama``: the ``_core.Speculator`` its ``LlamaConfig`` asks for,
and its counters as ``Llama.perf()`` shows them. Drafting, verification and acceptance are
C++ (llama.cpp's common speculative code and the decode loop)."""

from __future__ import annotations

from dataclasses import replace

from . import _core
from ._errors import api_errors
from ._model import load
from ._request import context_params
from .config import LlamaConfig
from .errors import LlamaError

# speculative="ngram": llama.cpp's ngram-map-k keeps a map from each NGRAM_SIZE-token key of
# the history (prompt and output) to what followed it and proposes the continuation of the
# last key. On "repeat this text" (benchmarks/bench_speculative.py --type) it accepted more per
# step and decoded faster than ngram-simple (the latest occurrence only) and ngram-mod.
NGRAM_TYPE = "ngram-map-k"
NGRAM_SIZE = 3


def create(config: LlamaConfig, context: _core.Context) -> _core.Speculator | None:
    """The speculator of ``config`` for ``context`` (None when speculation is off); loads the
    draft model, whose errors name ``draft_model``."""
    if config.speculative is None:
        return None
    params = _core.SpeculativeParams()
    params.draft_max = config.draft_max
    params.draft_min = config.draft_min
    draft_params = _core.ContextParams()
    draft: _core.Model | None = None
    if config.speculative == "draft":
        params.type = "draft-simple"
        draft_config = replace(config, model_path=config.draft_model, n_gpu_layers=config.draft_n_gpu_layers,
                               verbose=False, speculative=None, draft_model=None)
        try:
            draft = load(draft_config)
        except LlamaError as exc:
            raise type(exc)(f"[Llama] draft_model: {exc}") from None
        draft_params = context_params(draft_config)
        draft_params.n_seq_max = 1
        draft_params.embeddings = False
        draft_params.pooling_type = -1
    else:
        params.type = NGRAM_TYPE
        params.ngram_size = NGRAM_SIZE
    with api_errors("Llama"):
        return _core.Speculator(context, draft, draft_params, params)


def perf(speculator: _core.Speculator | None) -> dict[str, float]:
    """The speculator's counters for ``Llama.perf()`` (empty when speculation is off)."""
    if speculator is None:
        return {}
    stats = dict(speculator.stats())
    steps = stats["n_spec_steps"]
    # Tokens each target decode produced beyond the one it always produces.
    stats["accepted_per_step"] = stats["n_accepted"] / steps if steps else 0.0
    return stats


def attach(request: _core.GenerationRequest, speculator: _core.Speculator | None) -> None:
    """Makes ``request`` speculate with ``speculator`` (nothing when it is None)."""
    if speculator is not None:
        request.speculator = speculator


def reset(speculator: _core.Speculator | None) -> None:
    """Zeroes the counters ``perf`` reports."""
    if speculator is not None:
        speculator.reset_stats()
