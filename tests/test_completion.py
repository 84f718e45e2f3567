"""create_completion / __call__ return llama-cpp-python's dict shapes."""

from __future__ import annotations

import math

from conftest import real_weights


@real_weights
def test_completion_shape(smollm2):
    out = smollm2.create_completion("The capital of France is", max_tokens=8, temperature=0)
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["id"].startswith("cmpl-") and out["object"] == "text_completion"
    assert isinstance(out["created"], int) and out["model"] == smollm2.model_path
    (choice,) = out["choices"]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "length"
    assert "Paris" in choice["text"]
    usage = out["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["prompt_tokens"] == smollm2.n_tokens("The capital of France is")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_call_is_create_completion(smollm2):
    a = smollm2("The capital of France is", max_tokens=6, temperature=0)
    b = smollm2.create_completion("The capital of France is", max_tokens=6, temperature=0)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


@real_weights
def test_finish_reason_stop_and_stop_strings(smollm2):
    out = smollm2.create_completion("The capital of France is", max_tokens=32, temperature=0, stop=["."])
    assert out["choices"][0]["finish_reason"] == "stop"
    assert "." not in out["choices"][0]["text"]


def test_echo(smollm2):
    out = smollm2.create_completion("The capital of France is", max_tokens=4, temperature=0, echo=True)
    assert out["choices"][0]["text"].startswith("The capital of France is")


def test_logprobs(smollm2):
    out = smollm2.create_completion("The capital of France is", max_tokens=6, temperature=0, logprobs=3)
    lp = out["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "text_offset", "token_logprobs", "top_logprobs"}
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 6
    assert "".join(lp["tokens"]) == out["choices"][0]["text"]
    assert lp["text_offset"][0] == 0
    for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert value <= 0 and math.isfinite(value)
        assert 1 <= len(top) <= 3
        # Greedy: the chosen token is the most likely one.
        assert max(top.values()) == value and top[token] == value


def test_streamed_chunks(smollm2):
    chunks = list(smollm2.create_completion("The capital of France is", max_tokens=8, temperature=0, stream=True))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == smollm2.create_completion("The capital of France is", max_tokens=8, temperature=0)["choices"][0]["text"]


def test_token_prompt(smollm2):
    tokens = smollm2.tokenize("The capital of France is")
    a = smollm2.create_completion(tokens, max_tokens=5, temperature=0)["choices"][0]["text"]
    b = smollm2.create_completion("The capital of France is", max_tokens=5, temperature=0)["choices"][0]["text"]
    assert a == b
