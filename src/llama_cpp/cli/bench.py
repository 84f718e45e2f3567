"""``bench``: prompt processing and decoding speed on this machine (llama-bench's pp/tg)."""

from __future__ import annotations

import argparse
import json
import statistics

from ..llama import Llama
from ..sampling import SamplingParams
from .common import add_model_arguments, load, progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, n_ctx=None)
    parser.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (default 512)")
    parser.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (default 128)")
    parser.add_argument("-r", "--repetitions", type=int, default=3, help="runs to take the median of (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.n_ctx is None:
        args.n_ctx = args.n_prompt + args.n_gen + 16
    n_batch = max(args.n_prompt, 32)
    with load(Llama, args, n_batch=n_batch, n_ubatch=min(n_batch, 512)) as llm:
        # A prompt of exactly n_prompt tokens, and end-of-generation masked so every run makes n_gen.
        prompt = [llm.token_bos() if llm.token_bos() >= 0 else 1] + [(i * 7919) % 1000 + 100
                                                                      for i in range(args.n_prompt - 1)]
        no_eog = SamplingParams(temperature=0, logit_bias={t: float("-inf") for t in range(llm.n_vocab())
                                                           if llm.is_eog(t)})
        llm.generate(prompt[:8], max_tokens=2, sampling=no_eog)  # warm-up
        pp, tg = [], []
        with progress("benchmarking"):
            for _ in range(args.repetitions):
                llm.perf_reset()
                llm.generate(prompt, max_tokens=args.n_gen, sampling=no_eog)
                perf = llm.perf()
                pp.append(perf["n_prompt_eval"] / (perf["t_prompt_eval_ms"] / 1000))
                tg.append(perf["n_eval"] / (perf["t_eval_ms"] / 1000))
    result = {"model": args.model, "n_prompt": args.n_prompt, "n_gen": args.n_gen,
              "prompt_tok_s": round(statistics.median(pp), 2), "decode_tok_s": round(statistics.median(tg), 2)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"| model | test | tok/s |\n|---|---|---|\n| {args.model} | pp{args.n_prompt} | {result['prompt_tok_s']} |\n"
              f"| {args.model} | tg{args.n_gen} | {result['decode_tok_s']} |")
    return 0
