"""LlamaPool decoding sequences with gaps between their ids, padded (the default on a GPU) and
not, against the same work without gaps.

    python benchmarks/bench_pool_gaps.py --model models/m1b.gguf --pool-size 64 --max-tokens 128 -ngl 99

Half of the requests stop after 4 tokens; the other half decode --max-tokens. "contiguous": the
long ones hold sequences 0 .. n/2-1, so every step after the short ones stop is one run of ids.
"gaps": the long ones hold every other sequence, so those steps have n/2 - 1 idle sequences
between busy ones. Each KV stream is one sequence's and llama.cpp decodes only consecutive ids
in one pass over the weights: unpadded ("gaps, no padding", through ``_core.testing``), such a
step is n/2 passes; padded, one (the idle ones decode a token that is dropped again). Reported:
generated tok/s of each, median of --rounds, and gaps / contiguous.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from llama_cpp import LlamaPool, SamplingParams, _core


async def one_round(pool: LlamaPool, sampling: SamplingParams, long_tokens: int, gaps: bool) -> float:
    n = pool.pool_size
    lengths = [long_tokens if (i % 2 == 0 if gaps else i < n // 2) else 4 for i in range(n)]
    # One at a time into the queue, in order: request i gets sequence i (all are free).
    jobs = [pool.submit(f"Tell me a story, number {i}", max_tokens=k, sampling=sampling) for i, k in enumerate(lengths)]
    start = time.perf_counter()
    await asyncio.gather(*(asyncio.wrap_future(job) for job in jobs))
    return sum(lengths) / (time.perf_counter() - start)


def set_padding(pool: LlamaPool, ratio: float) -> None:
    for replica in pool._replicas:  # a benchmark hook: the ratio is the engine's choice otherwise
        _core.testing.set_pad_ratio(replica._context, ratio)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("-ngl", "--n-gpu-layers", type=int, default=-1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the summary here too")
    args = parser.parse_args()
    async with LlamaPool(args.model, pool_size=args.pool_size, n_ctx=args.max_tokens + 64,
                         n_gpu_layers=args.n_gpu_layers, share_prefixes=False, warmup=True) as pool:
        llm = pool.llama
        sampling = SamplingParams(temperature=0, logit_bias={t: float("-inf") for t in range(llm.n_vocab())
                                                             if llm.is_eog(t)})
        padded = None
        rates: dict[str, list[float]] = {"contiguous": [], "gaps": [], "gaps, no padding": []}
        for _ in range(args.rounds):
            for name in rates:
                if name == "gaps, no padding":
                    set_padding(pool, 0)
                pool.perf_reset()
                rates[name].append(await one_round(pool, sampling, args.max_tokens, gaps=name != "contiguous"))
                if name == "gaps":
                    padded = pool.perf()["n_pad_tokens"]
                if name == "gaps, no padding":
                    set_padding(pool, -1)  # the default again
                print(json.dumps({"case": name, "tok_s": round(rates[name][-1], 1)}), flush=True)
    summary = {name: statistics.median(values) for name, values in rates.items()}
    line = {"pool_size": args.pool_size, "max_tokens": args.max_tokens, "rounds": args.rounds,
            **{f"{k} tok_s": round(v, 1) for k, v in summary.items()},
            "gaps / contiguous": round(summary["gaps"] / summary["contiguous"], 3),
            "gaps without padding / contiguous": round(summary["gaps, no padding"] / summary["contiguous"], 3),
            "padding tokens per gaps round (default setting)": padded}
    print(json.dumps(line))
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
