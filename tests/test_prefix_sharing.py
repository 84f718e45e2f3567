"""LlamaPool's shared prompt prefixes (issue 15): a request that starts with tokens another
sequence holds gets those KV cells copied instead of decoding them again, with the same answers."""

from __future__ import annotations

import asyncio

import pytest

from conftest import cpu_numerics
from llama_cpp import Llama, LlamaPool, SamplingParams

GREEDY = SamplingParams(temperature=0.0)
SYSTEM = ("You are the help desk of a small public library. The library opens at nine and closes at six, "
          "except on Sundays, when it is closed. Members may borrow up to five books for three weeks, and "
          "renew each loan twice. Late books cost ten cents a day. Answer in one short sentence.\n")
# Questions whose greedy answers hold across batch shapes on the CPU (a reused prefix decodes the
# rest of a prompt in a different shape; near-tied answers would flip with it). The first answer
# repeats facts of the system prompt, so a wrong copy of its cells would show.
QUESTIONS = ["When does the library open?", "Is the library open on Sunday?", "Is the library open at night?",
             "Is the library open on Saturday?"]
PROMPTS = [f"{SYSTEM}Question: {q}\nAnswer:" for q in QUESTIONS]


def run(coro):
    return asyncio.run(coro)


async def streamed(pool: LlamaPool, prompt: str, max_tokens: int = 10) -> tuple[str, int]:
    """The text of one streamed request and its prompt tokens served from the cache."""
    stream = pool.generate_stream(prompt, max_tokens=max_tokens, sampling=GREEDY)
    text = "".join([piece async for piece in stream])
    return text, int(stream.result.n_reused_tokens)


async def batch(pool: LlamaPool, prompts: list[str]) -> list[tuple[str, int]]:
    return await asyncio.gather(*(streamed(pool, p) for p in prompts))


@pytest.fixture(scope="module")
def expected(smollm2_path):
    """Each prompt alone, whole, in a plain Llama."""
    with Llama(smollm2_path, n_ctx=512, n_threads=2) as llm:
        return [llm.generate(p, max_tokens=10, sampling=GREEDY, reset_kv_cache=True) for p in PROMPTS]


@pytest.fixture(scope="module")
def system_tokens(smollm2_path):
    with Llama(smollm2_path, vocab_only=True) as llm:
        return llm.n_tokens(SYSTEM)


def test_on_by_default_and_can_be_turned_off(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=256, n_threads=2) as pool:
        assert pool.share_prefixes is True
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=256, n_threads=2, share_prefixes=False) as pool:
        assert pool.share_prefixes is False
        first = run(streamed(pool, PROMPTS[0]))
        again = run(streamed(pool, PROMPTS[0]))
        assert first[1] == again[1] == 0 and first[0] == again[0]


def test_sliding_window_models_decode_every_prompt_whole(gemma3_path):
    # Gemma 3 attends through a sliding window: its cache cannot continue from a copied prefix.
    with LlamaPool(gemma3_path, pool_size=2, n_ctx=256, n_threads=2) as pool:
        assert pool.share_prefixes is False
        run(streamed(pool, "Hello there, how are you?", max_tokens=2))
        assert run(streamed(pool, "Hello there, how are you?", max_tokens=2))[1] == 0


@cpu_numerics
def test_requests_admitted_together_decode_the_shared_prompt_once(smollm2_path, expected, system_tokens):
    with LlamaPool(smollm2_path, pool_size=4, n_ctx=512, n_threads=2) as pool:
        got = run(pool.generate_batch(PROMPTS, max_tokens=10, sampling=GREEDY))
        assert got == expected
    with LlamaPool(smollm2_path, pool_size=4, n_ctx=512, n_threads=2) as pool:
        results = run(batch(pool, PROMPTS))
    assert [text for text, _ in results] == expected
    reused = sorted(n for _, n in results)
    # Admitted in one group or in several, the first decodes the system prompt, the others copy it.
    assert reused[0] == 0 and all(n >= system_tokens - 1 for n in reused[1:]), reused


@cpu_numerics
def test_a_later_request_reuses_a_finished_one(smollm2_path, expected):
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=512, n_threads=2) as pool:
        n_prompt = pool.llama.n_tokens(PROMPTS[1])
        assert run(streamed(pool, PROMPTS[1])) == (expected[1], 0)
        # The same prompt again: all of it but the last token comes from the finished sequence's cells.
        assert run(streamed(pool, PROMPTS[1])) == (expected[1], n_prompt - 1)
        text, reused = run(streamed(pool, PROMPTS[2]))
        assert text == expected[2] and reused >= pool.llama.n_tokens(SYSTEM) - 1


@cpu_numerics
def test_a_request_copies_the_prefix_of_one_still_running(smollm2_path, expected, system_tokens):
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=512, n_threads=2) as pool:
        async def main():
            first = pool.generate_stream(PROMPTS[0], max_tokens=60, sampling=GREEDY)
            pieces = first.__aiter__()
            await pieces.__anext__()  # the first request is decoding: its cells hold the system prompt
            second = await streamed(pool, PROMPTS[3])
            await pieces.aclose()
            return second

        text, reused = run(main())
    assert text == expected[3] and reused >= system_tokens - 1


def test_chat_usage_reports_cached_tokens(smollm2_path):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=512, n_threads=2) as pool:
        first = run(pool.create_chat_completion(messages, max_tokens=4, temperature=0))
        second = run(pool.create_chat_completion(messages, max_tokens=4, temperature=0))
    assert first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second["usage"]["prompt_tokens_details"] == {"cached_tokens": second["usage"]["prompt_tokens"] - 1}
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
