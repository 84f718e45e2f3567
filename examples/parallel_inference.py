"""Serve many requests at once from one model with LlamaPool, and measure what it buys.

    python examples/parallel_inference.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --requests 8

The same greedy requests run twice: one after another (one request decoding at a time), then
all at once through the pool (every active request decodes in the same step, over one copy of
the weights). The texts must be identical; the aggregate tokens per second is what changes.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from llama_cpp import LlamaPool, SamplingParams

TOPICS = ["the sea", "mountains", "a city at night", "autumn", "a library", "the moon", "trains", "coffee"]


async def one_at_a_time(pool: LlamaPool, prompts: list[str], sampling: SamplingParams, n: int) -> list[str]:
    return [await pool.generate(p, max_tokens=n, sampling=sampling) for p in prompts]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path to a GGUF file")
    parser.add_argument("--requests", type=int, default=8, help="how many requests run concurrently")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-gpu-layers", type=int, default=-1)
    args = parser.parse_args()

    prompts = [f"Write a short poem about {TOPICS[i % len(TOPICS)]} (number {i + 1}):" for i in range(args.requests)]
    async with LlamaPool(args.model, pool_size=args.requests, n_ctx=args.max_tokens + 64, n_gpu_layers=args.n_gpu_layers,
                         warmup=True) as pool:
        # Mask end-of-generation so every request makes max_tokens tokens: a fair comparison.
        llm = pool.llama
        eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
        sampling = SamplingParams(temperature=0.0, logit_bias=eog)

        start = time.perf_counter()
        sequential = await one_at_a_time(pool, prompts, sampling, args.max_tokens)
        sequential_s = time.perf_counter() - start

        start = time.perf_counter()
        together = await pool.generate_batch(prompts, max_tokens=args.max_tokens, sampling=sampling)
        together_s = time.perf_counter() - start

    tokens = args.requests * args.max_tokens  # end-of-generation is masked: every request makes them all

    print(f"first answer: {prompts[0]}{together[0]}\n")
    print(f"{args.requests} requests x {args.max_tokens} tokens on {args.model}")
    print(f"  one at a time : {sequential_s:6.2f} s  {tokens / sequential_s:8.1f} tok/s")
    print(f"  all at once   : {together_s:6.2f} s  {tokens / together_s:8.1f} tok/s")
    print(f"  speedup       : {sequential_s / together_s:.2f}x")
    print(f"  same texts    : {sequential == together}")


if __name__ == "__main__":
    asyncio.run(main())
