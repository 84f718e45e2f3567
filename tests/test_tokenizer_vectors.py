"""Our tokenizer agrees with llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf
with .inp/.out) for every vocabulary in the pinned tree that has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LLAMA_CPP_SOURCE, real_weights
from llama_cpp import Llama

SEPARATOR = b"\n__ggml_vocab_test__\n"
VOCABS = sorted(p for p in (LLAMA_CPP_SOURCE / "models").glob("ggml-vocab-*.gguf") if Path(f"{p}.inp").exists())


def read_vectors(vocab: Path) -> list[tuple[bytes, list[int]]]:
    raw = Path(f"{vocab}.inp").read_bytes()
    inputs = raw.split(SEPARATOR)
    outputs = Path(f"{vocab}.out").read_text().split("\n")
    outputs = outputs[: len(inputs)]
    assert len(inputs) == len(outputs), vocab
    return [(text, [int(t) for t in line.split()]) for text, line in zip(inputs, outputs)]


@real_weights
def test_vectors_were_found(llama_cpp_tree):
    assert len(VOCABS) >= 10, f"expected the tree's vocab test files, found {VOCABS}"


# Without the files, one case that fails (skipped in the GPU run, whose trimmed tree lacks
# them), rather than no case at all, which pytest would report as a skip.
@pytest.mark.parametrize(
    "vocab",
    VOCABS or [pytest.param(None, id="missing", marks=real_weights)],
    ids=lambda p: p.name.removeprefix("ggml-vocab-").removesuffix(".gguf"),
)
def test_tokenize_matches_vectors(vocab):
    if vocab is None:
        pytest.fail(f"no ggml-vocab-*.gguf with .inp/.out under {LLAMA_CPP_SOURCE / 'models'}: "
                    "run python scripts/fetch_llama_cpp.py", pytrace=False)
    vectors = read_vectors(vocab)
    assert vectors
    with Llama(vocab, vocab_only=True) as llm:
        for text, expected in vectors:
            got = llm.tokenize(text, add_bos=False, special=False)
            assert got == expected, f"{vocab.name}: {text!r}"
