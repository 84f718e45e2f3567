"""Greedy generation through our API equals what llama.cpp's own llama-completion
prints, for the same model, prompt, context shape and thread count."""

from __future__ import annotations

import pytest

from conftest import N_BATCH, N_CTX, N_THREADS
from llama_cpp import SamplingParams

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Les mots en français: été, naïve, œuvre. Suite:",
]
N_PREDICT = 48


def completion_text(reference_tool, model_path, prompt: str, *extra: str) -> str:
    out = reference_tool(
        "llama-completion", "-m", str(model_path), "-p", prompt, "-n", str(N_PREDICT), "--temp", "0",
        "-no-cnv", "--no-display-prompt", "--no-warmup", "-c", str(N_CTX), "-b", str(N_BATCH),
        "-t", str(N_THREADS), "-s", "1", "-ngl", "99", *extra,
    )
    # llama-completion prints the generated text, " [end of text]\n" if the model ended
    # it, then a final "\n\n".
    assert out.endswith(b"\n\n"), out[-40:]
    out = out[:-2]
    out = out.removesuffix(b" [end of text]\n")
    return out.decode("utf-8", errors="replace")


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_greedy_matches_llama_completion(request, reference_tool, model, prompt):
    llm = request.getfixturevalue(model)
    ours = llm.generate(prompt, max_tokens=N_PREDICT, sampling=SamplingParams.greedy())
    theirs = completion_text(reference_tool, llm.model_path, prompt)
    assert ours, "generation produced no text"
    assert ours == theirs


def test_greedy_is_deterministic(smollm2):
    first = smollm2.generate("The capital of France is", max_tokens=16, sampling=SamplingParams.greedy())
    second = smollm2.generate("The capital of France is", max_tokens=16, sampling=SamplingParams.greedy())
    assert first == second


def test_greedy_with_logit_bias_matches_llama_completion(smollm2, reference_tool):
    # Greedy with only logit biases takes the argmax straight from the logits (no sampler
    # chain); it must pick what llama.cpp's chain picks: banned tokens never, boosted ones
    # where the bias lifts them to the top.
    prompt = "The capital of France is"
    plain = smollm2.generate(prompt, max_tokens=8, sampling=SamplingParams.greedy())
    banned = smollm2.tokenize(plain, add_bos=False)[:3]
    boosted = smollm2.tokenize(" beautiful", add_bos=False)[0]
    bias = {**{t: float("-inf") for t in banned}, boosted: 4.0}
    ours = smollm2.generate(prompt, max_tokens=N_PREDICT, sampling=SamplingParams(temperature=0.0, logit_bias=bias))
    flags = [arg for t, b in bias.items() for arg in ("-l", f"{t}{b:+}")]
    assert ours != smollm2.generate(prompt, max_tokens=N_PREDICT, sampling=SamplingParams.greedy())
    assert ours == completion_text(reference_tool, smollm2.model_path, prompt, *flags)
