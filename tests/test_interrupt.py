"""Ctrl-C and task cancellation stop a generation within one token, and leave the instance
usable. A real SIGINT is sent to a child process; the assertions count tokens, not seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from conftest import SMOLLM2

from llama_cpp import Llama, SamplingParams

N_TOKENS = 2000
# SmolLM2's special tokens 0..2 end a turn: banned, so nothing stops before max_tokens.
NEVER_END = {0: float("-inf"), 1: float("-inf"), 2: float("-inf")}
PROMPT = "Once upon a time"

CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time
    # Ctrl-C as at a terminal, whatever SIGINT disposition the test runner's process passed down
    # (a process started with SIGINT ignored gets no KeyboardInterrupt at all).
    inherited = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from llama_cpp import Llama, SamplingParams
    never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
    llm = Llama(sys.argv[1], n_ctx=4096, n_threads=2)
    call = sys.argv[2]
    print("ready", inherited, flush=True)

    def announce():  # tells the parent when tokens are being generated, whatever the device's speed
        while llm.perf()["n_eval"] < 8:
            time.sleep(0.001)
        print("decoding", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        if call == "generate":
            llm.generate("Once upon a time", max_tokens=2000, sampling=never_end)
        elif call == "create_completion":
            llm.create_completion("Once upon a time", max_tokens=2000, temperature=0.0, logit_bias=dict.fromkeys(range(3), -1e9))
        else:
            llm.create_chat_completion([{"role": "user", "content": "Tell a long story."}], max_tokens=2000,
                                       temperature=0.0, logit_bias=dict.fromkeys(range(3), -1e9))
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", len(llm.cached_tokens()), flush=True)
    again = llm.generate("The capital of France is", max_tokens=12, sampling=SamplingParams.greedy())
    print("again", repr(again), flush=True)
    """
)


def _interrupt_child(call: str) -> tuple[int, str]:
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(SMOLLM2), call], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().strip()
        assert ready.startswith("ready"), ready
        print("child's inherited SIGINT handler:", ready[len("ready"):])  # shown when the test fails
        assert child.stdout.readline().strip() == "decoding"  # inside the decode loop
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=300)
    finally:
        child.kill()
    lines = out.splitlines()
    assert lines[0].startswith("interrupted"), out
    return int(lines[0].split()[1]), lines[1]


def test_ctrl_c_stops_generate_and_the_instance_works_again(smollm2_path):
    with Llama(smollm2_path, n_ctx=4096, n_threads=2) as fresh:
        expected = fresh.generate("The capital of France is", max_tokens=12, sampling=SamplingParams.greedy())
    for call in ("generate", "create_completion", "create_chat_completion"):
        cached, again = _interrupt_child(call)
        assert cached < N_TOKENS // 2, (call, cached)  # stopped long before max_tokens
        assert again == f"again {expected!r}", call


def test_cancelling_generate_async_stops_decoding(smollm2_path):
    never_end = SamplingParams(temperature=0.0, logit_bias=NEVER_END)
    with Llama(smollm2_path, n_ctx=4096, n_threads=2) as llm:
        expected = llm.generate("The capital of France is", max_tokens=12, sampling=SamplingParams.greedy())

        async def cancel_once_decoding(coro) -> None:
            llm.perf_reset()
            task = asyncio.ensure_future(coro)
            # Cancel once generated tokens are being decoded (perf() reads llama.cpp's counters
            # without the instance's lock; llama.cpp reports n_eval as at least 1, so wait for 2):
            # no delay to tune to the machine's speed.
            while not task.done() and llm.perf()["n_eval"] < 2:
                await asyncio.sleep(0.005)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                raise AssertionError("the task was not cancelled")
            # The cancellation propagated only once decoding had stopped: the instance is idle.
            assert llm._lock.acquire(blocking=False)  # noqa: SLF001
            llm._lock.release()  # noqa: SLF001

        for make in (
            lambda: llm.generate_async(PROMPT, max_tokens=N_TOKENS, sampling=never_end),
            lambda: llm.create_completion_async(PROMPT, max_tokens=N_TOKENS, temperature=0.0,
                                                logit_bias=dict.fromkeys(range(3), -1e9)),
            lambda: llm.create_chat_completion_async([{"role": "user", "content": "Tell a long story."}],
                                                     max_tokens=N_TOKENS, temperature=0.0,
                                                     logit_bias=dict.fromkeys(range(3), -1e9)),
        ):
            asyncio.run(cancel_once_decoding(make()))
            # Stopped long before max_tokens.
            cached = len(llm.cached_tokens())
            assert cached < N_TOKENS // 2, cached
            assert llm.generate("The capital of France is", max_tokens=12, sampling=SamplingParams.greedy()) == expected
