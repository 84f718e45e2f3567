"""Greedy sampling inside the model's graph (LlamaConfig.device_sampling, llama.cpp's backend
sampling): the same tokens as sampling on the host, and everything that needs the host still
works on a context that samples on the device.

The CPU backend runs the same sampling graph as a GPU, so these run everywhere.
"""

from __future__ import annotations

import asyncio

import pytest

from conftest import N_THREADS
from llama_cpp import Llama, LlamaConfig, LlamaPool, SamplingParams, ValidationError

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The rules of chess"]


@pytest.fixture(scope="module")
def on_device(smollm2_path):
    with Llama(smollm2_path, n_ctx=512, n_threads=N_THREADS, device_sampling=True) as llm:
        yield llm


@pytest.fixture(scope="module")
def on_host(smollm2_path):
    with Llama(smollm2_path, n_ctx=512, n_threads=N_THREADS, device_sampling=False) as llm:
        yield llm


def test_the_setting_reaches_the_context(on_device, on_host):
    assert on_device._context.device_sampling is True
    assert on_host._context.device_sampling is False


def test_greedy_on_the_device_equals_greedy_on_the_host(on_device, on_host):
    greedy = SamplingParams(temperature=0.0)
    for prompt in PROMPTS:
        assert on_device.generate(prompt, max_tokens=32, sampling=greedy) == on_host.generate(
            prompt, max_tokens=32, sampling=greedy
        )


def test_logit_biases_apply_on_the_device(on_device, on_host):
    # Ban the host's first choice: the device must pick the same runner-up.
    prompt = "The capital of France is"
    on_host.generate(prompt, max_tokens=2, sampling=SamplingParams.greedy())
    first = on_host.cached_tokens()[-1]  # the second token is sampled but never decoded
    assert first not in on_host.tokenize(prompt)[-1:]
    banned = SamplingParams(temperature=0.0, logit_bias={first: float("-inf")})
    device_text = on_device.generate(prompt, max_tokens=8, sampling=banned)
    assert device_text == on_host.generate(prompt, max_tokens=8, sampling=banned)
    assert on_device.cached_tokens()[len(on_device.tokenize(prompt))] != first


def test_stop_strings_and_streaming_with_device_sampling(on_device, on_host):
    greedy = SamplingParams(temperature=0.0)
    full = on_host.generate("The capital of France is", max_tokens=32, sampling=greedy)
    stop = full.split()[2]
    expected = full[: full.index(stop)]
    assert on_device.generate("The capital of France is", max_tokens=32, sampling=greedy, stop=[stop]) == expected
    pieces = list(on_device.generate_stream("The capital of France is", max_tokens=32, sampling=greedy, stop=[stop]))
    assert "".join(pieces) == expected


def test_other_requests_sample_on_the_host_of_the_same_context(on_device, on_host):
    # Alternating greedy, seeded sampling, penalties and log-probabilities on one context:
    # each gives what a host-only context gives.
    greedy = SamplingParams(temperature=0.0)
    seeded = SamplingParams(temperature=0.9, seed=7)
    penalised = SamplingParams(temperature=0.0, repeat_penalty=1.5)
    for sampling in (greedy, seeded, greedy, penalised, greedy):
        assert on_device.generate("Once upon a time", max_tokens=16, sampling=sampling) == on_host.generate(
            "Once upon a time", max_tokens=16, sampling=sampling
        )
    device = on_device.create_completion("Once upon a time", max_tokens=4, temperature=0.0, logprobs=2)
    host = on_host.create_completion("Once upon a time", max_tokens=4, temperature=0.0, logprobs=2)
    assert device["choices"][0]["logprobs"] == host["choices"][0]["logprobs"]


def test_pool_with_device_sampling_matches_the_host(smollm2_path, on_host):
    greedy = SamplingParams(temperature=0.0)
    expected = [on_host.generate(p, max_tokens=16, sampling=greedy) for p in PROMPTS]

    async def main(pool):
        return await pool.generate_batch(PROMPTS, max_tokens=16, sampling=greedy)

    # One request at a time per slot so each decodes as on_host does (batch shape changes
    # the CPU's results only in the last bits; test_pool covers batches of 16).
    with LlamaPool(smollm2_path, pool_size=1, n_ctx=512, n_threads=N_THREADS, device_sampling=True) as pool:
        assert pool.llama._context.device_sampling is True
        assert asyncio.run(main(pool)) == expected


def test_device_sampling_is_off_unless_asked(smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_threads=N_THREADS) as llm:
        assert llm._context.device_sampling is False


def test_device_sampling_must_be_a_bool():
    with pytest.raises(ValidationError, match="device_sampling"):
        LlamaConfig(device_sampling="yes")
