"""Speculative decoding, side by side in one run: a model rewriting a given ~300-token text
("Repeat the following text exactly:") with plain greedy decoding and with
``LlamaConfig(speculative="ngram")`` (or a draft model), same prompt, same settings.

    python benchmarks/bench_speculative.py [--model M.gguf] [--threads 2] [--runs 3]
        [--draft-model D.gguf] [--draft-max 16] [--type ngram-simple] [--json out.json]
        [-ngl 99 --native PREFIX]   # on a GPU: also native llama-bench tg128 of the same model

Method: greedy, at most --max-tokens tokens. Each configuration gets its own Llama; one
warm-up call, then --runs timed calls of the whole generation alternating plain/speculative
(median). Decode tok/s = (tokens - 1) / (time of the generation - time of a 1-token call with
the same prompt), i.e. prompt processing excluded; end-to-end tok/s includes it. Also prints
accepted proposals per step (Llama.perf) and whether the texts are identical.
--type picks another llama.cpp n-gram method for "ngram" (ngram-map-k, ngram-mod, ...) to
compare them. With --native PREFIX, that llama.cpp's `llama-bench -p 0 -n 128` (flash attention,
the same offload and threads) runs in the same process run, and the speculative decode rate is
reported over native's tg128 (issue 15: "tok/s above native llama-bench tg128").
With --native-speculative BIN (a folder holding llama.cpp's `llama-completion` and the example
`llama-speculative-simple`, which drives the same common_speculative code), native runs the same
prompt plainly (llama-completion) and with the same n-gram method, key size and draft_max, and its
own speedup is reported beside ours: what llama.cpp itself gains on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from llama_cpp import Llama, SamplingParams, _speculative

TEXT = """\
The old harbour town of Port Elwyn sits at the mouth of a narrow river, where fishing boats have \
tied up along the stone quay for more than three hundred years. Every morning before sunrise the \
market opens beside the water, and traders lay out crates of mackerel, crab and oysters on beds of \
crushed ice. By nine o'clock most of the catch has been sold to restaurants in the valley, and the \
fishermen gather in the small cafe on Chapel Street to drink strong tea and argue about the weather.

In the summer the town fills with visitors who come to walk the cliff path, swim in the sheltered \
cove and photograph the lighthouse on Gull Point. The lighthouse was built in 1858 after a storm \
drove four merchant ships onto the rocks in a single night. Its lamp was tended by three families \
in turn until it was automated in 1981, and the keeper's cottage now houses a museum of maps, \
logbooks and brass instruments.

The town council has recently approved a plan to repair the harbour wall, which was damaged by high \
tides last winter. Work will begin in October, when the number of visitors falls, and is expected \
to take eighteen months. During that time the eastern half of the quay will be closed, and boats \
will moor at temporary pontoons near the old lifeboat station. Residents have been invited to a \
public meeting next Thursday evening to hear more about the project and to ask questions.
"""


def prompt_text() -> str:
    # The text in quotes and the reply opened with them: SmolLM2-135M then copies most of it
    # (without the quotes it paraphrases from the first sentence on).
    return (f'<|im_start|>user\nRepeat the following text exactly:\n"""\n{TEXT}"""<|im_end|>\n'
            f'<|im_start|>assistant\n"""\n')


def timed(llm: Llama, prompt: str, max_tokens: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    text = llm.generate(prompt, max_tokens, sampling=SamplingParams(temperature=0.0))
    return time.perf_counter() - t0, text


def native_tg128(prefix: Path, model: str, ngl: int, threads: int | None) -> float:
    """Native llama-bench's tg128 (decode tok/s after an empty prompt), median of its 5 repetitions."""
    cmd = [str(prefix / "bin" / "llama-bench"), "-m", model, "-p", "0", "-n", "128", "-ngl", str(ngl), "-fa", "1",
           "-r", "5", "-o", "json"] + (["-t", str(threads)] if threads else [])
    out = subprocess.run(cmd, env=dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib")), capture_output=True,
                         text=True, check=True).stdout
    return float(statistics.median(json.loads(out)[0]["samples_ts"]))


def native_decode(bin_dir: Path, model: str, prompt: str, max_tokens: int, threads: int | None,
                  spec_type: str | None, draft_max: int, runs: int) -> dict[str, float]:
    """Native decode tok/s after the prompt, median of runs: plain through `llama-completion`
    (its eval plus sampling time), speculative through `llama-speculative-simple` (its "decoded N
    tokens in S seconds", the decode loop's wall time)."""
    import re
    import tempfile

    from bench_cpu import completion_timings  # this folder's CPU benchmark reads llama-completion

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(prompt)
    cmd = ["-m", model, "-f", f.name, "-n", str(max_tokens), "-c", "2048", "--temp", "0"]
    cmd += ["-t", str(threads), "-tb", str(threads)] if threads else []
    if spec_type is None:
        cmd = [str(bin_dir / "llama-completion"), *cmd, "-no-cnv"]
    else:
        cmd = [str(bin_dir / "llama-speculative-simple"), *cmd, "--spec-type", spec_type,
               "--spec-draft-n-max", str(draft_max),
               # ours: keys of NGRAM_SIZE tokens, proposals of up to draft_max (src/engine/speculator.cpp)
               "--spec-ngram-map-k-size-n", str(_speculative.NGRAM_SIZE), "--spec-ngram-map-k-size-m", str(draft_max)]
    speeds = []
    try:
        for _ in range(runs):
            out = subprocess.run(cmd, env=dict(os.environ, LD_LIBRARY_PATH=str(bin_dir)), capture_output=True,
                                 text=True, check=True, stdin=subprocess.DEVNULL)
            if spec_type is None:
                speeds.append(completion_timings(out.stderr)["wall_decode_tok_s"])
                continue
            found = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds", out.stderr + out.stdout)
            if not found:
                raise RuntimeError(f"cannot read llama-speculative-simple's speed:\n{out.stderr[-2000:]}")
            speeds.append(int(found.group(1)) / float(found.group(2)))
    finally:
        os.unlink(f.name)
    return {"decode_tok_s": round(statistics.median(speeds), 1), "runs": [round(v, 1) for v in speeds]}


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(root / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (0: each side's default, as on a GPU)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--draft-max", type=int, default=16)
    ap.add_argument("--draft-model", default=None, help="speculate with this draft model instead of n-grams")
    ap.add_argument("--type", default=None, help="llama.cpp n-gram method behind speculative='ngram'")
    ap.add_argument("--json", default=None)
    ap.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, help="layers offloaded (model and draft)")
    ap.add_argument("--native", type=Path, default=None, help="a llama.cpp prefix: also run its llama-bench tg128")
    ap.add_argument("--native-speculative", type=Path, default=None, metavar="BIN",
                    help="a folder with llama-completion and llama-speculative-simple: native's own n-gram "
                         "speedup beside ours")
    args = ap.parse_args()
    if args.type:
        _speculative.NGRAM_TYPE = args.type

    threads = args.threads or None
    common = {"n_ctx": 2048, "n_batch": 512, "n_threads": threads, "n_threads_batch": threads,
              "n_gpu_layers": args.n_gpu_layers}
    spec_config = ({"draft_model": args.draft_model, "draft_n_gpu_layers": args.n_gpu_layers}
                   if args.draft_model else {"speculative": "ngram"})
    prompt = prompt_text()
    with Llama(args.model, **common) as plain, \
            Llama(args.model, **common, **spec_config, draft_max=args.draft_max) as spec:
        n_prompt = len(plain.tokenize(prompt, special=True))
        n_text = len(plain.tokenize(TEXT, add_bos=False))
        llms = {"plain": plain, "speculative": spec}
        for llm in llms.values():  # warm-up
            timed(llm, prompt, 16)
        first = {name: min(timed(llm, prompt, 1)[0] for _ in range(args.runs)) for name, llm in llms.items()}
        times: dict[str, list[float]] = {name: [] for name in llms}
        texts: dict[str, str] = {}
        spec.perf_reset()
        for _ in range(args.runs):
            for name, llm in llms.items():
                seconds, texts[name] = timed(llm, prompt, args.max_tokens)
                times[name].append(seconds)
        perf = spec.perf()
        n_tokens = {name: len(llm.tokenize(texts[name], add_bos=False)) for name, llm in llms.items()}

    result: dict[str, object] = {
        "model": Path(args.model).name, "threads": args.threads, "prompt_tokens": n_prompt,
        "text_tokens": n_text, "speculation": spec_config | {"draft_max": args.draft_max,
                                                             "ngram_type": _speculative.NGRAM_TYPE},
        "identical": texts["plain"] == texts["speculative"],
    }
    for name in llms:
        total = statistics.median(times[name])
        result[name] = {
            "tokens": n_tokens[name], "seconds": round(total, 3),
            "end_to_end_tok_s": round(n_tokens[name] / total, 1),
            "decode_tok_s": round((n_tokens[name] - 1) / max(total - first[name], 1e-9), 1),
        }
    result["speedup_decode"] = round(result["speculative"]["decode_tok_s"] / result["plain"]["decode_tok_s"], 2)
    result["speedup_end_to_end"] = round(
        result["speculative"]["end_to_end_tok_s"] / result["plain"]["end_to_end_tok_s"], 2)
    if args.native:
        tg128 = native_tg128(args.native, args.model, args.n_gpu_layers, threads)
        result["native_tg128_tok_s"] = round(tg128, 1)
        result["speculative_decode_vs_native_tg128"] = round(result["speculative"]["decode_tok_s"] / tg128, 3)
        result["plain_decode_vs_native_tg128"] = round(result["plain"]["decode_tok_s"] / tg128, 3)
    if args.native_speculative and not args.draft_model:
        kind = _speculative.NGRAM_TYPE
        plain_native = native_decode(args.native_speculative, args.model, prompt, args.max_tokens, threads,
                                     None, args.draft_max, args.runs)
        spec_native = native_decode(args.native_speculative, args.model, prompt, args.max_tokens, threads,
                                    kind, args.draft_max, args.runs)
        result["native_plain"], result["native_speculative"] = plain_native, spec_native
        result["native_speedup_decode"] = round(spec_native["decode_tok_s"] / plain_native["decode_tok_s"], 2)
    steps = perf["n_spec_steps"]
    result["accepted_per_step"] = round(perf["accepted_per_step"], 2)
    result["tokens_per_step"] = round((perf["n_accepted"] + steps) / steps, 2) if steps else 0.0
    result["acceptance_rate"] = round(perf["n_accepted"] / perf["n_drafted"], 3) if perf["n_drafted"] else 0.0

    print(f"{result['model']}, {args.threads} threads, prompt {n_prompt} tokens (text {n_text}), "
          f"{spec_config}, draft_max={args.draft_max}, ngram type {_speculative.NGRAM_TYPE}")
    for name in llms:
        r = result[name]
        print(f"  {name:12s} {r['tokens']:4d} tokens  {r['seconds']:6.2f} s  "
              f"decode {r['decode_tok_s']:7.1f} tok/s  end-to-end {r['end_to_end_tok_s']:7.1f} tok/s")
    print(f"  speedup: decode {result['speedup_decode']}x, end-to-end {result['speedup_end_to_end']}x")
    print(f"  accepted per step {result['accepted_per_step']}, tokens per step {result['tokens_per_step']}, "
          f"acceptance {result['acceptance_rate']}")
    print(f"  texts identical: {result['identical']}")
    if "native_speedup_decode" in result:
        print(f"  native llama-speculative-simple: plain {result['native_plain']['decode_tok_s']} tok/s, "
              f"{_speculative.NGRAM_TYPE} {result['native_speculative']['decode_tok_s']} tok/s: speedup "
              f"{result['native_speedup_decode']}x (ours {result['speedup_decode']}x)")
    if args.native:
        print(f"  native llama-bench tg128: {result['native_tg128_tok_s']} tok/s; speculative decode / native "
              f"{result['speculative_decode_vs_native_tg128']}, plain / native {result['plain_decode_vs_native_tg128']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
