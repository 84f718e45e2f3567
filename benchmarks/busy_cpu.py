"""CPU threads on a busy machine (issue 11, item 4): ours with default threads, n_threads=1 and
n_threads=2 against native llama-bench -t 1 and -t 2, on a quiet machine and with one competing
process, in one run over one llama.cpp build. Prints medians over --rounds and writes JSON.

    python benchmarks/busy_cpu.py --prefix PREFIX --llama-bench PATH --model M.gguf
        [--rounds 3] [--runs 3] [--json out.json]

PREFIX/lib holds the libllama our package is linked against; PATH is a llama-bench built over
the same libraries (default PREFIX/bin/llama-bench). "busy" is one `python -c 'while True: pass'`
started for the condition and killed after it. Each round times quiet, then busy.
Measures, greedy with end-of-generation masked so every call makes the tokens asked for:
- tg: tok/s of the one-token decodes of a 64-token `generate` (llama.cpp's perf counters, as
  llama-bench counts), median of --runs calls (native: llama-bench tg64);
- prompt: milliseconds of a 6-token prompt and its first token (max_tokens=1, the cache emptied
  first; native: llama-bench pp6, 6 / its tok/s).
/proc/loadavg is recorded before each condition: other work on the machine loads it too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_GEN = 64
PROMPT_TOKENS = 6
VARIANTS = {"default": {}, "t1": {"n_threads": 1}, "t2": {"n_threads": 2}}
NATIVE_THREADS = (1, 2)


def native(bench: Path, prefix: Path, model: Path, runs: int) -> dict[str, float]:
    cmd = [str(bench), "-m", str(model), "-p", str(PROMPT_TOKENS), "-n", str(N_GEN), "-r", str(runs),
           "-t", ",".join(map(str, NATIVE_THREADS)), "-o", "json"]
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = {}
    for row in json.loads(out):
        t = row["n_threads"]
        if row["n_gen"] == N_GEN:
            result[f"native_t{t}_tg"] = row["avg_ts"]
        elif row["n_prompt"] == PROMPT_TOKENS:
            result[f"native_t{t}_prompt_ms"] = 1000.0 * PROMPT_TOKENS / row["avg_ts"]
    return result


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(llm, prompt: list[int], greedy, runs: int) -> dict[str, float]:
    def call(n: int):
        return lambda: llm.generate(prompt, max_tokens=n, sampling=greedy, reset_kv_cache=True)

    t1 = median_time(call(1), runs)
    call(N_GEN)()  # warm-up
    rates = []
    for _ in range(runs):
        llm.perf_reset()
        call(N_GEN)()
        perf = llm.perf()
        rates.append(1000.0 * perf["n_eval"] / perf["t_eval_ms"])
    return {"tg": statistics.median(rates), "prompt_ms": 1000.0 * t1, "threads_after": llm._context.n_threads}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", type=Path, default=Path(os.environ.get("LLAMA_NB_REFERENCE_PREFIX", "")))
    ap.add_argument("--llama-bench", type=Path)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    bench = args.llama_bench or args.prefix / "bin" / "llama-bench"

    from llama_cpp import Llama, SamplingParams

    models = {name: Llama(str(args.model), n_ctx=512, n_gpu_layers=0, **kw) for name, kw in VARIANTS.items()}
    first = next(iter(models.values()))
    eog = {t: float("-inf") for t in range(first.n_vocab()) if first.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    prompt = first.tokenize("Once upon a time there was a")[:PROMPT_TOKENS]
    assert len(prompt) == PROMPT_TOKENS, prompt

    rounds: list[dict[str, dict[str, float | str]]] = []
    for r in range(args.rounds):
        this: dict[str, dict[str, float | str]] = {}
        for condition in ("quiet", "busy"):
            hog = None
            if condition == "busy":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                row: dict[str, float | str] = {"loadavg_before": loadavg()}
                for name, llm in models.items():
                    for key, value in ours(llm, prompt, greedy, args.runs).items():
                        row[f"ours_{name}_{key}"] = value
                row.update(native(bench, args.prefix, args.model, args.runs))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            this[condition] = row
            print(f"round {r + 1} {condition}: " + ", ".join(
                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        rounds.append(this)
    for llm in models.values():
        llm.close()

    keys = [f"ours_{n}" for n in VARIANTS] + [f"native_t{t}" for t in NATIVE_THREADS]
    med: dict[str, dict[str, float]] = {}
    for condition in ("quiet", "busy"):
        med[condition] = {}
        for k in keys:
            for metric in ("tg", "prompt_ms"):
                med[condition][f"{k}_{metric}"] = statistics.median(
                    float(rd[condition][f"{k}_{metric}"]) for rd in rounds)
    ratios = {
        "busy_default_over_t1_tg": med["busy"]["ours_default_tg"] / med["busy"]["ours_t1_tg"],
        "busy_t1_over_default_prompt_ms": med["busy"]["ours_t1_prompt_ms"] / med["busy"]["ours_default_prompt_ms"],
        "quiet_default_over_native_best_tg": med["quiet"]["ours_default_tg"] / max(
            med["quiet"][f"native_t{t}_tg"] for t in NATIVE_THREADS),
        "busy_default_over_native_best_tg": med["busy"]["ours_default_tg"] / max(
            med["busy"][f"native_t{t}_tg"] for t in NATIVE_THREADS),
    }

    print(f"\nmedians over {args.rounds} rounds: tg tok/s | {PROMPT_TOKENS}-token prompt ms")
    print(f"| {'':14} | quiet tg | busy tg | quiet prompt ms | busy prompt ms |")
    for k in keys:
        q, b = med["quiet"], med["busy"]
        print(f"| {k:14} | {q[k + '_tg']:8.1f} | {b[k + '_tg']:7.1f} | {q[k + '_prompt_ms']:15.1f} | "
              f"{b[k + '_prompt_ms']:14.1f} |")
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")

    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "commit": commit, "machine": platform.node(), "cpus": os.cpu_count(), "model": args.model.name,
            "rounds": rounds, "medians": med, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
