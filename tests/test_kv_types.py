"""KV cache types (issue 15): LlamaConfig(type_k=..., type_v=...) as llama.cpp offers them."""

from __future__ import annotations

import asyncio

import pytest

from llama_cpp import Llama, LlamaConfig, LlamaPool, SamplingParams, ValidationError, _core

GREEDY = SamplingParams(temperature=0.0)
PROMPT = "The three primary colours are"


def state_bytes_per_token(llm: Llama) -> float:
    """Measured: the growth of sequence 0's saved KV state from 16 to 48 cached tokens."""
    sizes = []
    for n in (16, 48):
        llm.generate(list(range(100, 100 + n)), max_tokens=1, reset_kv_cache=True)  # caches the n prompt tokens
        sizes.append(_core.testing.sequence_state_bytes(llm._context, 0))
    return (sizes[1] - sizes[0]) / 32


def test_names_and_ggml_numbers_are_accepted():
    assert LlamaConfig(type_k="q8_0", type_v="q4_0").type_v == "q4_0"
    assert LlamaConfig(type_k=8, type_v=2) == LlamaConfig(type_k="q8_0", type_v="q4_0")  # llama-cpp-python's ints
    for bad in ("q3_k", "F16", 99, 1.0, True):
        with pytest.raises(ValidationError, match="type_k must be one of f32, f16"):
            LlamaConfig(type_k=bad)
    with pytest.raises(ValidationError, match="needs flash attention"):
        LlamaConfig(type_v="q8_0", flash_attn=False)
    LlamaConfig(type_k="q8_0", flash_attn=False)  # a quantized K cache alone does not


def test_memory_per_token_follows_the_types(smollm2_path):
    measured = {}
    for kind in ("f16", "q8_0", "q4_0"):
        with Llama(smollm2_path, n_ctx=256, n_threads=2, type_k=kind, type_v=kind, flash_attn=True) as llm:
            measured[kind] = state_bytes_per_token(llm)
    # SmolLM2-135M: 30 layers, K and V of 3 heads x 64 = 192 values each per token.
    values = 30 * 2 * 192
    kv = {"f16": values * 2, "q8_0": values * 34 / 32, "q4_0": values * 18 / 32}  # 34 and 18 bytes per 32
    # The saved state also keeps each cell's position and sequence ids: the same few bytes for all.
    bookkeeping = {kind: measured[kind] - kv[kind] for kind in kv}
    assert len(set(bookkeeping.values())) == 1 and 0 <= bookkeeping["f16"] <= 16, measured


def test_q8_0_cache_generates_what_f16_does(smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_threads=2, flash_attn=True) as llm:
        f16 = llm.generate(PROMPT, max_tokens=24, sampling=GREEDY)
    with Llama(smollm2_path, n_ctx=256, n_threads=2, type_k="q8_0", type_v="q8_0") as llm:
        q8 = llm.generate(PROMPT, max_tokens=24, sampling=GREEDY)
    # Close, not necessarily equal: the first words are the same.
    assert len(f16.split()) >= 6 and f16.split()[:6] == q8.split()[:6], (f16, q8)


def test_pool_takes_cache_types(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=256, n_threads=2, type_k="q8_0", type_v="q8_0") as pool:
        assert pool.config.type_k == "q8_0"
        out = asyncio.run(pool.generate(PROMPT, max_tokens=8, sampling=GREEDY))
    assert out.strip()
