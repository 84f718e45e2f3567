"""LlamaPool: continuous batching over one model and one context, on the real model."""

from __future__ import annotations

import asyncio
import gc

import pytest

from conftest import GPU_RUN, cpu_numerics
from llama_cpp import Llama, LlamaError, LlamaPool, SamplingParams, ValidationError

GREEDY = SamplingParams(temperature=0.0)
PROMPTS = [
    "The capital of France is", "Once upon a time", "def fibonacci(n):", "The three laws of robotics",
    "My favourite recipe is", "In the year 2050,", "The best way to learn Python", "Dear diary, today",
    "A haiku about autumn:", "The mitochondria is", "Ten facts about cats:", "How to build a birdhouse:",
    "The history of Rome", "Why is the sky blue?", "A letter to my future self:", "The rules of chess",
]


@pytest.fixture(scope="module")
def pool(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=16, n_ctx=256, n_threads=2) as p:
        yield p


def run(coro):
    return asyncio.run(coro)


def test_one_copy_of_the_weights_many_sequences(pool):
    assert pool.pool_size == 16
    assert pool.n_ctx == 256  # per request: the context holds 16 * 256


def test_pool_llama_is_a_read_only_view(pool):
    view = pool.llama
    assert view.tokenize("Hello") == view.tokenize("Hello", add_bos=True)
    assert view.detokenize(view.tokenize("Hello", add_bos=False)) == b"Hello"
    assert view.n_vocab() > 0 and view.metadata and view.chat_template
    # It cannot decode or clear the pool's sequences: no Llama over the pool's context.
    request = pool.submit("Once upon a time", max_tokens=24, sampling=GREEDY)
    for name in ("generate", "generate_stream", "create_chat_completion", "reset"):
        with pytest.raises(LlamaError, match=rf"\[LlamaPool.llama.{name}\] this view .*LlamaPool\.[a-z]"):
            getattr(view, name)
    for name in ("get_state", "set_state", "cached_tokens", "load_lora"):
        assert not hasattr(view, name)
    assert request.result() == run(pool.generate("Once upon a time", max_tokens=24, sampling=GREEDY))


@cpu_numerics
def test_same_answer_alone_and_among_fifteen_others(pool):
    alone = [run(pool.generate(p, max_tokens=24, sampling=GREEDY)) for p in PROMPTS]
    together = run(pool.generate_batch(PROMPTS, max_tokens=24, sampling=GREEDY))
    assert together == alone
    assert sum(bool(t) for t in together) >= 12


@cpu_numerics
def test_pool_matches_single_llama(pool, smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_threads=2) as llm:
        expected = [llm.generate(p, max_tokens=16, sampling=GREEDY) for p in PROMPTS[:4]]
    assert run(pool.generate_batch(PROMPTS[:4], max_tokens=16, sampling=GREEDY)) == expected


def test_each_request_keeps_its_own_parameters(pool):
    async def main():
        return await asyncio.gather(
            pool.generate(PROMPTS[0], max_tokens=24, sampling=GREEDY),
            pool.generate(PROMPTS[0], max_tokens=24, sampling=GREEDY, stop=["."]),
            pool.generate(PROMPTS[0], max_tokens=3, sampling=GREEDY),
        )

    full, stopped, short = run(main())
    assert "." not in stopped and full.startswith(stopped)
    assert full.startswith(short) and len(short) < len(full)


@cpu_numerics
def test_each_request_keeps_its_own_seed(pool):
    async def main():
        return await asyncio.gather(
            pool.generate(PROMPTS[0], max_tokens=24, sampling=SamplingParams(temperature=1.0, seed=5)),
            pool.generate(PROMPTS[0], max_tokens=24, sampling=SamplingParams(temperature=1.0, seed=5)),
            pool.generate(PROMPTS[0], max_tokens=24, sampling=SamplingParams(temperature=1.0, seed=6)),
        )

    five_a, five_b, six = run(main())
    assert five_a == five_b
    assert six != five_a


def test_arrival_order_is_served_first(smollm2_path):
    never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
    with LlamaPool(smollm2_path, pool_size=1, n_ctx=256, n_threads=2) as single:
        order: list[int] = []

        async def one(i):
            await single.generate(PROMPTS[i], max_tokens=8, sampling=never_end)
            order.append(i)

        async def main():
            await asyncio.gather(*(one(i) for i in range(5)))

        run(main())
    assert order == [0, 1, 2, 3, 4]


def test_a_request_joins_while_another_is_running(smollm2_path):
    # The scheduler steps in C++ while no request has anything to report; a new request must
    # still be admitted at the next step, not when the running one ends.
    never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=1024, n_threads=2) as pool:
        finished: list[str] = []

        async def request(name, prompt, max_tokens, delay):
            await asyncio.sleep(delay)
            await pool.generate(prompt, max_tokens=max_tokens, sampling=never_end)
            finished.append(name)

        async def main():
            await asyncio.gather(request("long", PROMPTS[0], 400, 0.0), request("short", PROMPTS[1], 4, 0.2))

        run(main())
    assert finished == ["short", "long"]


@cpu_numerics
def test_prompts_admitted_together_share_a_decode(smollm2_path):
    # Three requests admitted at once: two short prompts share one llama_decode, a prompt longer
    # than n_batch is decoded alone in chunks, and one with a prompt too long for its context
    # fails alone. Each answer is what a single Llama gives. (test_a_failing_request_fails_alone
    # covers a request that fails inside the engine.)
    long_prompt = "The history of the Roman Empire, told year by year, begins with " * 4
    prompts = [PROMPTS[0], long_prompt, PROMPTS[1]]
    with Llama(smollm2_path, n_ctx=256, n_batch=32, n_ubatch=32, n_threads=2) as single:
        expected = [single.generate(p, max_tokens=8, sampling=GREEDY) for p in prompts]
    with LlamaPool(smollm2_path, pool_size=4, n_ctx=256, n_batch=32, n_ubatch=32, n_threads=2) as pool:
        assert len(pool.llama.tokenize(long_prompt)) > 32

        async def main():
            return await asyncio.gather(
                *(pool.generate(p, max_tokens=8, sampling=GREEDY) for p in prompts),
                pool.generate("word " * 300, max_tokens=8, sampling=GREEDY),
                return_exceptions=True,
            )

        *answers, too_long = run(main())
        assert answers == expected
        assert isinstance(too_long, ValidationError) and "the prompt has" in str(too_long)
        assert pool.active == 0


def test_a_failing_request_fails_alone(pool):
    bad_bias = SamplingParams(logit_bias={10**7: 1.0})

    async def main():
        return await asyncio.gather(
            pool.generate(PROMPTS[0], max_tokens=8, sampling=GREEDY),
            pool.generate(PROMPTS[1], max_tokens=8, sampling=bad_bias),
            pool.generate(PROMPTS[2], max_tokens=8, sampling=GREEDY),
            return_exceptions=True,
        )

    good_a, bad, good_b = run(main())
    assert isinstance(bad, ValidationError) and "logit_bias" in str(bad)
    assert isinstance(good_a, str) and good_a and isinstance(good_b, str) and good_b
    with pytest.raises(ValidationError, match="the prompt has"):
        run(pool.generate("word " * 400, max_tokens=4))


def test_cancellation_frees_the_sequence(smollm2_path):
    never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
    # A context long enough that the victim cannot finish before it is cancelled, even on a GPU.
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=8192, n_threads=2) as pool:

        async def main():
            victim = asyncio.create_task(pool.generate(PROMPTS[3], max_tokens=None, sampling=never_end))
            other = asyncio.create_task(pool.generate(PROMPTS[4], max_tokens=16, sampling=GREEDY))
            await asyncio.sleep(0.3)
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            return await other

        assert run(main())
        # Nothing decodes for the cancelled request any more (it would run to the end of its
        # 8192-token context), and its slot was released: both slots serve again.
        wait_until_idle(pool)
        assert len(run(pool.generate_batch(PROMPTS[:2], max_tokens=2, sampling=GREEDY))) == 2
        wait_until_idle(pool)


def test_streaming_and_early_exit(pool):
    async def main():
        pool.perf_reset()
        pieces = [p async for p in pool.generate_stream(PROMPTS[0], max_tokens=24, sampling=GREEDY)]
        first = []
        async for p in pool.generate_stream(PROMPTS[1], max_tokens=200, sampling=GREEDY):
            first.append(p)
            if len(first) == 2:
                break
        return pieces, first

    pieces, first = run(main())
    assert len(first) == 2
    # Leaving the loop released the sequence: nothing is still decoding for it, and it
    # stopped far below its 200 tokens (24 are the first stream's).
    assert wait_until_idle(pool) < 24 + 50
    assert len(pieces) > 1
    assert "".join(pieces) == run(pool.generate(PROMPTS[0], max_tokens=24, sampling=GREEDY))


def test_break_frees_the_sequence_at_once(pool):
    # Leaving the loop drops the stream, and with it the request: at once, not at the next
    # garbage collection (the stream and its generator must not hold each other).
    async def main():
        async for _ in pool.generate_stream(PROMPTS[1], max_tokens=None, sampling=GREEDY):
            break
        deadline = asyncio.get_running_loop().time() + 30  # a busy machine steps slowly
        while pool.active:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    gc.disable()  # a cycle would be freed only by the collector: make sure none is needed
    try:
        assert run(main())
    finally:
        gc.enable()


def test_a_stream_is_an_async_iterator(pool):
    # anext() works on it directly, and aclose() cancels the request.
    async def main():
        pool.perf_reset()
        stream = pool.generate_stream(PROMPTS[0], max_tokens=200, sampling=GREEDY)
        assert stream.__aiter__() is stream
        first = await stream.__anext__()
        await stream.aclose()
        return first

    assert run(main())
    assert wait_until_idle(pool) < 50  # of 200


def wait_until_idle(pool, seconds=60.0) -> int:
    """Waits until the pool decodes nothing in the time of several steps (at least a second);
    returns how many tokens it generated since its perf_reset()."""
    import time

    def decoded():
        perf = pool.perf()
        return perf["n_eval"] + perf["n_prompt_eval"], perf["n_eval"]

    perf = pool.perf()
    settle = min(max(1.0, 5 * perf["t_eval_ms"] / 1000 / max(perf["n_eval"], 1)), 10.0)
    deadline = time.monotonic() + seconds
    last = decoded()
    while True:
        time.sleep(settle)
        now = decoded()
        if now == last:
            return now[1]
        assert time.monotonic() < deadline, f"the pool still decodes after {seconds} s"
        last = now


def test_stream_arguments_are_checked_at_the_call(pool):
    with pytest.raises(ValidationError, match=r"\[LlamaPool\.generate_stream\] max_tokens"):
        pool.generate_stream(PROMPTS[0], max_tokens=0)
    with pytest.raises(ValidationError, match=r"\[LlamaPool\.submit\] sampling must be a SamplingParams"):
        pool.submit(PROMPTS[0], sampling={"temperature": 0})


def test_streamed_chat_completion(pool):
    messages = [{"role": "user", "content": "Name a colour."}]

    async def main():
        chunks = [c async for c in await pool.create_chat_completion(messages, max_tokens=12, temperature=0,
                                                                      stream=True)]
        whole = await pool.create_chat_completion(messages, max_tokens=12, temperature=0)
        return chunks, whole

    chunks, whole = run(main())
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"] and text
    # The same counts; the second request found the prompt in the cells the first left behind.
    detail = "prompt_tokens_details"
    assert {k: v for k, v in chunks[-1]["usage"].items() if k != detail} == \
        {k: v for k, v in whole["usage"].items() if k != detail}
    assert chunks[-1]["usage"][detail]["cached_tokens"] == 0
    assert whole["usage"][detail]["cached_tokens"] == whole["usage"]["prompt_tokens"] - 1


def test_chat_batch(pool):
    conversations = [[{"role": "user", "content": "Hello!"}], [{"role": "user", "content": "Hi there!"}]]
    out = run(pool.create_chat_completion_batch(conversations, max_tokens=8, temperature=0))
    assert [o["object"] for o in out] == ["chat.completion"] * 2
    assert all(o["choices"][0]["message"]["content"] for o in out)


@cpu_numerics
def test_chat_takes_llama_arguments(pool, smollm2_path):
    # Log-probabilities, typical-p and mirostat reach the pool's requests as they reach Llama's.
    messages = [{"role": "user", "content": "Name a colour."}]
    with Llama(smollm2_path, n_ctx=256, n_threads=2) as single:
        expected = single.create_chat_completion(messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
        seeded = single.create_chat_completion(messages, max_tokens=6, temperature=0.8, seed=3, typical_p=0.9)
        mirostat = single.create_chat_completion(messages, max_tokens=6, temperature=0.8, seed=3, mirostat_mode=2)
    got = run(pool.create_chat_completion(messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2))
    assert got["choices"][0]["logprobs"] == expected["choices"][0]["logprobs"]
    assert len(got["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
    for kwargs, reference in ((dict(typical_p=0.9), seeded), (dict(mirostat_mode=2), mirostat)):
        out = run(pool.create_chat_completion(messages, max_tokens=6, temperature=0.8, seed=3, **kwargs))
        assert out["choices"][0]["message"] == reference["choices"][0]["message"]


def test_submit_from_threads(pool):
    futures = [pool.submit(p, max_tokens=8, sampling=GREEDY) for p in PROMPTS[:4]]
    assert all(f.result(timeout=120) for f in futures)


def test_close_fails_new_requests(smollm2_path):
    p = LlamaPool(smollm2_path, pool_size=2, n_ctx=128, n_threads=2, warmup=True)
    p.close()
    p.close()
    with pytest.raises(LlamaError, match="closed"):
        run(p.generate("Hi"))


def test_shutdown_stops_a_busy_pool(smollm2_path, run_python):
    result = run_python(
        f"""
        import asyncio, llama_cpp
        from llama_cpp import LlamaPool, SamplingParams
        never_end = SamplingParams(temperature=0.0, logit_bias={{0: float("-inf"), 1: float("-inf"), 2: float("-inf")}})
        pool = LlamaPool({str(smollm2_path)!r}, pool_size=2, n_ctx=256, n_threads=2)
        busy = pool.submit("Once upon a time", max_tokens=None, sampling=never_end)
        llama_cpp.shutdown()
        try:
            busy.result(timeout=60)
        except llama_cpp.LlamaError as e:
            print("in flight:", e)
        try:
            pool.submit("Hello")
        except llama_cpp.LlamaError as e:
            print("after:", e)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "in flight: [LlamaPool] the pool was closed" in result.stdout
    assert "after: [LlamaPool.submit] the pool is closed" in result.stdout


def test_parallel_inference_example(smollm2_path):
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "parallel_inference.py"), "--model", str(smollm2_path),
         "--requests", "4", "--max-tokens", "16"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "speedup" in out
    if not GPU_RUN:  # the example compares texts across batch shapes (see cpu_numerics)
        assert "same texts    : True" in out


@cpu_numerics  # requests admitted in one group or two decode their prompts in different batch shapes
def test_sampling_threads_do_not_change_answers(smollm2_path):
    with pytest.raises(ValidationError, match="sampling_threads"):
        LlamaPool(smollm2_path, pool_size=2, sampling_threads=0)
    answers = []
    for threads in (1, 2):
        with LlamaPool(smollm2_path, pool_size=4, n_ctx=256, n_threads=2, sampling_threads=threads) as pool:
            assert pool.sampling_threads == threads
            answers.append(run(pool.generate_batch(PROMPTS[:4], max_tokens=12, sampling=GREEDY)))
    assert answers[0] == answers[1]
