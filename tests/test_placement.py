"""Device placement: LlamaConfig's split_mode, main_gpu, tensor_split and devices, and
llama_cpp.devices(). On a machine without a GPU the CPU is the only device, so every index
is out of range; the GPU machine's run checks placement on real GPUs (gpu_run.sh scale)."""

from __future__ import annotations

import re

import pytest

import llama_cpp
from llama_cpp import Llama, LlamaConfig, SamplingParams, ValidationError

GREEDY = SamplingParams.greedy()
GPUS = [d for d in llama_cpp.devices() if d.index is not None]


def test_devices_lists_the_cpu_with_its_memory():
    found = llama_cpp.devices()
    cpus = [d for d in found if d.type == "cpu"]
    assert len(cpus) == 1, found
    cpu = cpus[0]
    assert cpu.index is None and cpu.backend == "CPU" and cpu.name == "CPU"
    assert 0 < cpu.memory_free <= cpu.memory_total, cpu
    indices = [d.index for d in found if d.index is not None]
    assert indices == list(range(len(indices))), found  # offload devices numbered in order


def test_print_system_info_says_rpc_is_built_in(capsys):
    llama_cpp.print_system_info()
    info = capsys.readouterr().out
    assert re.search(r"^RPC: yes \(LlamaConfig\(rpc_servers=", info, re.M), info
    assert "RPC (no device found)" not in info, info
    assert llama_cpp.rpc_available() is True


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("split_mode", "rows", "split_mode must be one of none, layer, row, tensor"),
        ("split_mode", 1, "split_mode must be one of"),
        ("main_gpu", -1, "main_gpu"),
        ("main_gpu", True, "main_gpu"),
        ("tensor_split", [1, -1], "finite non-negative"),
        ("tensor_split", [0, 0], "positive share"),
        ("tensor_split", [float("nan")], "finite non-negative"),
        ("tensor_split", "1,1", "must be a list"),
        ("tensor_split", [1.0] * 17, "1 to 16"),
        ("devices", [], "1 to 16"),
        ("devices", [0, 0], "twice"),
        ("devices", [-1], "must be >= 0"),
        ("devices", [1.5], "ints (indices) or str (names)"),
        ("devices", ["CUDA0 "], "not a device name"),
        ("rpc_servers", ["localhost"], "is not host:port"),
        ("rpc_servers", ["h:0"], "is not host:port"),
        ("rpc_servers", ["h:70000"], "is not host:port"),
        ("rpc_servers", ["h:1", "h:1"], "twice"),
        ("rpc_servers", [7], "is not host:port"),
    ],
)
def test_placement_fields_are_validated(field, value, message):
    with pytest.raises(ValidationError, match=re.escape(message)) as info:
        LlamaConfig(**{field: value})
    assert f"[LlamaConfig] {field}" in str(info.value)


def test_rpc_servers_take_llama_cpp_comma_form():
    config = LlamaConfig(rpc_servers="10.0.0.1:50052, 10.0.0.2:50052")
    assert config.rpc_servers == ["10.0.0.1:50052", "10.0.0.2:50052"]
    assert LlamaConfig(tensor_split=(3, 1)).tensor_split == [3.0, 1.0]


@pytest.mark.skipif(bool(GPUS), reason="needs a machine without GPUs")
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"devices": [0]}, "devices: there is no device 0; this process has no GPU"),
        ({"devices": ["CUDA3"]}, "devices: there is no device named 'CUDA3'"),
        ({"devices": ["CPU"]}, "is the CPU, which every model uses anyway"),
        ({"main_gpu": 1, "split_mode": "none"}, "main_gpu: there is no device 1"),
        ({"tensor_split": [1, 1]}, "tensor_split: 2 proportions for 0 device(s)"),
        ({"split_mode": "tensor"}, "split_mode: 'tensor' splits matrices across GPUs;"),
    ],
)
def test_a_device_that_does_not_exist_names_those_there_are(smollm2_path, overrides, message):
    with pytest.raises(ValidationError, match=re.escape(message)) as info:
        Llama(smollm2_path, n_ctx=256, **overrides)
    assert str(info.value).startswith("[Llama]"), info.value
    if overrides.get("devices") != ["CPU"]:
        assert "(only the CPU)" in str(info.value)


@pytest.mark.skipif(not GPUS, reason="needs a GPU")
def test_a_gpu_index_past_the_last_names_the_gpus(smollm2_path):
    with pytest.raises(ValidationError, match=r"there is no device \d+; the devices are 0: ") as info:
        Llama(smollm2_path, n_ctx=256, devices=[len(GPUS)])
    assert GPUS[0].name in str(info.value)


@pytest.mark.parametrize("split_mode", ["none", "layer"] + ([] if GPUS else ["row"]))
def test_each_split_mode_loads_and_generates_as_the_default(smollm2, smollm2_path, split_mode):
    expected = smollm2.generate("The capital of France is", max_tokens=8, sampling=GREEDY)
    with Llama(smollm2_path, n_ctx=smollm2.config.n_ctx, n_batch=smollm2.config.n_batch,
               n_threads=smollm2.config.n_threads, split_mode=split_mode, main_gpu=0) as llm:
        assert llm.config.split_mode == split_mode
        assert llm.generate("The capital of France is", max_tokens=8, sampling=GREEDY) == expected



@pytest.mark.skipif(not GPUS or GPUS[0].backend != "CUDA", reason="needs a CUDA GPU")
def test_row_split_says_why_this_llama_cpp_cannot_do_it(smollm2_path):
    # The pinned llama.cpp's CUDA backend has no split buffers (its row split is gone; tensor
    # parallelism replaced it): native llama-bench -sm row fails to load too.
    with pytest.raises(ValidationError, match=r"split_mode: 'row' needs split buffers, which CUDA0 \(CUDA\)"):
        Llama(smollm2_path, n_ctx=256, split_mode="row")
