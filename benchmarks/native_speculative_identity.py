"""Does llama.cpp itself keep greedy text identical under speculation? Its `llama-completion`
(plain greedy) against its `llama-speculative-simple` (the n-gram method, key size and draft
length of our ``speculative="ngram"``) on bench_speculative's prompt, flash attention on and off.

    python benchmarks/native_speculative_identity.py --bin PREFIX.build/bin

Prints where the generated texts first differ (whitespace normalised: the two tools print
their output differently). Same question for ours: bench_speculative.py's "texts identical".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from bench_speculative import prompt_text

from llama_cpp import _speculative


def generated(stdout: str) -> str:
    """The reply after the chat prompt, whitespace normalised."""
    key = "assistant\n"
    reply = stdout[stdout.rfind(key) + len(key):].replace("[end of text]", "")
    return " ".join(reply.split())


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, required=True, help="folder with llama-completion and llama-speculative-simple")
    ap.add_argument("--model", default=str(root / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--draft-max", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(prompt_text())
    base = ["-m", args.model, "-f", f.name, "-n", str(args.max_tokens), "-c", "2048", "--temp", "0",
            "-t", str(args.threads), "-tb", str(args.threads)]
    env = dict(os.environ, LD_LIBRARY_PATH=str(args.bin))

    def run(tool: str, *extra: str) -> str:
        return subprocess.run([str(args.bin / tool), *base, *extra], env=env, capture_output=True, text=True,
                              check=True, stdin=subprocess.DEVNULL).stdout

    try:
        for fa in ("on", "off"):
            plain = generated(run("llama-completion", "-fa", fa, "-no-cnv"))
            spec = generated(run("llama-speculative-simple", "-fa", fa, "--spec-type", "ngram-map-k",
                                 "--spec-draft-n-max", str(args.draft_max),
                                 "--spec-ngram-map-k-size-n", str(_speculative.NGRAM_SIZE),
                                 "--spec-ngram-map-k-size-m", str(args.draft_max)))
            n = next((i for i, (a, b) in enumerate(zip(plain, spec)) if a != b), min(len(plain), len(spec)))
            print(f"flash attention {fa}: identical {plain == spec}; first difference at character {n} "
                  f"of {len(plain)} / {len(spec)}")
            if plain != spec:
                print(f"  plain:       ...{plain[max(0, n - 40):n + 60]!r}")
                print(f"  speculative: ...{spec[max(0, n - 40):n + 60]!r}")
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
