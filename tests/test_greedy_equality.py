"""Greedy generation through our API equals what llama.cpp's own llama-completion
prints, for the same model, prompt, context shape and thread count.

On the GPU machine (LLAMA_NB_GPU_RUN=1) the models have random weights: their logits are
nearly flat, and llama-completion's default chain at ``--temp 0`` alone (top-k 40, top-p,
min-p, then temperature 0) was measured to pick other tokens than the argmax there, so the
reference runs with ``--top-k 1`` (pure argmax). Random weights also end early and at
random, so both sides ban the end-of-generation tokens and run all N_PREDICT tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import GPU_RUN, N_BATCH, N_CTX, N_THREADS, eog_tokens
from llama_cpp import Llama, SamplingParams

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Les mots en français: été, naïve, œuvre. Suite:",
]
N_PREDICT = 48
# More random-weight models for the GPU run (scripts/gpu_run.sh names m1b), os.pathsep-separated.
RANDOM_MODELS = [Path(p) for p in os.environ.get("LLAMA_NB_RANDOM_MODELS", "").split(os.pathsep) if p]


def greedy(llm, bias: dict[int, float] | None = None) -> tuple[SamplingParams, list[str]]:
    """Our greedy sampling and llama-completion's flags for the same, with ``bias`` on both."""
    bias = dict(bias or {})
    flags = ["--temp", "0"]
    if GPU_RUN:
        bias.update({t: float("-inf") for t in eog_tokens(llm)})
        flags += ["--top-k", "1"]
    flags += [arg for t, b in bias.items() for arg in ("-l", f"{t}{b:+}")]
    return SamplingParams(temperature=0.0, logit_bias=bias or None), flags


@pytest.fixture(scope="module", params=RANDOM_MODELS, ids=lambda p: p.stem)
def random_model(request):
    with Llama(request.param, n_ctx=N_CTX, n_batch=N_BATCH, n_threads=N_THREADS) as llm:
        yield llm


def check_greedy(llm, llama_completion, prompt: str) -> None:
    sampling, flags = greedy(llm)
    ours = llm.generate(prompt, max_tokens=N_PREDICT, sampling=sampling)
    theirs = llama_completion(llm.model_path, prompt, N_PREDICT, *flags)
    assert ours, "generation produced no text"
    assert ours == theirs


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_greedy_matches_llama_completion(request, llama_completion, model, prompt):
    check_greedy(request.getfixturevalue(model), llama_completion, prompt)


@pytest.mark.skipif(not RANDOM_MODELS, reason="LLAMA_NB_RANDOM_MODELS names no model (only the GPU run has them)")
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_llama_completion_on_more_random_models(random_model, llama_completion, prompt):
    check_greedy(random_model, llama_completion, prompt)


def test_greedy_is_deterministic(smollm2):
    first = smollm2.generate("The capital of France is", max_tokens=16, sampling=SamplingParams.greedy())
    second = smollm2.generate("The capital of France is", max_tokens=16, sampling=SamplingParams.greedy())
    assert first == second


def test_greedy_with_logit_bias_matches_llama_completion(smollm2, llama_completion):
    # Greedy with only logit biases takes the argmax straight from the logits (no sampler
    # chain); it must pick what llama.cpp's chain picks: banned tokens never, boosted ones
    # where the bias lifts them to the top.
    prompt = "The capital of France is"
    plain_sampling, _ = greedy(smollm2)
    plain = smollm2.generate(prompt, max_tokens=8, sampling=plain_sampling)
    banned = smollm2.tokenize(plain, add_bos=False)[:3]
    boosted = smollm2.tokenize(" beautiful", add_bos=False)[0]
    sampling, flags = greedy(smollm2, {**{t: float("-inf") for t in banned}, boosted: 4.0})
    ours = smollm2.generate(prompt, max_tokens=N_PREDICT, sampling=sampling)
    assert ours != smollm2.generate(prompt, max_tokens=N_PREDICT, sampling=plain_sampling)
    assert ours == llama_completion(smollm2.model_path, prompt, N_PREDICT, *flags)
