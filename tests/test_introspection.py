"""Performance counters, metadata, special tokens, logging control and shutdown."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import llama_cpp
from llama_cpp import Llama, LlamaError, SamplingParams, ValidationError


def test_perf_counts_prompt_and_generated_tokens(smollm2):
    smollm2.perf_reset()
    smollm2.generate("The capital of France is", max_tokens=8, sampling=SamplingParams(temperature=0))
    perf = smollm2.perf()
    assert set(perf) >= {"t_load_ms", "t_prompt_eval_ms", "t_eval_ms", "n_prompt_eval", "n_eval"}
    assert perf["n_prompt_eval"] == smollm2.n_tokens("The capital of France is")
    assert perf["n_eval"] == 7  # the 8th sampled token is not decoded
    assert perf["t_eval_ms"] > 0 and perf["t_load_ms"] > 0
    smollm2.perf_reset()
    # llama.cpp reports counts of at least 1 (it divides by them); the times are zeroed.
    assert smollm2.perf()["n_eval"] <= 1 and smollm2.perf()["t_eval_ms"] == 0


def test_metadata_and_special_tokens(smollm2, gemma3):
    meta = smollm2.metadata
    assert meta["general.architecture"] == "llama"
    assert smollm2.token_bos() == int(meta["tokenizer.ggml.bos_token_id"])
    assert smollm2.token_eos() == int(meta["tokenizer.ggml.eos_token_id"])
    assert smollm2.is_eog(smollm2.token_eos())
    assert not smollm2.is_eog(smollm2.tokenize("hello", add_bos=False)[0])
    assert gemma3.n_ctx_train() == int(gemma3.metadata["gemma3.context_length"])
    assert smollm2.n_embd() == int(meta["llama.embedding_length"])


def test_print_system_info(capsys):
    llama_cpp.print_system_info()
    assert "CPU" in capsys.readouterr().out


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_log_levels_control_llama_cpp_output(smollm2_path):
    code = f"""
        import logging, sys
        import llama_cpp
        level = sys.argv[1] if len(sys.argv) > 1 else None
        {{}}
        llama_cpp.Llama({str(smollm2_path)!r}, n_ctx=256, n_threads=2).close()
    """
    quiet = run_python(code.format("llama_cpp.disable_logging()"))
    chatty = run_python(code.format("llama_cpp.set_log_level(logging.INFO)"))
    reset = run_python(code.format("llama_cpp.set_log_level(logging.INFO); llama_cpp.reset_logging()"))
    assert quiet.returncode == chatty.returncode == reset.returncode == 0, chatty.stderr
    assert quiet.stderr == "" and reset.stderr == ""
    assert "llama_model_loader" in chatty.stderr or "print_info" in chatty.stderr


def test_bad_log_level():
    with pytest.raises(ValidationError, match="set_log_level"):
        llama_cpp.set_log_level(12345)


def test_verbose_warns_that_it_is_global(smollm2_path):
    with pytest.warns(RuntimeWarning, match="whole process") as warned:
        Llama(smollm2_path, n_ctx=256, n_threads=2, verbose=True).close()
    message = str(warned[0].message)
    assert "process-wide" in message and "verbose=False does not lower it" in message, message
    llama_cpp.reset_logging()


def test_shutdown_frees_everything_and_is_idempotent(smollm2_path):
    result = run_python(
        f"""
        import llama_cpp
        a = llama_cpp.Llama({str(smollm2_path)!r}, n_ctx=256, n_threads=2)
        b = llama_cpp.Llama({str(smollm2_path)!r}, n_ctx=256, n_threads=2)
        llama_cpp.shutdown()
        llama_cpp.shutdown()
        for llm in (a, b):
            try:
                llm.generate("Hello", max_tokens=2)
            except llama_cpp.LlamaError as e:
                print("raised:", e)
        c = llama_cpp.Llama({str(smollm2_path)!r}, n_ctx=256, n_threads=2)
        print("after:", bool(c.generate("Hello", max_tokens=2)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("raised: [Llama.generate] this Llama instance is closed") == 2
    assert "after: True" in result.stdout


def test_closed_instance_raises_everywhere(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=256, n_threads=2)
    llm.close()
    for call in (lambda: llm.perf(), lambda: llm.get_state(), lambda: llm.embed("x"), lambda: llm.n_ctx(),
                 lambda: llm.create_chat_completion([{"role": "user", "content": "hi"}])):
        with pytest.raises(LlamaError):
            call()
