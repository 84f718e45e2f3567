"""LlamaPool with replicas: several copies of the model, each request routed to the least-loaded
one. On this CPU machine the replicas are copies in RAM; the same code places them on GPUs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import llama_cpp
from conftest import cpu_numerics
from llama_cpp import LlamaConfig, LlamaError, LlamaPool, SamplingParams, ValidationError

GREEDY = SamplingParams(temperature=0.0)
# Greedy, and never the end-of-text tokens: a request that runs until it is cancelled.
NEVER_END = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
PROMPTS = [  # test_pool.py's: the same greedy answer in any batch shape on the CPU
    "The capital of France is", "Once upon a time", "def fibonacci(n):", "The three laws of robotics",
    "My favourite recipe is", "In the year 2050,", "The best way to learn Python", "Dear diary, today",
]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))  # a routing bug would otherwise hang


async def until(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def scheduler_threads() -> int:
    return sum(t.name.startswith("llama-cpp-pool") for t in threading.enumerate())


@pytest.fixture(scope="module")
def replicated(smollm2_path):
    # Without prefix sharing, the tokens decoded do not depend on which replica held which prompt.
    with LlamaPool(smollm2_path, pool_size=2, replicas=2, n_ctx=256, n_threads=1, share_prefixes=False,
                   sampling_threads=1) as pool:
        yield pool


@cpu_numerics
def test_replicas_give_the_answers_of_one(replicated, smollm2_path):
    assert replicated.replicas == 2 and replicated.pool_size == 2 and replicated.n_ctx == 256
    replicated.perf_reset()
    got = run(replicated.generate_batch(PROMPTS, max_tokens=12, sampling=GREEDY))
    replicated_perf = replicated.perf()
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=256, n_threads=1, share_prefixes=False) as single:
        assert single.replicas == 1 and len(single.replica_loads) == 1
        expected = run(single.generate_batch(PROMPTS, max_tokens=12, sampling=GREEDY))
        single_perf = single.perf()
    assert got == expected and all(got)
    # perf() sums the replicas' counters: about as many tokens decoded as by one pool, not half
    # (llama.cpp counts a batch of one token in n_eval, a larger one in n_prompt_eval, so only
    # the sum compares; it varied by a token or two between runs of the same requests).
    def decoded(perf):
        return perf["n_prompt_eval"] + perf["n_eval"]

    assert decoded(single_perf) > 8 * 11
    assert abs(decoded(replicated_perf) - decoded(single_perf)) <= len(PROMPTS)


def test_two_long_requests_run_on_different_replicas(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=1, replicas=2, n_ctx=512, n_threads=1) as pool:

        async def main():
            tasks = [asyncio.create_task(pool.generate(p, max_tokens=None, sampling=NEVER_END)) for p in PROMPTS[:2]]
            await until(lambda: pool.active == 2)
            assert pool.replica_loads == [(1, 0), (1, 0)] and pool.waiting == 0
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await until(lambda: pool.active == 0)

        run(main())


def test_a_burst_spreads_evenly(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=1, replicas=2, n_ctx=512, n_threads=1) as pool:
        futures = [pool.submit(p, max_tokens=None, sampling=NEVER_END) for p in PROMPTS]
        deadline = time.monotonic() + 30
        while pool.active < 2:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert pool.replica_loads == [(1, 3), (1, 3)]
        assert pool.active == 2 and pool.waiting == 6
        pool.close()
    for future in futures:
        with pytest.raises(LlamaError, match="closed"):
            future.result(timeout=30)


def test_streams_and_chat_through_replicas(replicated):
    messages = [{"role": "user", "content": "Name a colour."}]

    async def main():
        pieces = [p async for p in replicated.generate_stream(PROMPTS[0], max_tokens=12, sampling=GREEDY)]
        whole = await replicated.generate(PROMPTS[0], max_tokens=12, sampling=GREEDY)
        chunks = [c async for c in await replicated.create_chat_completion(messages, max_tokens=8, temperature=0,
                                                                            stream=True)]
        reply = await replicated.create_chat_completion(messages, max_tokens=8, temperature=0)
        batch = await replicated.create_chat_completion_batch([messages, messages], max_tokens=8, temperature=0)
        return pieces, whole, chunks, reply, batch

    pieces, whole, chunks, reply, batch = run(main())
    assert len(pieces) > 1 and "".join(pieces) == whole
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text and text == reply["choices"][0]["message"]["content"]
    assert [b["choices"][0]["message"]["content"] for b in batch] == [text, text]
    assert replicated.llama.n_vocab() > 0 and not replicated.share_prefixes and replicated.sampling_threads == 1


def test_leaving_a_stream_frees_its_replica(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=1, replicas=2, n_ctx=512, n_threads=1) as pool:

        async def main():
            busy = asyncio.create_task(pool.generate(PROMPTS[0], max_tokens=None, sampling=NEVER_END))
            await until(lambda: pool.replica_loads == [(1, 0), (0, 0)])
            got = []
            async for piece in pool.generate_stream(PROMPTS[1], max_tokens=None, sampling=NEVER_END):
                got.append(piece)
                if len(got) == 2:
                    break
            # The stream's replica is free again; the other request still runs on its own.
            await until(lambda: pool.replica_loads == [(1, 0), (0, 0)])
            nxt = await pool.generate(PROMPTS[2], max_tokens=4, sampling=GREEDY)  # served by the free one
            busy.cancel()
            with pytest.raises(asyncio.CancelledError):
                await busy
            return nxt

        assert run(main())


def test_close_fails_running_requests_without_hanging(smollm2_path):
    before = scheduler_threads()
    pool = LlamaPool(smollm2_path, pool_size=1, replicas=2, n_ctx=512, n_threads=1)
    assert scheduler_threads() == before + 2

    async def main():
        tasks = [asyncio.create_task(pool.generate(p, max_tokens=None, sampling=NEVER_END)) for p in PROMPTS[:3]]
        await until(lambda: pool.active == 2)
        await asyncio.get_running_loop().run_in_executor(None, pool.close)
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    outcomes = run(main())
    assert all(isinstance(o, LlamaError) and "the pool was closed" in str(o) for o in outcomes), outcomes
    assert scheduler_threads() == before
    assert pool.replica_loads == [(0, 0), (0, 0)]
    pool.close()
    with pytest.raises(LlamaError, match=r"\[LlamaPool.submit\] the pool is closed"):
        pool.submit("Hello")


def test_a_replica_that_fails_to_load_closes_the_others(smollm2_path):
    loads = []

    def progress(fraction):
        if fraction == 0.0:
            loads.append(fraction)
            if len(loads) == 3:
                raise RuntimeError("the third replica refused to load")

    before = scheduler_threads()
    with pytest.raises(RuntimeError, match="third replica"):
        LlamaPool(smollm2_path, pool_size=1, replicas=3, n_ctx=256, n_threads=1, progress_callback=progress)
    assert len(loads) == 3 and scheduler_threads() == before  # the two loaded replicas stopped


@pytest.mark.parametrize("kwargs, message", [
    (dict(replicas=0), r"\[LlamaPool\] replicas=0 is below the minimum 1"),
    (dict(replicas=65), r"replicas=65 is above the maximum 64"),
    (dict(replicas="2"), r"\[LlamaPool\] replicas must be an int, got '2'"),
    (dict(replicas=True), r"replicas must be an int"),
    (dict(devices=[]), r"\[LlamaPool\] devices must list 1 to 64 devices .*got 0"),
    (dict(devices="CUDA0"), r"devices must be a list of device indices or names, got 'CUDA0'"),
    (dict(devices=[0, 1.5]), r"devices\[1\] must be a device index \(int\) or name \(str\), got 1.5"),
    (dict(devices=[-1]), r"devices\[0\]=-1 is below the minimum 0"),
    (dict(replicas=2, devices=[0]), r"replicas=2 but devices lists 1 device\(s\) \[0\]"),
])
def test_bad_replicas_and_devices(smollm2_path, kwargs, message):
    before = scheduler_threads()
    with pytest.raises(ValidationError, match=message):
        LlamaPool(smollm2_path, pool_size=1, n_ctx=256, **kwargs)
    assert scheduler_threads() == before


def test_a_device_that_does_not_exist_names_those_there_are(smollm2_path):
    gpus = [d for d in llama_cpp.devices() if d.index is not None]
    with pytest.raises(ValidationError, match=rf"^\[LlamaPool\] devices: there is no device {len(gpus)}; ") as raised:
        LlamaPool(smollm2_path, pool_size=1, n_ctx=256, devices=[len(gpus)])
    assert ("(only the CPU)" in str(raised.value)) == (not gpus), raised.value
