"""create_chat_completion: templates (the model's Jinja, or built-ins by name) and dict shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import real_weights

from llama_cpp import Llama, ValidationError

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_completion_shape(smollm2):
    out = smollm2.create_chat_completion(MESSAGES, max_tokens=16, temperature=0)
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    (choice,) = out["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    assert out["usage"]["completion_tokens"] <= 16


def test_model_template_is_rendered_by_jinja(smollm2):
    # SmolLM2's own template inserts its default system prompt: proof it is the model's
    # Jinja template, not a generic ChatML.
    assert "SmolLM" in smollm2.chat_template
    prompt, _ = smollm2._view.render_chat("Llama.test", [("user", "Hi")])
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@real_weights
def test_reply_ends_at_end_of_turn(smollm2):
    out = smollm2.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=64, temperature=0)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "<|im_end|>" not in choice["message"]["content"]


def test_builtin_template_by_name(smollm2_path):
    with Llama(smollm2_path, n_ctx=1024, n_threads=2, chat_format="chatml") as llm:
        assert llm.chat_template == "chatml"
        out = llm.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)
        assert out["choices"][0]["message"]["content"]


def test_gemma_template(gemma3):
    out = gemma3.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)
    assert out["choices"][0]["message"]["content"]


def test_unknown_builtin_name(smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_threads=2, chat_format="no-such-template") as llm:
        with pytest.raises(ValidationError, match="chat_format 'no-such-template' is not a llama.cpp built-in"):
            llm.create_chat_completion(MESSAGES)


def test_streamed_chat_chunks(smollm2):
    chunks = list(smollm2.create_chat_completion(MESSAGES, max_tokens=12, temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] is not None
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    full = smollm2.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)
    assert text == full["choices"][0]["message"]["content"]


def test_content_parts_and_system(smollm2):
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "France?"}]},
    ]
    out = smollm2.create_chat_completion(messages, max_tokens=8, temperature=0)
    assert out["choices"][0]["message"]["content"]


def test_chat_logprobs(smollm2):
    out = smollm2.create_chat_completion(MESSAGES, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == out["usage"]["completion_tokens"]
    assert all(entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2 for entry in content)


@pytest.mark.parametrize(
    "messages, match",
    [
        ([], "messages is empty"),
        ("hello", "messages must be a list of dicts"),
        ([{"content": "x"}], r"messages\[0\] needs a 'role'"),
        ([{"role": "user", "content": 5}], r"messages\[0\].content must be"),
    ],
)
def test_bad_messages(smollm2, messages, match):
    with pytest.raises(ValidationError, match=match):
        smollm2.create_chat_completion(messages)


@real_weights  # needs the tree's models/ggml-vocab-*.gguf, which the GPU machine's trimmed tree lacks
def test_broken_template_gives_a_clear_error(tmp_path, llama_cpp_tree):
    broken = tmp_path / "broken-template.gguf"
    script = llama_cpp_tree / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    env_path = str(llama_cpp_tree / "gguf-py")
    subprocess.run(
        [sys.executable, str(script), str(llama_cpp_tree / "models" / "ggml-vocab-llama-spm.gguf"), str(broken),
         "--chat-template", "{% for m in messages %}{{ m.content | no_such_filter }}{% endfor %", "--force"],
        check=True, capture_output=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    with Llama(broken, vocab_only=True) as llm:
        with pytest.raises(ValidationError, match="chat template"):
            llm.create_chat_completion(MESSAGES)
