"""``python -m llama_cpp``: every command as users run it, in a subprocess with piped
stdin/stdout (so no progress indicator may appear)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from conftest import real_weights
import llama_cpp
from llama_cpp import Llama, ModelLoadError, ValidationError
from server_process import ServerProcess


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llama_cpp", *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_the_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("generate", "chat", "embed", "serve", "bench", "info"):
        assert command in out.stdout


@real_weights
def test_generate_streams_text_and_reports_json(smollm2_path):
    raw = cli("generate", "-m", str(smollm2_path), "--raw", "-n", "8", "--temp", "0", "The capital of France is")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith(" Paris") and raw.stderr == ""  # piped: no spinner, no timings
    piped = cli("generate", "-m", str(smollm2_path), "--raw", "-n", "8", "--temp", "0", "--json",
                stdin="The capital of France is\n")
    result = json.loads(piped.stdout)
    assert result["text"] == raw.stdout.rstrip("\n") and result["completion_tokens"] == 8
    chat = cli("generate", "-m", str(smollm2_path), "-n", "16", "--temp", "0", "-v", "-p", "Say hi")
    assert chat.returncode == 0 and chat.stdout.strip() and "<|im_" not in chat.stdout
    assert "tok/s" in chat.stderr and "loaded in" in chat.stderr


def test_generate_reports_bad_arguments(smollm2_path):
    out = cli("generate", "-m", str(smollm2_path), "-n", "0", "--raw", "Hello")
    assert out.returncode == 1 and "max_tokens=0" in out.stderr
    missing = cli("generate", "-m", "does-not-exist.gguf", "Hello")
    assert missing.returncode == 1 and "does-not-exist.gguf" in missing.stderr


def test_placement_flags_reach_the_model(smollm2_path):
    placed = cli("generate", "-m", str(smollm2_path), "--raw", "-n", "4", "--temp", "0", "-sm", "none", "-mg", "0",
                 "The capital of France is")
    assert placed.returncode == 0 and placed.stdout.strip(), placed.stderr
    gpus = [d for d in llama_cpp.devices() if d.index is not None]
    missing = cli("generate", "-m", str(smollm2_path), "--raw", "-n", "4", "-dev", str(len(gpus)), "Hello")
    assert missing.returncode == 1 and f"devices: there is no device {len(gpus)}; " in missing.stderr, missing.stderr
    bad = cli("generate", "-m", str(smollm2_path), "-ts", "3,x", "Hello")
    assert bad.returncode == 2 and "is not a list of numbers" in bad.stderr, bad.stderr


@real_weights
def test_chat_keeps_history_and_resets(smollm2_path):
    out = cli("chat", "-m", str(smollm2_path), "-n", "12", "--temp", "0",
              stdin="Hello\nHello\n/reset\nHello\n/think on\n/exit\nnever read\n")
    assert out.returncode == 0, out.stderr
    replies = out.stdout.splitlines()
    assert len(replies) == 3 and all(replies)
    assert replies[2] == replies[0]  # after /reset the conversation starts over (greedy)
    assert "[conversation reset]" in out.stderr
    assert "cannot be turned on" in out.stderr  # SmolLM2 has no reasoning


def test_embed_prints_unit_vectors(smollm2_path):
    out = cli("embed", "-m", str(smollm2_path), stdin="first text\nsecond text\n")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["first text", "second text"]
    assert all(len(r["embedding"]) == 576 and abs(sum(x * x for x in r["embedding"]) - 1) < 1e-3 for r in rows)


@real_weights
def test_info_and_bench(smollm2_path):
    info = json.loads(cli("info", "-m", str(smollm2_path), "--json").stdout)
    assert info["family"] == "SMOLLM2" and info["architecture"] == "llama"
    assert info["n_ctx_train"] == 8192 and info["n_embd"] == 576 and info["n_vocab"] == 49152
    assert "im_start" in info["chat_template"] and info["thinking"] == "none"
    text = cli("info", "-m", str(smollm2_path)).stdout
    assert "family       SMOLLM2" in text and "ggml backends" in text
    bench = cli("bench", "-m", str(smollm2_path), "-p", "32", "-n", "8", "-r", "1", "--json")
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["prompt_tok_s"] > 0 and result["decode_tok_s"] > 0 and result["n_gen"] == 8


@real_weights
def test_serve_is_the_server(smollm2_path):
    server = ServerProcess("--model", str(smollm2_path), "--n-ctx", "256", "--pool-size", "2",
                           command=("-m", "llama_cpp", "serve"))
    try:
        server.wait_ready()
        reply = httpx.post(f"{server.url}/v1/completions", json={"prompt": "Hello", "max_tokens": 3}, timeout=60)
    finally:
        server.stop()
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3


@real_weights
def test_the_core_and_the_cli_need_no_web_dependency(run_python, smollm2_path):
    out = run_python(f"""
        import sys
        for name in ("fastapi", "starlette", "uvicorn", "sse_starlette", "pydantic", "httpx"):
            sys.modules[name] = None  # importing any of them now raises ImportError
        import llama_cpp
        from llama_cpp.cli import main
        assert main(["info", "-m", {str(smollm2_path)!r}, "--json"]) == 0
        try:
            import llama_cpp.server
        except ImportError as e:
            print("server needs:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert '"family": "SMOLLM2"' in out.stdout and "server needs:" in out.stdout


def cli_on_terminal(*args: str) -> tuple[int, bytes, bytes]:
    """``cli(...)`` with stderr on a pseudo-terminal (stdout stays a pipe): the return code,
    stdout and what the terminal showed, read as it comes so its buffer never fills up."""
    import os
    import pty

    leader, follower = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "llama_cpp", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=follower) as proc:
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            terminal += chunk
        stdout, _ = proc.communicate(timeout=300)
    os.close(leader)
    return proc.returncode, stdout, terminal


@real_weights
def test_progress_shows_on_a_terminal_only(smollm2_path):
    returncode, stdout, terminal = cli_on_terminal("generate", "-m", str(smollm2_path), "--raw", "-n", "4", "Hello")
    assert returncode == 0
    assert b"loading " in terminal and b"processing the prompt" in terminal and terminal.endswith(b"\x1b[K")
    assert b"loading" not in stdout and stdout.strip()


def test_a_long_prompt_shows_its_tokens_on_a_terminal(smollm2_path):
    import re

    returncode, _, terminal = cli_on_terminal("generate", "-m", str(smollm2_path), "--raw", "-n", "1", "-b", "16",
                                              "-t", "1", "word " * 1200)
    assert returncode == 0
    shown = [(int(a), int(b)) for a, b in re.findall(rb"processing the prompt +[0-9.]+ s  (\d+)/(\d+) tokens", terminal)]
    assert shown, terminal[-2000:]
    assert all(0 <= done < total and total >= 1200 for done, total in shown), shown
    assert max(done for done, _ in shown) > 0, shown
    assert shown == sorted(shown), shown  # it only moves forward


def test_loading_bar_on_a_terminal_only(smollm2_path):
    # stderr on a pseudo-terminal: the bar follows llama.cpp's load progress up to 100%.
    returncode, _, terminal = cli_on_terminal("generate", "-m", str(smollm2_path), "--raw", "-n", "2", "--temp", "0",
                                              "Hello")
    assert returncode == 0
    text = terminal.decode(errors="replace")
    assert "loading SmolLM2-135M-Instruct.Q4_1.gguf" in text and "100%" in text, text


def test_progress_callback_cancels_and_raises(smollm2_path):
    seen: list[float] = []
    with Llama(smollm2_path, n_ctx=256, progress_callback=seen.append) as llm:
        assert llm.n_vocab() > 0
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(ModelLoadError, match="cancelled by the progress callback"):
        Llama(smollm2_path, n_ctx=256, progress_callback=lambda fraction: False)

    def boom(fraction: float) -> None:
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):  # the callback's own exception, as itself
        Llama(smollm2_path, n_ctx=256, progress_callback=boom)
    with pytest.raises(ValidationError, match="progress_callback must be callable"):
        Llama(smollm2_path, progress_callback=42)


def test_console_script_is_installed(smollm2_path):
    from pathlib import Path

    script = Path(sys.executable).parent / "llama-cpp-nanobind"
    assert script.exists(), f"pip did not install the console script next to {sys.executable}"
    out = subprocess.run([str(script), "info", "-m", str(smollm2_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "llama" in out.stdout and "SmolLM2" in out.stdout
