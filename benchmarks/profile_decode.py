"""Splits the time of greedy decoding into llama.cpp's own decode time and everything else.

    python benchmarks/profile_decode.py --model M.gguf [--seconds 8] [--ngl 99]

Runs 128-token greedy generations (end-of-generation masked) for --seconds, then prints the
wall time per token and llama.cpp's counted decode time per token (`perf()`: t_eval_ms /
n_eval, which for a GPU includes waiting for the GPU); the difference is host time outside
llama_decode (sampling, text, our loop). Attach a sampling profiler meanwhile (py-spy
--native) to see where that host time goes.
"""

from __future__ import annotations

import argparse
import json
import time

from llama_cpp import Llama, SamplingParams

N_GEN = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    llm = Llama(args.model, n_ctx=2048, n_gpu_layers=args.ngl, flash_attn=True, n_threads=args.threads)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    prompt = llm.tokenize("Write a long story about a lighthouse keeper.")
    llm.generate(prompt, max_tokens=N_GEN, sampling=greedy)  # warm-up
    llm.perf_reset()
    calls, wall = 0, 0.0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        llm.generate(prompt, max_tokens=N_GEN, sampling=greedy)
        wall += time.perf_counter() - start
        calls += 1
    perf = llm.perf()
    # Each call decodes the prompt once and N_GEN - 1 sampled tokens.
    decode_ms = perf["t_eval_ms"] / max(perf["n_eval"], 1)
    prompt_ms = perf["t_prompt_eval_ms"] / calls
    per_token_ms = (1000 * wall / calls - prompt_ms) / (N_GEN - 1)
    print(json.dumps({
        "calls": calls, "wall_ms_per_token": per_token_ms, "decode_ms_per_token": decode_ms,
        "host_ms_per_token": per_token_ms - decode_ms, "n_eval": perf["n_eval"],
        "n_graph_reused": perf["n_graph_reused"], "prompt_ms_per_call": prompt_ms,
    }, indent=1))


if __name__ == "__main__":
    main()
