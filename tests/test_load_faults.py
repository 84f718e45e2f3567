"""Load and faults (issue 13): many threads on one ``Llama``; a storm of concurrent pool requests
with random cancellations; ``shutdown()`` while generations run; a grammar that can never be
satisfied. Every answer is compared with a fresh instance's greedy answer; timeouts only guard
against hangs (a hang fails the test instead of stalling CI), nothing asserts on speed.

Thread counts are explicit (``n_threads=1``): the answers compared must come from the same
computation, and one thread keeps these tests usable on a machine whose cores are busy."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import cpu_numerics
from llama_cpp import GenerationError, Llama, LlamaError, LlamaPool, SamplingParams

GREEDY = SamplingParams(temperature=0.0)
# SmolLM2's special tokens 0..2 end a turn: banned, so a request runs until max_tokens or a full context.
NEVER_END = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
PROMPTS = [
    "The capital of France is", "Once upon a time", "def fibonacci(n):", "The three laws of robotics",
    "My favourite recipe is", "In the year 2050,", "The best way to learn Python", "Dear diary, today",
    "A haiku about autumn:", "The mitochondria is", "Ten facts about cats:", "How to build a birdhouse:",
    "The history of Rome", "The ocean is", "A letter to my future self:", "The rules of chess",
]
HANG_GUARD_S = 300  # far above what any of these takes: only a hang reaches it


def run_child(code: str, *args: str, timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter (a crash or an abort must not take pytest down)."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the child did not end within {timeout} s (hang or spin); its output: "
                             f"{exc.stdout!r} {exc.stderr!r}") from None


def join_all(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(HANG_GUARD_S)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {HANG_GUARD_S} s: {stuck}"


# ---- 8 threads on one Llama ------------------------------------------------------------------


def test_eight_threads_on_one_llama_are_serialised_and_correct(smollm2_path):
    rounds = 2
    with Llama(smollm2_path, n_ctx=512, n_threads=1) as fresh:
        expected = {p: fresh.generate(p, max_tokens=16, sampling=GREEDY) for p in PROMPTS[:8]}
    assert len(set(expected.values())) == 8  # distinct answers: a mix-up between threads would show

    with Llama(smollm2_path, n_ctx=512, n_threads=1) as llm:
        start = threading.Barrier(8)
        results: list[tuple[int, int, str, str, str]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            try:
                start.wait(HANG_GUARD_S)
                for r in range(rounds):
                    prompt = PROMPTS[(i + r) % 8]
                    how = ("generate", "stream", "completion")[(i + r) % 3]
                    if how == "generate":
                        text = llm.generate(prompt, max_tokens=16, sampling=GREEDY)
                    elif how == "stream":
                        text = "".join(llm.generate_stream(prompt, max_tokens=16, sampling=GREEDY))
                    else:
                        out = llm.create_completion(prompt, max_tokens=16, temperature=0)
                        text = out["choices"][0]["text"]
                    with lock:
                        results.append((i, r, how, prompt, text))
            except BaseException as exc:  # reported below, with the thread's other results
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in range(8)]
        for t in threads:
            t.start()
        join_all(threads)
        assert not errors, errors
        assert len(results) == 8 * rounds
        wrong = [(i, r, how, prompt, text) for i, r, how, prompt, text in results if text != expected[prompt]]
        assert not wrong, wrong
        assert {how for _, _, how, _, _ in results} == {"generate", "stream", "completion"}
        # The instance is whole afterwards.
        assert llm.generate(PROMPTS[0], max_tokens=16, sampling=GREEDY) == expected[PROMPTS[0]]


# ---- 200 concurrent pool requests, 30% cancelled ---------------------------------------------

N_REQUESTS = 200
POOL_SIZE = 8
POOL_CTX = 256
MAX_TOKENS = (2, 4, 8)


def _pool(path) -> LlamaPool:
    return LlamaPool(path, pool_size=POOL_SIZE, n_ctx=POOL_CTX, n_threads=1)


def _fill_every_sequence(pool: LlamaPool) -> list[str]:
    """Every sequence of the pool filled to its last cell at once (a prompt of all but 4 cells,
    then tokens until the context is full): llama_decode finds room for that only if none of the
    sequence's KV cells are still held by an earlier request (else the request fails)."""
    text = " ".join(PROMPTS) * 20
    prompts = [pool.llama.tokenize(text)[i:i + pool.n_ctx - 4] for i in range(POOL_SIZE)]
    return asyncio.run(pool.generate_batch(prompts, max_tokens=None, sampling=NEVER_END))


async def _wait_idle(pool: LlamaPool) -> None:
    for _ in range(HANG_GUARD_S * 10):
        if pool.active == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"pool.active is still {pool.active} after {HANG_GUARD_S} s")


@cpu_numerics  # completed requests are compared across batch shapes
def test_200_requests_with_random_cancellations(smollm2_path):
    rng = random.Random(13)
    # (prompt, max_tokens, stream, cancel, when): cancel is None, "queued" (as soon as the request
    # is queued, before it is admitted), "timed" (after `when` seconds: waiting, in its prompt,
    # mid-generation or already done) or "mid-stream" (after `when` pieces).
    plan = []
    for k in range(N_REQUESTS):
        prompt, max_tokens, stream = PROMPTS[k % len(PROMPTS)], rng.choice(MAX_TOKENS), rng.random() < 0.5
        cancel, when = None, 0.0
        if rng.random() < 0.3:
            cancel = rng.choice(["queued", "timed", "mid-stream"] if stream else ["queued", "timed"])
            when = rng.uniform(0.0, 4.0) if cancel == "timed" else rng.randint(1, max_tokens // 2)
        plan.append((prompt, max_tokens, stream, cancel, when))
    cancelled_share = sum(c is not None for *_, c, _ in plan) / N_REQUESTS
    assert 0.25 < cancelled_share < 0.35

    with _pool(smollm2_path) as fresh:
        keys = [(p, n) for p in PROMPTS for n in MAX_TOKENS]

        async def reference():
            return await asyncio.gather(*(fresh.generate(p, n, sampling=GREEDY) for p, n in keys))

        expected = dict(zip(keys, asyncio.run(reference())))
        assert fresh.n_ctx == POOL_CTX
    assert all(expected.values())

    pieces: dict[int, list[str]] = {k: [] for k in range(N_REQUESTS)}

    async def request(k: int) -> str:
        prompt, max_tokens, stream, cancel, when = plan[k]
        if not stream:
            return await pool.generate(prompt, max_tokens, sampling=GREEDY)
        async for piece in pool.generate_stream(prompt, max_tokens, sampling=GREEDY):
            pieces[k].append(piece)
            if cancel == "mid-stream" and len(pieces[k]) == when:
                asyncio.current_task().cancel()  # a client gone mid-stream
        return "".join(pieces[k])

    async def storm():
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(request(k)) for k in range(N_REQUESTS)]
        for k, (*_, cancel, when) in enumerate(plan):
            if cancel == "queued":  # runs after every task's first step, which queued its request
                loop.call_soon(tasks[k].cancel)
            elif cancel == "timed":
                loop.call_later(when, tasks[k].cancel)
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG_GUARD_S)
        await _wait_idle(pool)
        return outcomes

    with _pool(smollm2_path) as pool:
        outcomes = asyncio.run(storm())
        assert pool.active == 0  # every sequence is free again

        kinds = {"ok": 0, "cancelled": 0}
        for k, outcome in enumerate(outcomes):
            prompt, max_tokens, _, cancel, _ = plan[k]
            if isinstance(outcome, asyncio.CancelledError):
                assert cancel is not None, f"request {k} was cancelled but nobody cancelled it"
                kinds["cancelled"] += 1
                # What a cancelled stream delivered before it went is the start of the answer.
                assert expected[prompt, max_tokens].startswith("".join(pieces[k])), (k, pieces[k])
            else:
                assert isinstance(outcome, str), f"request {k} ({plan[k]}) ended with {outcome!r}"
                assert outcome == expected[prompt, max_tokens], (k, plan[k], outcome)
                kinds["ok"] += 1
        assert kinds["ok"] + kinds["cancelled"] == N_REQUESTS
        timed = [k for k, (*_, c, _) in enumerate(plan) if c == "timed"]
        print(f"{kinds['ok']} completed, {kinds['cancelled']} cancelled; of {len(timed)} cancelled after a delay, "
              f"{sum(isinstance(outcomes[k], str) for k in timed)} had already completed")
        assert kinds["ok"] >= sum(c is None for *_, c, _ in plan)
        for how in ("queued", "mid-stream"):  # these are cancelled before their request can end
            targets = [k for k, (*_, c, _) in enumerate(plan) if c == how]
            assert targets and all(isinstance(outcomes[k], asyncio.CancelledError) for k in targets), how

        # Later answers equal a fresh pool's, and every sequence still holds a whole context:
        # no KV cells were left behind by the cancelled requests. (No public API tells the KV
        # cells in use; a full context per sequence is what can be observed.)
        later = asyncio.run(pool.generate_batch(PROMPTS, max_tokens=8, sampling=GREEDY))
        assert later == [expected[p, 8] for p in PROMPTS]
        filled = _fill_every_sequence(pool)
        assert len(filled) == POOL_SIZE and all(filled)  # each ran until its context was full
        assert pool.active == 0


# ---- shutdown() while generations run -------------------------------------------------------

SHUTDOWN_CHILD = """
    import asyncio, json, sys, threading, time
    import llama_cpp
    from llama_cpp import Llama, LlamaPool, SamplingParams

    path, max_tokens, running = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
    ban = {0: -1e9, 1: -1e9, 2: -1e9}
    streaming = Llama(path, n_ctx=2048, n_threads=1)
    blocking = Llama(path, n_ctx=2048, n_threads=1)
    pool = LlamaPool(path, pool_size=2, n_ctx=2048, n_threads=1)
    outcomes, first_piece = {}, threading.Event()

    def error(exc):
        return {"end": "error", "type": type(exc).__name__, "typed": isinstance(exc, llama_cpp.LlamaError),
                "message": str(exc)}

    def stream_worker():  # a sync stream consumed on its own thread
        n = 0
        try:
            for _ in streaming.generate_stream("Once upon a time", max_tokens=max_tokens, sampling=never_end):
                n += 1
                first_piece.set()
            outcomes["stream"] = {"end": "clean", "tokens": n}
        except BaseException as exc:
            outcomes["stream"] = error(exc) | {"tokens": n}
        first_piece.set()

    def blocking_worker():  # a whole generation in one call on its own thread
        try:
            out = blocking.create_completion("Once upon a time", max_tokens=max_tokens, temperature=0, logit_bias=ban)
            outcomes["generate"] = {"end": "clean", "tokens": out["usage"]["completion_tokens"],
                                    "finish_reason": out["choices"][0]["finish_reason"]}
        except BaseException as exc:
            outcomes["generate"] = error(exc)

    async def pool_requests():  # an awaited request and an async stream on the pool
        async def whole():
            try:
                text = await pool.generate("The history of Rome", max_tokens=max_tokens, sampling=never_end)
                outcomes["pool"] = {"end": "clean", "tokens": len(pool.llama.tokenize(text, add_bos=False))}
            except BaseException as exc:
                outcomes["pool"] = error(exc)

        async def streamed():
            n = 0
            try:
                async for _ in pool.generate_stream("Dear diary, today", max_tokens=max_tokens, sampling=never_end):
                    n += 1
                outcomes["pool_stream"] = {"end": "clean", "tokens": n}
            except BaseException as exc:
                outcomes["pool_stream"] = error(exc) | {"tokens": n}

        await asyncio.gather(whole(), streamed())

    workers = {"stream": stream_worker, "generate": blocking_worker, "pool": lambda: asyncio.run(pool_requests())}
    threads = [threading.Thread(target=workers[name], name=name) for name in running]
    for t in threads:
        t.start()
    # Shut down once every generation decodes (counted in tokens, whatever the machine's speed).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        ("stream" not in running or first_piece.is_set())
        and ("generate" not in running or blocking.perf()["n_eval"] >= 8)
        and ("pool" not in running or pool.active == 2)
    ):
        time.sleep(0.01)
    llama_cpp.shutdown()
    print("shutdown returned", flush=True)
    for t in threads:
        t.join(120)
    outcomes["alive"] = [t.name for t in threads if t.is_alive()]
    after = {}
    for name, call in (("streaming", lambda: streaming.generate("Hi", max_tokens=2)),
                       ("blocking", lambda: blocking.generate("Hi", max_tokens=2)),
                       ("pool", lambda: pool.submit("Hi", max_tokens=2))):
        try:
            call()
            after[name] = "served"
        except llama_cpp.LlamaError as exc:
            after[name] = str(exc)
    outcomes["after"] = after
    llama_cpp.shutdown()  # twice is safe
    print(json.dumps(outcomes), flush=True)
"""
CLOSED_AFTERWARDS = {
    "streaming": "[Llama.generate] this Llama instance is closed",
    "blocking": "[Llama.generate] this Llama instance is closed",
    "pool": "[LlamaPool.submit] the pool is closed",
}


def _shutdown_during(path, running: str, max_tokens: int) -> dict:
    result = run_child(SHUTDOWN_CHILD, str(path), str(max_tokens), running)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-3000:]}"
    assert "shutdown returned" in result.stdout
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcomes["alive"] == [], outcomes
    assert outcomes["after"] == CLOSED_AFTERWARDS
    for name, outcome in outcomes.items():
        if name in ("alive", "after"):
            continue
        if outcome["end"] == "error":
            assert outcome["typed"], f"{name}: {outcome}"  # a LlamaError, not a crash or a stray exception
        # Stopped by shutdown(), not run to the end of its max_tokens.
        assert outcome.get("tokens", 0) < max_tokens - 1, f"{name} was not stopped by shutdown(): {outcome}"
    return outcomes


def test_shutdown_ends_streams_and_pool_requests(smollm2_path):
    # A sync stream on another thread ends (cleanly, with the pieces so far); the pool's awaited
    # request and its async stream fail with LlamaError; the process exits normally.
    outcomes = _shutdown_during(smollm2_path, "stream,pool", max_tokens=1500)
    assert outcomes["stream"]["end"] == "clean"
    for name in ("pool", "pool_stream"):
        assert {k: outcomes[name][k] for k in ("end", "type", "message")} == {
            "end": "error", "type": "LlamaError", "message": "[LlamaPool] the pool was closed"}


def test_shutdown_ends_a_blocking_generation(smollm2_path):
    # generate()/create_completion() running on another thread: shutdown() (Llama.close()) must
    # stop it within a token or so, as it stops a stream, rather than wait for all its tokens.
    _shutdown_during(smollm2_path, "generate", max_tokens=400)


# ---- a grammar that can never be satisfied ---------------------------------------------------

# Both compile. The first admits no character at all; the second admits "a" and then nothing.
# With every token rejected, llama.cpp's grammar sampler leaves no candidate; left alone, the
# sampled end-of-generation token reaches llama_grammar_accept_impl, which aborts the process
# (llama-grammar.cpp: GGML_ABORT "fatal error"), and with temperature > 0 a sampled token makes
# llama.cpp throw std::runtime_error. Either way the request must fail with GenerationError, in a
# child process so that an abort fails the test instead of ending pytest.
NO_CHARACTER = r"root ::= [^\x00-\U0010FFFF]"
DEAD_END = r'root ::= "a" [^\x00-\U0010FFFF]'

GRAMMAR_CHILD = """
    import asyncio, sys
    import llama_cpp
    from llama_cpp import GenerationError, Llama, LlamaGrammar, LlamaPool, SamplingParams

    path, api, rule, sampled = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "sampled"
    grammar = LlamaGrammar.from_string(rule)
    sampling = SamplingParams(temperature=0.8, seed=7) if sampled else SamplingParams(temperature=0.0)
    greedy = SamplingParams(temperature=0.0)

    def report(exc):
        assert isinstance(exc, GenerationError), f"{type(exc).__name__}: {exc}"
        print("GenerationError:", exc, flush=True)

    if api == "pool":
        with LlamaPool(path, pool_size=2, n_ctx=256, n_threads=1) as pool:
            expected = asyncio.run(pool.generate("The capital of France is", 12, sampling=greedy))

            async def main():
                return await asyncio.gather(
                    pool.generate("Hello", 16, sampling=sampling, grammar=grammar),
                    pool.generate("The capital of France is", 12, sampling=greedy),
                    return_exceptions=True)

            failed, neighbour = asyncio.run(main())
            report(failed)
            assert neighbour == expected, (neighbour, expected)  # the other request is untouched
            assert asyncio.run(pool.generate("The capital of France is", 12, sampling=greedy)) == expected
            assert pool.active == 0
    else:
        with Llama(path, n_ctx=256, n_threads=1) as llm:
            expected = llm.generate("The capital of France is", 12, sampling=greedy)
            try:
                if api == "generate":
                    llm.generate("Hello", 16, sampling=sampling, grammar=grammar)
                else:
                    "".join(llm.generate_stream("Hello", 16, sampling=sampling, grammar=grammar))
            except Exception as exc:
                report(exc)
            else:
                raise AssertionError("the generation ended without an error")
            assert llm.generate("The capital of France is", 12, sampling=greedy) == expected  # still usable
    print("usable afterwards", flush=True)
"""


@pytest.mark.parametrize(
    ("api", "rule", "sampling"),
    [
        ("generate", NO_CHARACTER, "greedy"),
        ("generate", DEAD_END, "greedy"),
        ("generate", NO_CHARACTER, "sampled"),
        ("stream", NO_CHARACTER, "greedy"),
        ("stream", DEAD_END, "greedy"),
        ("pool", NO_CHARACTER, "greedy"),
        ("pool", DEAD_END, "sampled"),
    ],
)
def test_an_unsatisfiable_grammar_raises_generation_error(smollm2_path, api, rule, sampling):
    result = run_child(GRAMMAR_CHILD, str(smollm2_path), api, rule, sampling, timeout=120)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stdout[-500:]} {result.stderr[-1500:]}"
    assert "GenerationError: [" in result.stdout and "usable afterwards" in result.stdout, result.stdout


def test_unsatisfiable_grammars_compile():
    # The cases above test a failing generation, not a grammar the parser rejects.
    from llama_cpp import LlamaGrammar

    for rule in (NO_CHARACTER, DEAD_END):
        assert LlamaGrammar.from_string(rule) is not None
    assert issubclass(GenerationError, LlamaError)
