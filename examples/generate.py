"""Generate text from a GGUF model.

    python examples/generate.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf "Once upon a time"
"""

from __future__ import annotations

import argparse
import time

from llama_cpp import Llama, SamplingParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="The three most useful things to know about Python are")
    parser.add_argument("--model", required=True, help="path to a GGUF file")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    with Llama(args.model) as llm:
        sampling = SamplingParams(temperature=args.temperature, seed=args.seed)
        start = time.perf_counter()
        text = llm.generate(args.prompt, max_tokens=args.max_tokens, sampling=sampling)
        elapsed = time.perf_counter() - start
    print(f"{args.prompt}{text}")
    print(f"\n[{args.model}: {elapsed:.2f} s]")


if __name__ == "__main__":
    main()
