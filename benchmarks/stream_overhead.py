"""Where streaming's extra time goes: the first piece and the cost per token of
`generate_stream` against the same generation run other ways, in one process.

    python benchmarks/stream_overhead.py --model M.gguf [--model M2.gguf] [--ngl 99] [--runs 7] [--rounds 3]

First piece of a 512-token prompt (ms from the call), each way:
  pp            `generate(max_tokens=1)`: prefill and one sampled token, nothing streamed
  stream        `generate_stream` as users call it (prompt and first token on the caller's thread)
Decode tok/s of 127 tokens (a 32-token prompt; time of 128 tokens minus time of 1), each way:
  generate      no text handed anywhere
  stream        `generate_stream` with a consumer waiting on each piece
(The runs in benchmarks/results/*stream_overhead* also timed a text callback, a C++ queue read
at the end, and a Python thread per stream: those needed hooks the product no longer has.)
Greedy with end-of-generation masked, as benchmarks/bench.py; medians over --runs within each
round, then the median over rounds. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from llama_cpp import Llama, SamplingParams

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

    def first_stream() -> float:
        start = time.perf_counter()
        stream = llm.generate_stream(long_prompt, max_tokens=N_GEN, sampling=first_word)
        next(stream)
        elapsed = time.perf_counter() - start
        stream.close()
        return elapsed

    result = {
        "first_pp_ms": median_of(timed(lambda: llm.generate(long_prompt, max_tokens=1, sampling=first_word)), runs),
        "first_stream_ms": median_of(first_stream, runs),
    }
    result = {k: 1000 * v for k, v in result.items()}

    # ---- per token -----------------------------------------------------------------------------
    def generate(n: int) -> None:
        llm.generate(prompt, max_tokens=n, sampling=greedy)

    def stream(n: int) -> None:
        for _ in llm.generate_stream(prompt, max_tokens=n, sampling=greedy):
            pass

    for name, fn in (("generate", generate), ("stream", stream)):
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
