"""The core Llama API on the real models: load, generate, tokenize, lifecycle."""

from __future__ import annotations

import os
import threading

import pytest

from conftest import real_weights
from llama_cpp import Llama, LlamaConfig, SamplingParams, ValidationError, _core


@real_weights
def test_generate_returns_text(smollm2):
    text = smollm2.generate("The capital of France is", max_tokens=8, sampling=SamplingParams.greedy())
    assert isinstance(text, str)
    assert "Paris" in text


def test_max_tokens_bounds_output(smollm2):
    text = smollm2.generate("Once upon a time", max_tokens=5, sampling=SamplingParams.greedy())
    n = len(smollm2.tokenize(text, add_bos=False))
    # Re-tokenizing the text can merge or split differently, but not by much.
    assert 1 <= n <= 7


def test_seeded_sampling_is_reproducible(smollm2):
    sampling = SamplingParams(temperature=1.0, seed=1234)
    a = smollm2.generate("My favourite colour is", max_tokens=16, sampling=sampling)
    b = smollm2.generate("My favourite colour is", max_tokens=16, sampling=sampling)
    assert a == b


def test_sampling_parameters_change_the_output(smollm2):
    prompt = "List some fruits:"
    greedy = smollm2.generate(prompt, max_tokens=24, sampling=SamplingParams.greedy())
    outputs = {
        smollm2.generate(prompt, max_tokens=24, sampling=SamplingParams(temperature=1.5, top_k=0, top_p=1.0,
                                                                        min_p=0.0, seed=seed))
        for seed in range(4)
    }
    assert len(outputs | {greedy}) > 1


@real_weights
def test_stop_sequence_is_not_in_output(smollm2):
    sampling = SamplingParams.greedy()
    full = smollm2.generate("The capital of France is", max_tokens=24, sampling=sampling)
    assert "\n" in full
    cut = smollm2.generate("The capital of France is", max_tokens=24, sampling=sampling, stop=["\n"])
    assert cut == full[: full.index("\n")]


def test_tokenize_detokenize_round_trip(smollm2):
    text = "Hello, world! Ünïcödé ✓ 日本語"
    tokens = smollm2.tokenize(text, add_bos=False)
    assert all(isinstance(t, int) for t in tokens)
    assert smollm2.detokenize(tokens) == text.encode()
    assert smollm2.tokenize(text.encode(), add_bos=False) == tokens


def test_special_tokens_parsing(smollm2):
    plain = smollm2.tokenize("<|im_start|>", add_bos=False, special=False)
    special = smollm2.tokenize("<|im_start|>", add_bos=False, special=True)
    assert len(special) == 1 and len(plain) > 1
    assert smollm2.detokenize(special, special=True) == b"<|im_start|>"
    assert smollm2.detokenize(special, special=False) == b""


def test_n_tokens(smollm2):
    assert smollm2.n_tokens("Hello world") == len(smollm2.tokenize("Hello world", special=True))


def test_model_facts(smollm2, gemma3):
    assert smollm2.n_vocab() == 49152
    assert smollm2.n_ctx() == 2048
    assert smollm2.metadata["general.architecture"] == "llama"
    assert gemma3.metadata["general.architecture"] == "gemma3"
    assert gemma3.n_vocab() > 200_000


def test_config_object_and_keywords(smollm2_path):
    config = LlamaConfig(n_ctx=256, n_threads=2)
    with Llama(smollm2_path, config=config) as a:
        assert a.n_ctx() == 256
    with Llama(smollm2_path, config=config, n_ctx=512) as b:
        assert b.n_ctx() == 512
    with Llama(config=LlamaConfig(model_path=str(smollm2_path), n_ctx=1024, n_threads=2)) as c:
        assert c.n_ctx() == 1024


def test_cpu_threads_default_to_every_core_and_can_be_set(smollm2_path):
    # On the CPU (n_gpu_layers=0, in any build) every core works on each step by default;
    # n_threads_batch follows n_threads unless it is set too.
    with Llama(smollm2_path, n_ctx=256, n_gpu_layers=0) as llm:
        assert (llm.n_threads, llm.n_threads_batch) == (len(os.sched_getaffinity(0)),) * 2
    with Llama(smollm2_path, n_ctx=256, n_gpu_layers=0, n_threads=2) as llm:
        assert (llm.n_threads, llm.n_threads_batch) == (2, 2)
    with Llama(smollm2_path, n_ctx=256, n_gpu_layers=0, n_threads=1, n_threads_batch=2) as llm:
        assert (llm.n_threads, llm.n_threads_batch) == (1, 2)
        assert llm.generate("Hello", max_tokens=4, sampling=SamplingParams.greedy())


def test_bare_decode_timing_leaves_the_instance_as_new(smollm2):
    # The benchmarks' diagnostic: llama-bench's tg loop inside our process.
    expected = smollm2.generate("Once upon a time", max_tokens=8, sampling=SamplingParams.greedy())
    for batch_get_one in (False, True):
        ms = _core.testing.time_bare_decode(smollm2._context, 8, batch_get_one)
        assert 0 < ms < 10_000
        assert smollm2.cached_tokens() == []
    with pytest.raises(ValidationError, match="time_bare_decode"):
        _core.testing.time_bare_decode(smollm2._context, 0)
    assert smollm2.generate("Once upon a time", max_tokens=8, sampling=SamplingParams.greedy()) == expected


def test_context_manager_closes(smollm2_path):
    with Llama(smollm2_path, n_ctx=64, n_threads=2) as llm:
        assert not llm.closed
    assert llm.closed


def test_threads_are_serialised(smollm2):
    sampling = SamplingParams.greedy()
    expected = smollm2.generate("The capital of France is", max_tokens=8, sampling=sampling)
    results: list[str] = []

    def worker() -> None:
        results.append(smollm2.generate("The capital of France is", max_tokens=8, sampling=sampling))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_gil_is_released_during_generation(smollm2):
    ticks = 0
    done = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            done.wait(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    smollm2.generate("Tell me a story", max_tokens=48, sampling=SamplingParams.greedy())
    done.set()
    thread.join()
    assert ticks > 10


def test_small_n_ctx_rounds_up_as_documented(smollm2_path):
    # llama.cpp pads the context to a multiple of 256 tokens; LlamaConfig documents it and
    # n_ctx() reports the real size.
    assert "multiple of 256" in " ".join(LlamaConfig.__doc__.split())
    for asked, real in ((64, 256), (300, 512)):
        with Llama(smollm2_path, n_ctx=asked, n_threads=2) as llm:
            assert llm.n_ctx() == real
