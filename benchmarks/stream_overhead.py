"""Where streaming's extra time goes: the first piece and the cost per token of
`generate_stream` against the same generation run other ways, in one process.

    python benchmarks/stream_overhead.py --model M.gguf [--model M2.gguf] [--ngl 99] [--runs 7] [--rounds 3]

First piece of a 512-token prompt (ms from the call), each way:
  pp            `generate(max_tokens=1)`: prefill and one sampled token, nothing streamed
  callback      the first text callback, on the calling thread (no thread at all)
  stream        `generate_stream` as users call it (prompt and first token on the caller's thread)
  new_thread    a new Python thread per stream running the whole generation (how streams ran
                before), handing pieces over through the same C++ queue
Decode tok/s of 127 tokens (a 32-token prompt; time of 128 tokens minus time of 1), each way:
  generate      no text handed anywhere
  callback      a Python callback per token on the calling thread (the GIL per token)
  unconsumed    pieces queued on the calling thread and read only at the end (no wake-ups)
  stream        `generate_stream` with a consumer waiting on each piece
  new_thread    as above, a new thread per stream
Greedy with end-of-generation masked, as benchmarks/bench.py; medians over --runs within each
round, then the median over rounds. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from llama_cpp import Llama, SamplingParams, _core

N_GEN = 128
N_DEPTH = 32
N_PROMPT = 512
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def median_of(fn: Callable[[], float], runs: int) -> float:
    fn()  # warm-up
    return statistics.median(fn() for _ in range(runs))


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def measure(llm: Llama, runs: int) -> dict[str, float]:
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    word = llm.tokenize(" the", add_bos=False)[0]
    first_word = SamplingParams(temperature=0.0, logit_bias={**eog, word: 1000.0})
    base = llm.tokenize(PROMPT)
    prompt = (base * (N_DEPTH // len(base) + 1))[:N_DEPTH]
    long_prompt = (base * (N_PROMPT // len(base) + 1))[:N_PROMPT]

    def job(tokens: list[int], n: int, sampling: SamplingParams) -> Callable[[Any], Any]:
        return llm._prepare("generate", tokens, n, sampling, None, True, None).run  # noqa: SLF001

    def new_thread_stream(tokens: list[int], n: int, sampling: SamplingParams) -> tuple[Any, threading.Thread]:
        run = job(tokens, n, sampling)
        pieces = _core.PieceQueue()

        def work() -> None:
            try:
                run(pieces)
            finally:
                pieces.close()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return pieces, thread

    # ---- first piece -------------------------------------------------------------------------
    def first_callback() -> float:
        start = time.perf_counter()
        seen: list[float] = []

        def on_text(piece: str) -> bool:
            if not seen:
                seen.append(time.perf_counter() - start)
            return False

        job(long_prompt, N_GEN, first_word)(on_text)
        return seen[0]

    def first_stream() -> float:
        start = time.perf_counter()
        stream = llm.generate_stream(long_prompt, max_tokens=N_GEN, sampling=first_word)
        next(stream)
        elapsed = time.perf_counter() - start
        stream.close()
        return elapsed

    def first_new_thread() -> float:
        start = time.perf_counter()
        pieces, thread = new_thread_stream(long_prompt, N_GEN, first_word)
        pieces.get()
        elapsed = time.perf_counter() - start
        pieces.cancel()
        thread.join()
        return elapsed

    result = {
        "first_pp_ms": median_of(timed(lambda: llm.generate(long_prompt, max_tokens=1, sampling=first_word)), runs),
        "first_callback_ms": median_of(first_callback, runs),
        "first_stream_ms": median_of(first_stream, runs),
        "first_new_thread_ms": median_of(first_new_thread, runs),
    }
    result = {k: 1000 * v for k, v in result.items()}

    # ---- per token -----------------------------------------------------------------------------
    def generate(n: int) -> None:
        llm.generate(prompt, max_tokens=n, sampling=greedy)

    def callback(n: int) -> None:
        job(prompt, n, greedy)(lambda piece: True)

    def unconsumed(n: int) -> None:
        pieces = _core.PieceQueue()
        job(prompt, n, greedy)(pieces)
        pieces.close()
        while pieces.get() is not None:
            pass

    def stream(n: int) -> None:
        for _ in llm.generate_stream(prompt, max_tokens=n, sampling=greedy):
            pass

    def new_thread(n: int) -> None:
        pieces, thread = new_thread_stream(prompt, n, greedy)
        while pieces.get() is not None:
            pass
        thread.join()

    for name, fn in (("generate", generate), ("callback", callback), ("unconsumed", unconsumed),
                     ("stream", stream), ("new_thread", new_thread)):
        t_full = median_of(timed(lambda: fn(N_GEN)), runs)
        t_one = median_of(timed(lambda: fn(1)), runs)
        result[f"{name}_tg"] = (N_GEN - 1) / (t_full - t_one)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for model in args.model:
        llm = Llama(model, n_ctx=2048, n_batch=2048, n_ubatch=512, n_gpu_layers=args.ngl, flash_attn=True)
        rounds = [measure(llm, args.runs) for _ in range(args.rounds)]
        llm.close()
        report[model] = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        report[model]["rounds"] = rounds
        summary = {k: round(v, 3) for k, v in report[model].items() if k != "rounds"}
        print(model, json.dumps(summary), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
