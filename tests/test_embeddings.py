"""Embeddings: embed() and create_embedding() on a real model, many inputs per decode."""

from __future__ import annotations

import math

import pytest

from conftest import EMBEDDING_TOLERANCE
from llama_cpp import Llama, ValidationError

TEXTS = ["The cat sat on the mat.", "A dog barked at the mailman.", "Stock prices rose sharply today.",
         "Quantum computers use qubits."]


@pytest.fixture(scope="module")
def embedder(smollm2_path):
    with Llama(smollm2_path, embeddings=True, n_ctx=1024, n_threads=2) as llm:
        yield llm


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def test_single_text(embedder):
    v = embedder.embed("Hello world")
    assert len(v) == embedder.n_embd() and all(isinstance(x, float) for x in v)
    assert norm(v) == pytest.approx(1.0, abs=1e-5)


def test_unnormalised(embedder):
    assert norm(embedder.embed("Hello world", normalize=False)) != pytest.approx(1.0, abs=1e-3)


def test_batch_equals_one_by_one(embedder):
    batch = embedder.embed(TEXTS)
    assert len(batch) == len(TEXTS)
    for text, vector in zip(TEXTS, batch):
        single = embedder.embed(text)
        assert max(abs(a - b) for a, b in zip(vector, single)) < EMBEDDING_TOLERANCE


def test_deterministic_and_distinct(embedder):
    a, b = embedder.embed([TEXTS[0], TEXTS[0]]), embedder.embed(TEXTS[2])
    assert a[0] == pytest.approx(a[1], abs=1e-5)
    assert a[0] != pytest.approx(b, abs=1e-3)


def test_create_embedding_shape(embedder):
    out = embedder.create_embedding(TEXTS[:2])
    assert out["object"] == "list" and out["model"] == embedder.model_path
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == embedder.n_embd() for d in out["data"])
    n = sum(len(embedder.tokenize(t)) for t in TEXTS[:2])
    assert out["usage"] == {"prompt_tokens": n, "total_tokens": n}


def test_pooling_choice(smollm2_path):
    with Llama(smollm2_path, embeddings=True, pooling_type="last", n_ctx=512, n_threads=2) as last, \
         Llama(smollm2_path, embeddings=True, pooling_type="mean", n_ctx=512, n_threads=2) as mean:
        assert last.embed(TEXTS[0]) != pytest.approx(mean.embed(TEXTS[0]), abs=1e-3)


def test_requires_embeddings_mode(smollm2):
    with pytest.raises(ValidationError, match=r"embeddings need LlamaConfig\(embeddings=True\)"):
        smollm2.embed("Hello")


def test_bad_input(embedder):
    with pytest.raises(ValidationError, match="input must be a str or a list of str"):
        embedder.embed([1, 2])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="pooling_type"):
        Llama(embedder.model_path, embeddings=True, pooling_type="median")
