"""GPU-only checks (marker ``gpu``): they run where llama.cpp was built with a GPU backend
(scripts/gpu_run.sh on the H100/H200 machine) and are skipped elsewhere, CI included."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from llama_cpp import Llama, LlamaPool, SamplingParams

pytestmark = pytest.mark.gpu


def gpu_memory_of_this_process_mib() -> int:
    rows = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, check=True).stdout
    used = [int(r.split(",")[1]) for r in rows.splitlines() if r.split(",")[0].strip() == str(os.getpid())]
    return used[0] if used else 0


def never_ending(llm: Llama) -> SamplingParams:
    return SamplingParams(temperature=0.0, logit_bias={t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)})


def test_weights_are_offloaded_by_default(smollm2_path):
    before = gpu_memory_of_this_process_mib()
    with Llama(smollm2_path, n_ctx=512) as llm:  # n_gpu_layers=-1 is the default
        assert llm.config.n_gpu_layers == -1
        size_mib = os.path.getsize(smollm2_path) / 2**20
        assert gpu_memory_of_this_process_mib() - before > 0.8 * size_mib
        assert llm.generate("Hello", max_tokens=8, sampling=never_ending(llm))


def test_decode_reuses_the_graph_every_step(smollm2_path):
    # llama.cpp rebuilds nothing between single-token steps (graph reuse); this is what lets
    # the CUDA backend replay its CUDA graph instead of launching every kernel again.
    with Llama(smollm2_path, n_ctx=512) as llm:
        llm.perf_reset()
        llm.generate("Hello", max_tokens=64, sampling=never_ending(llm))
        perf = llm.perf()
        assert perf["n_eval"] >= 63
        assert perf["n_graph_reused"] >= perf["n_eval"] - 2


def test_greedy_on_gpu_is_repeatable(smollm2_path):
    with Llama(smollm2_path, n_ctx=512) as llm:
        sampling = never_ending(llm)
        assert llm.generate("Once upon a time", max_tokens=32, sampling=sampling) == \
            llm.generate("Once upon a time", max_tokens=32, sampling=sampling)


def test_pool_decodes_sixteen_requests_at_once_on_gpu(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=16, n_ctx=256) as pool:
        eog = never_ending(pool.llama).logit_bias
        conversations = [[{"role": "user", "content": f"Request {i}"}] for i in range(16)]
        replies = asyncio.run(pool.create_chat_completion_batch(conversations, max_tokens=32, temperature=0.0,
                                                                logit_bias=eog))
        # End of generation is masked, so every request made all 32 tokens.
        assert [r["usage"]["completion_tokens"] for r in replies] == [32] * 16
        assert pool.active == 0


def test_one_cpu_thread_per_token_when_the_whole_model_is_on_gpu(smollm2_path):
    # The CPU's share of a one-token step is one embedding row then; batches keep every core.
    with Llama(smollm2_path, n_ctx=512) as llm:
        assert llm._context.whole_model_on_gpu
        assert (llm.n_threads, llm.n_threads_batch) == (1, os.cpu_count())
        assert llm.generate("Hello", max_tokens=8, sampling=never_ending(llm))
    with Llama(smollm2_path, n_ctx=512, n_gpu_layers=4) as llm:
        assert not llm._context.whole_model_on_gpu
        assert llm.n_threads == os.cpu_count()


def test_cpu_only_still_works_in_a_gpu_build(smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_gpu_layers=0) as llm:
        assert llm.generate("Hello", max_tokens=4, sampling=never_ending(llm))
