"""Side-by-side throughput: native llama.cpp, this binding, and llama-cpp-python, in one run
over one llama.cpp build and the same model files. Prints a table of tok/s and ratios to
native, and writes JSON.

    python benchmarks/bench.py --prefix PREFIX --model M.gguf [--model M2.gguf ...]
        [--ngl 99] [--llama-cpp-python DIR] [--runs 5] [--rounds 3] [--json out.json]

PREFIX is a llama.cpp build laid out by scripts/build_llama_cpp.sh (lib/, bin/llama-bench).
Our package must be importable and linked against PREFIX/lib (prebuilt mode). DIR holds
llama-cpp-python's `llama_cpp` Python package (from its 0.3.36 sdist); it runs in a
subprocess over PREFIX/lib through LLAMA_CPP_LIB_PATH, since both packages are `llama_cpp`.

Method (the same for both bindings): greedy, end-of-generation tokens masked with a -inf
logit bias so every run makes exactly 128 tokens, one warm-up, median of --runs.
Decode tok/s = 128 / (wall time of the call - wall time of the same call with max_tokens=1),
so prompt processing is excluded and all per-token host work is included.
Native and ours alternate for --rounds rounds (the GPU's clocks drift over a minute; a ratio
is taken within a round), and the table shows the median of each number over the rounds.
"""

from __future__ import annotations

import argparse
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
N_PROMPT = 512
N_CTX = 2048  # --n-ctx
DECODE_KEYS = ("generate_tg", "generate_stream_tg", "chat_tg", "generate_device_sampling_tg")
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def native(prefix: Path, model: Path, ngl: int, runs: int, threads: int) -> dict[str, float]:
    cmd = [str(prefix / "bin" / "llama-bench"), "-m", str(model), "-ngl", str(ngl), "-fa", "1",
           "-p", str(N_PROMPT), "-n", str(N_GEN), "-r", str(runs), "-o", "json", "-t", str(threads)]
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    result = {}
    for row in rows:
        if row["n_prompt"] == N_PROMPT and row["n_gen"] == 0:
            result["pp512"] = row["avg_ts"]
        elif row["n_gen"] == N_GEN and row["n_prompt"] == 0:
            result["tg128"] = row["avg_ts"]
    return result


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(model: Path, ngl: int, runs: int, threads: int, cpu_poll: int | None = None,
         compare_device_sampling: bool = False) -> dict[str, float]:
    from llama_cpp import Llama, SamplingParams

    settings = dict(n_ctx=N_CTX, n_batch=2048, n_ubatch=512, n_gpu_layers=ngl, flash_attn=True, n_threads=threads,
                    cpu_poll=cpu_poll)
    llm = Llama(model, **settings)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    prompt = llm.tokenize(PROMPT)
    long_prompt = (prompt * (N_PROMPT // len(prompt) + 1))[:N_PROMPT]
    messages = [{"role": "user", "content": PROMPT}]

    def gen(n):
        return lambda: llm.generate(prompt, max_tokens=n, sampling=greedy)

    def stream(n):
        return lambda: sum(1 for _ in llm.generate_stream(prompt, max_tokens=n, sampling=greedy))

    def chat(n):
        return lambda: llm.create_chat_completion(messages, max_tokens=n, temperature=0.0, logit_bias=eog)

    result = {}
    for name, make in (("generate", gen), ("generate_stream", stream), ("chat", chat)):
        t_full, t_one = median_time(make(N_GEN), runs), median_time(make(1), runs)
        result[f"{name}_tg"] = (N_GEN - 1) / (t_full - t_one)
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
    if compare_device_sampling:
        # The same generate with greedy sampling inside the graph (LlamaConfig.device_sampling).
        llm = Llama(model, **settings, device_sampling=True)
        t_full, t_one = median_time(gen(N_GEN), runs), median_time(gen(1), runs)
        result["generate_device_sampling_tg"] = (N_GEN - 1) / (t_full - t_one)
        llm.close()
    return result


LCP_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, time
    import llama_cpp as lcp
    from llama_cpp import Llama
    model, ngl, runs, threads, prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    llm = Llama(model, n_ctx=2048, n_batch=2048, n_ubatch=512, n_gpu_layers=ngl, flash_attn=True, n_threads=threads, verbose=False)
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
        [sys.executable, "-c", LCP_SCRIPT, str(model), str(ngl), str(runs), str(threads), PROMPT, str(N_GEN)],
        env=env, capture_output=True, text=True, check=False, cwd="/",
    )
    if out.returncode != 0:
        raise RuntimeError(f"llama-cpp-python failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="native and ours alternate this many times")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=N_CTX, help="context of our Llama (first-piece test needs > 640)")
    parser.add_argument("--llama-cpp-python", type=Path)
    parser.add_argument("--cpu-poll", type=int, help="LlamaConfig.cpu_poll for ours (native keeps llama-bench's)")
    parser.add_argument("--device-sampling", action="store_true", help="also time generate with device_sampling=True")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    globals()["N_CTX"] = args.n_ctx

    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "ngl": args.ngl,
              "threads": args.threads, "runs": args.runs, "rounds": args.rounds,
              "cpu_poll": args.cpu_poll, "models": {}}
    for model in (m.resolve() for m in args.model):  # llama-cpp-python runs from /
        rounds = []
        for r in range(args.rounds):
            one = {"native": native(args.prefix, model, args.ngl, args.runs, args.threads),
                   "ours": ours(model, args.ngl, args.runs, args.threads, args.cpu_poll, args.device_sampling)}
            rounds.append(one)
            print(f"{model.name} round {r + 1}: {json.dumps(one)}", flush=True)
        row = {side: {key: statistics.median(r[side][key] for r in rounds) for key in rounds[0][side]}
               for side in ("native", "ours")}
        row["ratios_by_round"] = [
            {key: r["ours"][key] / r["native"]["tg128"] for key in DECODE_KEYS if key in r["ours"]}
            for r in rounds]
        row["rounds"] = rounds
        if args.llama_cpp_python:
            row["llama_cpp_python"] = llama_cpp_python(args.llama_cpp_python, args.prefix, model, args.ngl,
                                                       args.runs, args.threads)
        report["models"][model.name] = row
        print(f"{model.name}: ratios by round {json.dumps(row['ratios_by_round'])}", flush=True)

    print()
    print("tok/s: medians over the rounds; decode ratios: the median of the ratios within each round")
    print()
    print("| model | native pp512 | native tg128 | ours pp512 (ratio) | generate tg (ratio) | generate_stream tg "
          "(ratio) | chat tg (ratio) | first piece ms vs native pp512 ms | llama-cpp-python tg (ratio) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in report["models"].items():
        n, o = row["native"], row["ours"]
        pp_ms = 1000 * N_PROMPT / n["pp512"]
        lcp = row.get("llama_cpp_python", {}).get("completion_tg")
        lcp_cell = f"{lcp:,.0f} ({lcp / n['tg128']:.2f})" if lcp else "-"
        ratio = {key: statistics.median(r[key] for r in row["ratios_by_round"]) for key in row["ratios_by_round"][0]}
        print(f"| {name} | {n['pp512']:,.0f} | {n['tg128']:,.1f} | {o['pp512']:,.0f} ({o['pp512'] / n['pp512']:.2f}) "
              f"| {o['generate_tg']:,.1f} ({ratio['generate_tg']:.3f}) "
              f"| {o['generate_stream_tg']:,.1f} ({ratio['generate_stream_tg']:.3f}) "
              f"| {o['chat_tg']:,.1f} ({ratio['chat_tg']:.3f}) "
              f"| {o['first_piece_ms']:.2f} vs {pp_ms:.2f} | {lcp_cell} |")
        if "generate_device_sampling_tg" in ratio:
            print(f"|   {name}, `generate` with device_sampling=True | | | | "
                  f"{o['generate_device_sampling_tg']:,.1f} ({ratio['generate_device_sampling_tg']:.3f}) | | | | |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
