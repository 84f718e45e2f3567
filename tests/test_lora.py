"""LoRA adapters, written by the tests with llama.cpp's gguf-py, applied to real models."""

from __future__ import annotations

import numpy as np
import pytest

from llama_cpp import Llama, ModelLoadError, ValidationError

RANK = 4


def write_adapter(gguf, path, arch: str, n_embd: int, n_layers: int, seed: int = 0):
    """A random rank-4 adapter on every layer's attention query projection."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(RANK))
    for layer in range(n_layers):
        # ggml shapes: A is [n_embd, rank], B is [rank, n_embd]; numpy shapes are reversed.
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", rng.normal(0, 0.5, (RANK, n_embd)).astype(np.float32))
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_b", rng.normal(0, 0.5, (n_embd, RANK)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def llm(smollm2_path):
    with Llama(smollm2_path, n_ctx=512, n_threads=2) as model:
        yield model


@pytest.fixture()
def adapter_path(gguf, tmp_path, llm):
    n_layers = int(llm.metadata["llama.block_count"])
    return write_adapter(gguf, tmp_path / "adapter.gguf", "llama", llm.n_embd(), n_layers)


def top_logprobs(llm):
    out = llm.create_completion("The capital of France is", max_tokens=3, temperature=0, logprobs=5)
    return out["choices"][0]["logprobs"]["top_logprobs"]


def test_adapter_changes_logits_and_removal_restores_them(llm, adapter_path):
    base = top_logprobs(llm)
    adapter = llm.load_lora(adapter_path, scale=1.0)
    assert llm.lora_adapters == [adapter]
    patched = top_logprobs(llm)
    assert patched != base
    llm.remove_lora(adapter)
    assert top_logprobs(llm) == base


def test_adapters_persist_across_reset_and_clear(llm, adapter_path):
    base = top_logprobs(llm)
    llm.load_lora(adapter_path)
    patched = top_logprobs(llm)
    llm.reset()
    assert top_logprobs(llm) == patched
    llm.clear_lora()
    assert llm.lora_adapters == []
    assert top_logprobs(llm) == base


def test_scale_matters(llm, adapter_path):
    llm.load_lora(adapter_path, scale=0.5)
    half = top_logprobs(llm)
    llm.clear_lora()
    llm.load_lora(adapter_path, scale=1.0)
    assert top_logprobs(llm) != half
    llm.remove_lora(str(adapter_path))


def test_adapter_for_another_architecture(gguf, tmp_path, llm):
    n_layers = int(llm.metadata["llama.block_count"])
    path = write_adapter(gguf, tmp_path / "gemma-adapter.gguf", "gemma3", llm.n_embd(), n_layers)
    with pytest.raises(ValidationError, match="arch mismatch"):
        llm.load_lora(path)
    assert llm.lora_adapters == []


def test_adapter_with_wrong_shapes(gguf, tmp_path, llm):
    path = write_adapter(gguf, tmp_path / "wrong.gguf", "llama", llm.n_embd() * 2, 1)
    with pytest.raises(ValidationError, match="incorrect shape"):
        llm.load_lora(path)


def test_missing_adapter_file(llm, tmp_path):
    with pytest.raises(ModelLoadError, match="cannot open"):
        llm.load_lora(tmp_path / "nope.gguf")
    with pytest.raises(ValidationError, match="is not loaded"):
        llm.remove_lora(tmp_path / "nope.gguf")


def test_missing_adapter_file_names_the_adapter(llm, tmp_path):
    path = tmp_path / "x.gguf"
    with pytest.raises(ModelLoadError) as info:
        llm.load_lora(path)
    assert str(info.value) == f"[Llama.load_lora] cannot open LoRA adapter file '{path}': No such file or directory"
