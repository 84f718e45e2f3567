"""Side-by-side throughput: native llama.cpp, this binding, and llama-cpp-python, in one run
over one llama.cpp build and the same model files. Prints a table of tok/s and ratios to
native, and writes JSON.

    python benchmarks/bench.py --prefix PREFIX --model M.gguf [--model M2.gguf ...]
        [--ngl 99] [--llama-cpp-python DIR] [--runs 5] [--rounds 3] [--json out.json]
        [--variant NAME:key=value,key=value ...] [--decode-only]

PREFIX is a llama.cpp build laid out by scripts/build_llama_cpp.sh (lib/, bin/llama-bench).
Our package must be importable and linked against PREFIX/lib (prebuilt mode). DIR holds
llama-cpp-python's `llama_cpp` Python package (from its 0.3.36 sdist); it runs in a
subprocess over PREFIX/lib through LLAMA_CPP_LIB_PATH, since both packages are `llama_cpp`.

Method (the same for both bindings): greedy, end-of-generation tokens masked with a -inf
logit bias so every run makes exactly 128 tokens, one warm-up, median of --runs.
Decode tok/s = 127 / (wall time of the call - wall time of the same call with max_tokens=1),
so prompt processing is excluded and all per-token host work is included.
Native and ours alternate for --rounds rounds (the GPU's clocks drift over a minute; a ratio
is taken within a round): each round times native, then ours, then native again, and compares
ours with the mean of the two natives. The table shows the median of each number over the
rounds, and the ratio of the two natives of each round (how far native drifts by itself).
A --variant is our binding again with other LlamaConfig settings (n_threads=1,cpu_poll=50, ...),
timed in the same rounds; --decode-only times `generate` alone (and native tg128), for quick
comparisons of variants. Ours also times llama-bench's tg loop inside our process
(`_core.testing.time_bare_decode`: one fixed token, no sampling, no text; with our batch and with
llama_batch_get_one), to tell what our loop costs from what our process costs.
CPU threads: each side runs with its own defaults unless told. Native gets `-t --threads`, or
each count of --native-threads (16,1) in the same llama-bench call, and the fastest counts as
native; ours leaves LlamaConfig.n_threads at its default (one thread for one-token steps when
the whole model is on a GPU, every core for batches) unless --ours-threads is given.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

N_GEN = 128
N_DEPTH = 32  # tokens of the prompt `generate` continues from; native is also timed at this depth
N_PROMPT = 512
N_CTX = 2048  # --n-ctx
DECODE_KEYS = ("generate_tg", "generate_stream_tg", "chat_tg", "bare_decode_tg",
               "bare_get_one_tg")
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def native(prefix: Path, model: Path, ngl: int, runs: int, threads: str, decode_only: bool) -> dict[str, float]:
    """llama-bench's pp512 and tg128 at each CPU thread count in `threads` ("16,1"): each number
    is also kept per thread count (tg128_t16, ...), and pp512/tg128 are the fastest of them."""
    cmd = [str(prefix / "bin" / "llama-bench"), "-m", str(model), "-ngl", str(ngl), "-fa", "1",
           "-p", "0" if decode_only else str(N_PROMPT), "-n", str(N_GEN), "-r", str(runs), "-o", "json",
           "-t", threads, "-d", f"0,{N_DEPTH}"]
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = {}
    for row in json.loads(out):
        if row["n_prompt"] == N_PROMPT and row["n_gen"] == 0 and row["n_depth"] == 0 and not decode_only:
            test = "pp512"
        elif row["n_gen"] == N_GEN and row["n_prompt"] == 0:
            test = "tg128" if row["n_depth"] == 0 else f"tg128_d{row['n_depth']}"
        else:
            continue
        result[f"{test}_t{row['n_threads']}"] = row["avg_ts"]
        result[test] = max(result.get(test, 0.0), row["avg_ts"])
    return result


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(model: Path, ngl: int, runs: int, threads: int | None, cpu_poll: int | None = None,
         overrides: dict | None = None,
         decode_only: bool = False) -> dict[str, float]:
    from llama_cpp import Llama, SamplingParams, _core

    settings = dict(n_ctx=N_CTX, n_batch=2048, n_ubatch=512, n_gpu_layers=ngl, flash_attn=True, n_threads=threads,
                    cpu_poll=cpu_poll)
    settings.update(overrides or {})
    llm = Llama(model, **settings)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    base = llm.tokenize(PROMPT)
    prompt = (base * (N_DEPTH // len(base) + 1))[:N_DEPTH]
    long_prompt = (base * (N_PROMPT // len(base) + 1))[:N_PROMPT]
    messages = [{"role": "user", "content": PROMPT}]

    def gen(n):
        return lambda: llm.generate(prompt, max_tokens=n, sampling=greedy)

    def stream(n):
        return lambda: sum(1 for _ in llm.generate_stream(prompt, max_tokens=n, sampling=greedy))

    def chat(n):
        return lambda: llm.create_chat_completion(messages, max_tokens=n, temperature=0.0, logit_bias=eog)

    result = {}
    apis = (("generate", gen),) if decode_only else (("generate", gen), ("generate_stream", stream), ("chat", chat))
    for name, make in apis:
        t_full, t_one = median_time(make(N_GEN), runs), median_time(make(1), runs)
        result[f"{name}_tg"] = (N_GEN - 1) / (t_full - t_one)
    # llama-bench's tg loop inside our process (one fixed token, no sampling, no text), with our
    # batch and with llama_batch_get_one: tells our loop's cost from our process's.
    for key, get_one in (("bare_decode_tg", False), ("bare_get_one_tg", True)):
        _core.testing.time_bare_decode(llm._context, N_GEN, get_one)  # warm-up
        result[key] = 1000 / statistics.median(_core.testing.time_bare_decode(llm._context, N_GEN, get_one)
                                               for _ in range(runs))
    if decode_only:
        llm.close()
        return result
    t_pp = median_time(lambda: llm.generate(long_prompt, max_tokens=1, sampling=greedy), runs)
    result["pp512"] = N_PROMPT / t_pp

    # The first piece is the first token's text; random weights may start with a token that
    # is no text on its own (part of a UTF-8 character), so a plain word is made the argmax.
    word = llm.tokenize(" the", add_bos=False)[0]
    first_word = SamplingParams(temperature=0.0, logit_bias={**eog, word: 1000.0})

    def first_piece() -> float:
        # From the call to the first piece in hand; stopping the stream afterwards (which
        # waits for the token being decoded) is not part of it.
        start = time.perf_counter()
        s = llm.generate_stream(long_prompt, max_tokens=N_GEN, sampling=first_word)
        next(s)
        elapsed = time.perf_counter() - start
        s.close()
        return elapsed

    first_piece()  # warm-up
    result["first_piece_ms"] = 1000 * statistics.median(first_piece() for _ in range(runs))
    llm.close()
    return result


LCP_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, time
    import llama_cpp as lcp
    from llama_cpp import Llama
    model, ngl, runs, threads, prompt, n_gen, n_depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    llm = Llama(model, n_ctx=2048, n_batch=2048, n_ubatch=512, n_gpu_layers=ngl, flash_attn=True, n_threads=threads, verbose=False)
    base = llm.tokenize(prompt.encode())
    prompt = (base * (n_depth // len(base) + 1))[:n_depth]
    vocab = lcp.llama_model_get_vocab(llm._model.model)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if lcp.llama_vocab_is_eog(vocab, t)}
    def median_time(n):
        call = lambda: llm.create_completion(prompt, max_tokens=n, temperature=0.0, logit_bias=eog)
        call()
        times = []
        for _ in range(runs):
            t = time.perf_counter(); call(); times.append(time.perf_counter() - t)
        return statistics.median(times)
    full, one = median_time(n_gen), median_time(1)
    print(json.dumps({"completion_tg": (n_gen - 1) / (full - one)}))
    """
)


def llama_cpp_python(pkg_dir: Path, prefix: Path, model: Path, ngl: int, runs: int, threads: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(pkg_dir), LLAMA_CPP_LIB_PATH=str(prefix / "lib"),
               LD_LIBRARY_PATH=str(prefix / "lib"))
    out = subprocess.run(
        [sys.executable, "-c", LCP_SCRIPT, str(model), str(ngl), str(runs), str(threads), PROMPT, str(N_GEN), str(N_DEPTH)],
        env=env, capture_output=True, text=True, check=False, cwd="/",
    )
    if out.returncode != 0:
        raise RuntimeError(f"llama-cpp-python failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_variant(text: str) -> tuple[str, dict]:
    """NAME:key=value,key=value -> (NAME, {key: value}); values are Python literals (1, 0.5, True, None)."""
    name, _, body = text.partition(":")
    settings = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        settings[key] = ast.literal_eval(value)
    return name, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="native and ours alternate this many times")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads of native and llama-cpp-python (ours: its defaults, or --ours-threads)")
    parser.add_argument("--native-threads", help="llama-bench -t list, e.g. 16,1; native is the fastest of them "
                        "(default: --threads)")
    parser.add_argument("--ours-threads", type=int, help="LlamaConfig.n_threads for ours (default: ours' default)")
    parser.add_argument("--n-ctx", type=int, default=N_CTX, help="context of our Llama (first-piece test needs > 640)")
    parser.add_argument("--llama-cpp-python", type=Path)
    parser.add_argument("--cpu-poll", type=int, help="LlamaConfig.cpu_poll for ours (native keeps llama-bench's)")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant,
                        help="NAME:key=value,...: ours again with these LlamaConfig settings, in the same rounds")
    parser.add_argument("--decode-only", action="store_true", help="time generate and native tg128 only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    globals()["N_CTX"] = args.n_ctx
    sides = ["ours"] + [f"ours:{name}" for name, _ in args.variant]
    overrides = {"ours": {}, **{f"ours:{name}": settings for name, settings in args.variant}}

    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "ngl": args.ngl,
              "threads": args.threads, "native_threads": args.native_threads or str(args.threads),
              "ours_threads": args.ours_threads, "runs": args.runs, "rounds": args.rounds,
              "cpu_poll": args.cpu_poll, "variants": overrides, "decode_only": args.decode_only, "models": {}}
    for model in (m.resolve() for m in args.model):  # llama-cpp-python runs from /
        rounds = []
        for r in range(args.rounds):
            def run_native() -> dict[str, float]:
                return native(args.prefix, model, args.ngl, args.runs, args.native_threads or str(args.threads),
                              args.decode_only)

            # Native before and after ours: a round's native is the mean of the two (a drift
            # of the GPU's speed during the round cancels to first order), and the ratio of
            # the two (native_after/native_before) shows how far native moves by itself.
            one = {"native_before": run_native()}
            for side in sides:
                one[side] = ours(model, args.ngl, args.runs, args.ours_threads, args.cpu_poll, overrides[side],
                                 args.decode_only)
            one["native_after"] = run_native()
            one["native"] = {key: (one["native_before"][key] + one["native_after"][key]) / 2
                             for key in one["native_before"]}
            rounds.append(one)
            print(f"{model.name} round {r + 1}: {json.dumps(one)}", flush=True)
        row = {side: {key: statistics.median(r[side][key] for r in rounds) for key in rounds[0][side]}
               for side in ["native"] + sides}
        # Two ratios per number: to native's tg128 from an empty context (llama-bench's default),
        # and to native's tg128 after a prompt of N_DEPTH tokens (@d: the same work as ours,
        # which continues a prompt).
        depth_key = f"tg128_d{N_DEPTH}"
        row["ratios_by_round"] = [
            {(key if side == "ours" else f"{side}:{key}") + suffix: r[side][key] / r["native"][native_key]
             for side in sides for key in DECODE_KEYS if key in r[side]
             for suffix, native_key in (("", "tg128"), (f"@d{N_DEPTH}", depth_key))}
            for r in rounds]
        row["native_after_over_before"] = [r["native_after"]["tg128"] / r["native_before"]["tg128"] for r in rounds]
        row["rounds"] = rounds
        if args.llama_cpp_python:
            row["llama_cpp_python"] = llama_cpp_python(args.llama_cpp_python, args.prefix, model, args.ngl,
                                                       args.runs, args.threads)
        report["models"][model.name] = row
        print(f"{model.name}: ratios by round {json.dumps(row['ratios_by_round'])}", flush=True)

    print()
    print("tok/s: medians over the rounds; decode ratios: the median of the ratios within each round")
    for name, row in report["models"].items():
        ratio = {key: statistics.median(r[key] for r in row["ratios_by_round"]) for key in row["ratios_by_round"][0]}
        row["median_ratios"] = ratio
    d = f"@d{N_DEPTH}"
    if not args.decode_only:
        print()
        print(f"Decode cells: tok/s (ratio to native tg128 from an empty context | ratio to native tg128 after "
              f"{N_DEPTH} prompt tokens, the same work)")
        print()
        print(f"| model | native pp512 | native tg128 (empty, d{N_DEPTH}) | ours pp512 (ratio) | generate tg "
              "| generate_stream tg | chat tg | first piece ms vs native pp512 ms | llama-cpp-python tg (ratio) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, row in report["models"].items():
            n, o, ratio = row["native"], row["ours"], row["median_ratios"]
            pp_ms = 1000 * N_PROMPT / n["pp512"]
            lcp = row.get("llama_cpp_python", {}).get("completion_tg")
            lcp_cell = f"{lcp:,.0f} ({lcp / n['tg128']:.2f})" if lcp else "-"
            cells = " | ".join(f"{o[k]:,.1f} ({ratio[k]:.3f} \\| {ratio[k + d]:.3f})"
                               for k in ("generate_tg", "generate_stream_tg", "chat_tg"))
            print(f"| {name} | {n['pp512']:,.0f} | {n['tg128']:,.1f}, {n[f'tg128_d{N_DEPTH}']:,.1f} "
                  f"| {o['pp512']:,.0f} ({o['pp512'] / n['pp512']:.2f}) | {cells} "
                  f"| {o['first_piece_ms']:.2f} vs {pp_ms:.2f} | {lcp_cell} |")
    print()
    for name, row in report["models"].items():
        aa = row["native_after_over_before"]
        print(f"{name}: native tg128 after ours / before ours, by round: " + ", ".join(f"{x:.3f}" for x in aa))
    for name, row in report["models"].items():
        ratio = row["median_ratios"]
        print(f"{name}: bare llama_decode loop in our process (no sampling, no text): "
              f"{row['ours']['bare_decode_tg']:,.1f} tok/s ({ratio['bare_decode_tg']:.3f} of native empty); "
              f"with llama_batch_get_one: {row['ours']['bare_get_one_tg']:,.1f} ({ratio['bare_get_one_tg']:.3f})")
    print()
    print(f"| model | variant | settings | native tg128 (empty, d{N_DEPTH}) | generate tg | ratio to empty "
          f"(min-max over rounds) | ratio to d{N_DEPTH} (min-max) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, row in report["models"].items():
        for side in sides:
            key = "generate_tg" if side == "ours" else f"{side}:generate_tg"
            spans = []
            for k in (key, key + d):
                per_round = [r[k] for r in row["ratios_by_round"]]
                spans.append(f"{row['median_ratios'][k]:.3f} ({min(per_round):.3f}-{max(per_round):.3f})")
            print(f"| {name} | {side} | {overrides[side] or 'defaults'} | {row['native']['tg128']:,.1f}, "
                  f"{row['native'][f'tg128_d{N_DEPTH}']:,.1f} | {row[side]['generate_tg']:,.1f} | {spans[0]} "
                  f"| {spans[1]} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
