"""print_system_info() tells what this build can run on: llama.cpp's CPU features, the
build's CUDA decision with its reason, the ggml backends and devices, and GPU offload."""

from __future__ import annotations

import re

import llama_cpp
from llama_cpp import _core


def system_info(capsys) -> str:
    llama_cpp.print_system_info()
    return capsys.readouterr().out


def test_lists_the_backends_and_devices(capsys):
    info = system_info(capsys)
    assert "SSE3 = " in info or "NEON = " in info, info  # llama.cpp's own feature line
    assert re.search(r"^ggml backends:$", info, re.M), info
    assert re.search(r"^  CPU: 1 device\n    CPU \(CPU\): ", info, re.M), info  # after any GPU backend


def test_says_whether_the_build_has_cuda_and_why(capsys):
    info = system_info(capsys)
    match = re.search(r"^CUDA: (on|off) \((.+)\)$", info, re.M)
    assert match, info
    assert (match.group(1) == "on") == ("CUDA" in info.split("ggml backends:")[1]), info


def test_a_cpu_only_build_says_so(capsys):
    info = system_info(capsys)
    if _core.supports_gpu_offload():
        assert re.search(r"^GPU backends: \w+", info, re.M) and "GiB total" in info, info
        assert "GPU offload: yes" in info
    elif "CUDA: off" in info:
        assert "GPU backends: none (this build is CPU-only)" in info, info
        assert "GPU offload: no" in info
    else:  # CUDA built, no GPU on this machine
        assert "GPU backends: CUDA (no device found)" in info, info
