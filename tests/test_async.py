"""Async twins: same results as the sync API, the event loop stays responsive, early exit
and cancellation stop decoding, and calls on one instance are serialised."""

from __future__ import annotations

import asyncio

import pytest

from conftest import EMBEDDING_TOLERANCE, assert_decoding_stopped
from llama_cpp import Llama, SamplingParams, ValidationError

GREEDY = SamplingParams(temperature=0.0)
PROMPT = "Once upon a time"


def run(coro):
    return asyncio.run(coro)


def test_generate_async_equals_generate(smollm2):
    expected = smollm2.generate(PROMPT, max_tokens=24, sampling=GREEDY)
    assert run(smollm2.generate_async(PROMPT, max_tokens=24, sampling=GREEDY)) == expected


def test_async_stream_equals_generate(smollm2):
    expected = smollm2.generate(PROMPT, max_tokens=24, sampling=GREEDY)

    async def collect():
        stream = await smollm2.generate_async(PROMPT, max_tokens=24, sampling=GREEDY, stream=True)
        return [piece async for piece in stream]

    pieces = run(collect())
    assert len(pieces) > 3 and "".join(pieces) == expected


def test_event_loop_stays_responsive(smollm2):
    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await smollm2.generate_async("Tell me a story", max_tokens=64, sampling=GREEDY)
        done.set()
        await task
        return ticks

    assert run(main()) > 10


def test_concurrent_calls_are_serialised(smollm2):
    prompts = ["The capital of France is", "Once upon a time", "def add(a, b):"]
    expected = [smollm2.generate(p, max_tokens=12, sampling=GREEDY) for p in prompts]

    async def main():
        return await asyncio.gather(*(smollm2.generate_async(p, max_tokens=12, sampling=GREEDY) for p in prompts))

    assert run(main()) == expected


def test_early_exit_stops_decoding(smollm2):
    async def main():
        smollm2.perf_reset()
        stream = await smollm2.generate_async("Tell me a long story", max_tokens=400, sampling=GREEDY, stream=True)
        async for i, _ in _enumerate(stream):
            if i == 2:
                break
        await stream.aclose()

    run(main())
    assert_decoding_stopped(smollm2, below=10)
    assert smollm2.generate("Hello", max_tokens=2, sampling=GREEDY)


async def _enumerate(stream):
    i = 0
    async for item in stream:
        yield i, item
        i += 1


def test_cancelling_the_consumer_task(smollm2):
    async def main():
        smollm2.perf_reset()
        stream = await smollm2.generate_async("Tell me a long story", max_tokens=400, sampling=GREEDY, stream=True)
        started = asyncio.Event()

        async def consume():
            async for _ in stream:
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled task closed the stream before it ended: decoding has already stopped.
        assert_decoding_stopped(smollm2, below=50)  # of 400

    run(main())
    assert smollm2.generate("Hello", max_tokens=2, sampling=GREEDY)


def test_chat_async_and_streaming(smollm2):
    messages = [{"role": "user", "content": "Say hello."}]
    expected = smollm2.create_chat_completion(messages, max_tokens=12, temperature=0)

    async def main():
        out = await smollm2.create_chat_completion_async(messages, max_tokens=12, temperature=0)
        chunks = [c async for c in await smollm2.create_chat_completion_async(
            messages, max_tokens=12, temperature=0, stream=True)]
        return out, chunks

    out, chunks = run(main())
    assert out["choices"][0]["message"] == expected["choices"][0]["message"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == expected["choices"][0]["message"]["content"]


def test_completion_async(smollm2):
    out = run(smollm2.create_completion_async("The capital of France is", max_tokens=6, temperature=0))
    assert out["object"] == "text_completion"


def test_embedding_async(smollm2_path):
    with Llama(smollm2_path, embeddings=True, n_ctx=512, n_threads=2) as llm:
        out = run(llm.create_embedding_async(["a", "b"]))
        assert len(out["data"]) == 2
        assert out["data"][0]["embedding"] == pytest.approx(llm.embed("a"), abs=EMBEDDING_TOLERANCE)


def test_errors_surface_in_async(smollm2):
    with pytest.raises(ValidationError, match="max_tokens=0"):
        run(smollm2.generate_async("Hi", max_tokens=0))

    async def stream_error():
        bad = SamplingParams(logit_bias={smollm2.n_vocab() + 1: 1.0})
        stream = await smollm2.generate_async("Hi", max_tokens=4, sampling=bad, stream=True)
        return [p async for p in stream]

    with pytest.raises(ValidationError, match="logit_bias"):
        run(stream_error())
