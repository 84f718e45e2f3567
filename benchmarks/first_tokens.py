"""What the first tokens after a prompt cost, against a steady token: each call of
`generate` decodes its prompt, then one token at a time; the first one-token graph after a
prompt is built anew by llama.cpp, and on CUDA its CUDA graph may be captured again.

    python benchmarks/first_tokens.py --model M.gguf [--model M2.gguf] [--ngl 99] [--runs 9]

Prints, per model: the median time of `generate(max_tokens=k)` for k in 1..8, 16, 32, 128; the
cost of each extra token (t(k) - t(k-1)); the steady cost per token ((t(128) - t(32)) / 96);
and, from llama.cpp's debug log of one 8-token call, the CUDA graph decisions (capture, reuse,
warm-up resets) it logged. JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from typing import Any

from llama_cpp import Llama, SamplingParams, reset_logging, set_log_level

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
N_DEPTH = 32
COUNTS = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 128)


def debug_log_of(fn: Any) -> str:
    """llama.cpp's stderr at debug level while fn runs (fd 2 redirected to a file)."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        set_log_level(logging.DEBUG)
        os.dup2(sink.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            reset_logging()
        sink.seek(0)
        return sink.read().decode("utf-8", "replace")


def measure(model: str, ngl: int, runs: int) -> dict[str, Any]:
    llm = Llama(model, n_ctx=2048, n_batch=2048, n_ubatch=512, n_gpu_layers=ngl, flash_attn=True)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    base = llm.tokenize(PROMPT)
    prompt = (base * (N_DEPTH // len(base) + 1))[:N_DEPTH]

    def time_of(k: int) -> float:
        llm.generate(prompt, max_tokens=k, sampling=greedy)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            llm.generate(prompt, max_tokens=k, sampling=greedy)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    t = {k: 1000 * time_of(k) for k in COUNTS}
    log = debug_log_of(lambda: llm.generate(prompt, max_tokens=8, sampling=greedy))
    llm.close()
    graph_lines = Counter(re.sub(r"\d+", "N", line.strip()) for line in log.splitlines()
                          if "graph" in line.lower() and ("cuda" in line.lower() or "reuse" in line.lower()))
    return {
        "ms_by_max_tokens": t,
        "extra_token_ms": {k: t[k] - t[prev] for prev, k in zip(COUNTS, COUNTS[1:]) if k - prev == 1},
        "steady_token_ms": (t[128] - t[32]) / 96,
        "graph_log": dict(graph_lines.most_common(12)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    report = {}
    for model in args.model:
        r = measure(model, args.ngl, args.runs)
        report[model] = r
        extra = ", ".join(f"{k}: {v:.3f}" for k, v in r["extra_token_ms"].items())
        print(f"{os.path.basename(model)}: steady token {r['steady_token_ms']:.3f} ms; token k costs (ms) {extra}",
              flush=True)
        for line, n in r["graph_log"].items():
            print(f"    {n} x {line}", flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
