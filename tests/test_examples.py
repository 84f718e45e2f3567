"""The examples run as a user runs them: as scripts, on the real model."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, real_weights


def run_example(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "generate.py"), *args],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout


@real_weights
def test_generate_answers_a_question_through_the_chat_template(smollm2_path):
    out = run_example("--model", str(smollm2_path), "--max-tokens", "48", "Why is the sky blue?")
    body = out.rsplit("\n\n[", 1)[0]  # less the timing line
    answer = body.split("\n", 1)[1] if "\n" in body else ""
    assert len(answer.split()) >= 5, out  # the raw prompt got an empty answer
    assert body.startswith("> Why is the sky blue?\n"), out
    assert "<|im_" not in out and "assistant\n" not in out, out


def test_generate_raw_continues_the_text(smollm2_path):
    out = run_example("--model", str(smollm2_path), "--raw", "--max-tokens", "8", "The capital of France is")
    text = out.rsplit("\n\n[", 1)[0]
    assert text.startswith("The capital of France is") and len(text) > len("The capital of France is"), out


@real_weights
def test_unified_chat_runs_a_tool_calling_loop(smollm2_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "unified_chat.py"), "--model", str(smollm2_path), "--max-tokens", "60"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0] == "family: SMOLLM2 (SmolLM2); thinking: none", out
    assert lines[1].startswith('call: get_weather({"city": '), out  # the forced first call ran the function
    assert any(line.startswith("answer: ") for line in lines[2:]), out
