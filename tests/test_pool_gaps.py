"""LlamaPool with gaps between the sequences it decodes at once. Each sequence has a KV stream of
its own, and llama.cpp decodes only sequences with consecutive ids in one pass over the weights;
an idle sequence between two busy ones gets a padding token (decoded after what it holds, then
dropped) where that is cheaper than another pass. On a GPU it always is (measured: 64 sequences
with every other one idle decoded 11x faster padded); on a CPU batches cost about their tokens,
so padding is off there by default and these tests turn it on through ``_core.testing``: what
they check is that padding never changes an answer and that it happens."""

from __future__ import annotations

import asyncio

import pytest

from conftest import GPU_RUN, cpu_numerics
from llama_cpp import LlamaPool, SamplingParams, _core
from test_prefix_sharing import PROMPTS as SHARED  # a system prompt and questions whose answers hold

GREEDY = SamplingParams(temperature=0.0)
PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three laws of robotics"]


def set_padding(pool: LlamaPool, ratio: float) -> None:
    for replica in pool._replicas:
        _core.testing.set_pad_ratio(replica._context, ratio)


async def uneven(pool: LlamaPool) -> list[str]:
    """Four requests queued in order (``submit``), so they get sequences 0-3 (all free, no
    shared prefixes); 1 and 3 stop after 3 tokens, so the steps after that decode sequences 0
    and 2 with 1 idle between them. The same batch shapes every time: only padding differs."""
    jobs = [pool.submit(p, max_tokens=24 if i % 2 == 0 else 3, sampling=GREEDY) for i, p in enumerate(PROMPTS)]
    return [await asyncio.wrap_future(job) for job in jobs]


@pytest.fixture
def pool(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=4, n_ctx=256, n_threads=2, share_prefixes=False) as p:
        yield p


@cpu_numerics
def test_idle_sequences_between_busy_ones_are_padded_without_changing_answers(pool):
    set_padding(pool, 0)
    pool.perf_reset()
    unpadded = asyncio.run(uneven(pool))
    assert pool.perf()["n_pad_tokens"] == 0

    set_padding(pool, 1000)
    pool.perf_reset()
    padded = asyncio.run(uneven(pool))
    # Sequence 1 was padded in every step after it stopped (about 20 of them).
    assert pool.perf()["n_pad_tokens"] >= 15
    assert padded == unpadded
    assert all(padded) and len(padded[0]) > len(padded[1])
    # Padding leaves nothing behind: each request alone gives the same text.
    alone = [asyncio.run(pool.generate(p, max_tokens=24 if i % 2 == 0 else 3, sampling=GREEDY))
             for i, p in enumerate(PROMPTS)]
    assert alone == padded


@cpu_numerics
def test_prompts_admitted_into_scattered_sequences_are_padded_to_one_pass(smollm2_path):
    prompts = SHARED
    with LlamaPool(smollm2_path, pool_size=4, n_ctx=256, n_threads=2, share_prefixes=True) as pool:
        first = asyncio.run(pool.generate_batch(prompts, max_tokens=10, sampling=GREEDY))
        assert all(first)
        # Which sequence holds which prompt (the requests of a batch reach the scheduler in any order).
        context = pool._replicas[0]._context
        holds = {}
        for seq in range(4):
            cached = list(context.cached_tokens(seq))
            holds[seq] = next(k for k, p in enumerate(prompts) if cached[:len(pool.llama.tokenize(p))] == pool.llama.tokenize(p))
        set_padding(pool, 1000)
        pool.perf_reset()
        # Two prompts back to the sequences holding them whole, 0 and 2 with 1 idle between.
        # Admitted together for sure through the engine itself (the scheduler is idle), one
        # token each: that token comes from the prefill, so any padding is the prefill's.
        engine = pool._replicas[0].engine("test")
        chosen = [holds[2], holds[0]]
        _, outcomes = engine.add_many([pool._request("submit", prompts[k], 1, GREEDY, None, None) for k in chosen])
        assert [event.slot for event in outcomes] == [2, 0] and all(event.finished for event in outcomes)
        assert pool.perf()["n_pad_tokens"] >= 1
        again = asyncio.run(pool.generate_batch([prompts[k] for k in chosen], max_tokens=10, sampling=GREEDY))
        assert again == [first[k] for k in chosen]
        idle = holds[1]
        # The idle sequence's cells are intact: its own prompt still gets the same answer.
        assert asyncio.run(pool.generate(prompts[idle], max_tokens=10, sampling=GREEDY)) == first[idle]


def test_padding_by_default_only_where_the_whole_model_is_on_a_gpu(pool):
    pool.perf_reset()
    asyncio.run(uneven(pool))
    assert (pool.perf()["n_pad_tokens"] > 0) == GPU_RUN


@cpu_numerics
def test_padding_with_a_sliding_window_cache(gemma3_path):
    # Gemma 3 keeps two caches (full and sliding-window attention), each a stream per sequence.
    with LlamaPool(gemma3_path, pool_size=4, n_ctx=256, n_threads=2) as pool:
        assert not pool.share_prefixes  # sliding-window attention: every prompt decoded whole
        set_padding(pool, 0)
        unpadded = asyncio.run(uneven(pool))
        set_padding(pool, 1000)
        pool.perf_reset()
        padded = asyncio.run(uneven(pool))
        assert pool.perf()["n_pad_tokens"] >= 15
        # Gemma's greedy answer to the first prompt has a near-tie ("the capital of the country"
        # or "the largest city") that the admission grouping alone flips from run to run, padded
        # or not: the answers are compared where they are clear.
        assert all(padded) and padded[1::2] == unpadded[1::2]
        assert [t[:40] for t in padded[::2]] == [t[:40] for t in unpadded[::2]]
