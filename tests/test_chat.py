"""create_chat_completion: templates (the model's Jinja, or built-ins by name) and dict shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import real_weights

from llama_cpp import Llama, ValidationError

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
SYSTEM_AND_PARTS = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "France?"}]},
]


def assert_renders(llm, messages, expected: str) -> None:
    """The chat prompt of ``messages`` is exactly ``expected``: the tokens a chat completion
    decoded (the prompt is the start of the cache) are ``expected`` tokenized as a prompt
    is, and they read back as ``expected`` (after the model's BOS, if it adds one)."""
    out = llm.create_chat_completion(messages, max_tokens=1, temperature=0)
    n = out["usage"]["prompt_tokens"]
    assert n == llm.n_tokens(expected)
    prompt = llm.cached_tokens()[:n]
    assert prompt == llm.tokenize(expected, special=True)
    start = llm.tokenize("", add_bos=True)  # what the model puts before every prompt (Gemma: BOS)
    assert llm.detokenize(prompt, special=True) == llm.detokenize(start, special=True) + expected.encode()


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
    assert_renders(
        smollm2, [{"role": "user", "content": "Hi"}],
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    )


@real_weights
def test_reply_ends_at_end_of_turn(smollm2):
    out = smollm2.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=64, temperature=0)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "<|im_end|>" not in choice["message"]["content"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("chatml", "<|im_start|>system\nYou answer in one word.<|im_end|>\n"
                   "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"),
        ("llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou answer in one word.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nCapital of France?<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        # Gemma has no system turn: llama.cpp puts the system text at the top of the first user turn.
        ("gemma", "<start_of_turn>user\nYou answer in one word.\n\nCapital of France?<end_of_turn>\n"
                  "<start_of_turn>model\n"),
    ],
)
def test_builtin_template_by_name(smollm2_path, name, expected):
    with Llama(smollm2_path, n_ctx=1024, n_threads=2, chat_format=name) as llm:
        assert llm.chat_template == name
        assert_renders(llm, SYSTEM_AND_PARTS, expected)


def test_gemma_template(gemma3, gemma3_path):
    # This Gemma 3 file carries no chat template: llama.cpp falls back to ChatML.
    assert_renders(gemma3, MESSAGES, "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                                     "<|im_start|>assistant\n")
    # The gemma built-in on Gemma's own vocabulary, where the turn markers are single tokens.
    with Llama(gemma3_path, n_ctx=512, n_threads=2, chat_format="gemma") as llm:
        expected = "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
        assert_renders(llm, MESSAGES, expected)
        assert llm.tokenize("<start_of_turn>", add_bos=False, special=True) == [llm.tokenize(expected, special=True)[1]]
        out = llm.create_chat_completion(MESSAGES, max_tokens=12, temperature=0)
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
    assert chunks[-1]["usage"] == full["usage"]  # the last chunk carries the decoded token counts
    assert all("usage" not in c for c in chunks[:-1])


def test_content_parts_and_system(smollm2):
    # The system message replaces SmolLM2's default one; text parts are joined.
    assert_renders(
        smollm2, SYSTEM_AND_PARTS,
        "<|im_start|>system\nYou answer in one word.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
        "<|im_start|>assistant\n",
    )
    out = smollm2.create_chat_completion(SYSTEM_AND_PARTS, max_tokens=8, temperature=0)
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


# The end-of-turn marker of each llama.cpp built-in (a copy of the C++ table, checked here against
# llama.cpp's renderer); None: the assistant turn is closed by nothing but whitespace or the next
# turn's header, so it ends at the model's EOS token.
BUILTIN_TURN_ENDS: dict[str, str | None] = {
    "chatml": "<|im_end|>", "llama2": "</s>", "llama2-sys": "</s>", "llama2-sys-bos": "</s>",
    "llama2-sys-strip": "</s>", "mistral-v1": "</s>", "mistral-v3": "</s>", "mistral-v3-tekken": "</s>",
    "mistral-v7": "</s>", "mistral-v7-tekken": "</s>", "phi3": "<|end|>", "phi4": "<|im_end|>",
    "falcon3": None, "zephyr": "<|endoftext|>", "monarch": "</s>", "gemma": "<end_of_turn>", "orion": "</s>",
    "openchat": "<|end_of_turn|>", "vicuna": "</s>", "vicuna-orca": "</s>", "deepseek": "<|EOT|>",
    "deepseek2": "<｜end▁of▁sentence｜>", "deepseek3": "<｜end▁of▁sentence｜>", "deepseek-ocr": None,
    "command-r": "<|END_OF_TURN_TOKEN|>", "llama3": "<|eot_id|>", "chatglm3": None, "chatglm4": None,
    "glmedge": None, "minicpm": None, "exaone3": "[|endofturn|]", "exaone4": "[|endofturn|]",
    "exaone-moe": "<|endofturn|>", "rwkv-world": "\n\n", "granite": "<|end_of_text|>",
    "granite-4.0": "<|end_of_text|>", "granite-4.1": "<|end_of_text|>", "gigachat": "<|message_sep|>",
    "megrez": "<|turn_end|>", "yandex": "\n\n", "bailing": None, "bailing-think": None,
    "bailing2": "<|role_end|>", "llama4": "<|eot|>", "smolvlm": "<end_of_utterance>", "hunyuan-moe": "<|eos|>",
    "gpt-oss": "<|return|>", "hunyuan-dense": "<｜hy_place▁holder▁no▁2｜>", "hunyuan-vl": "<｜hy_Assistant｜>",
    "kimi-k2": "<|im_end|>", "seed_oss": "<seed:eos>", "grok-2": "<|separator|>", "pangu-embedded": "[unused10]",
    "solar-open": "<|end|>",
}


def test_every_builtin_has_a_turn_end():
    from llama_cpp import _core

    assert sorted(_core.ChatTemplate.builtin_names()) == sorted(BUILTIN_TURN_ENDS)


@pytest.mark.parametrize("name", sorted(BUILTIN_TURN_ENDS))
def test_builtin_stops_at_its_own_turn_end(smollm2, name):
    from llama_cpp import _core

    template = _core.ChatTemplate(smollm2._require_model("test"), name)
    marker = BUILTIN_TURN_ENDS[name]
    conversation = [("user", "Uone"), ("assistant", "Qzq"), ("user", "Utwo")]
    prompt, stops = template.render(conversation, True)
    assert stops == ([] if marker is None else [marker])
    # What llama.cpp writes between the assistant's text and the next user message.
    after = prompt[prompt.index("Qzq") + 3:prompt.index("Utwo")]
    if marker is None:
        closed, _ = template.render(conversation[:2], False)
        assert closed[closed.index("Qzq") + 3:].strip() == "", repr(closed)
    else:
        assert after.startswith(marker) or after.lstrip(" \n").startswith(marker), repr(after)


@pytest.mark.parametrize("name", ["gemma", "chatml"])
@real_weights
def test_builtin_format_reply_stops_at_turn_end(smollm2_path, name):
    marker = BUILTIN_TURN_ENDS[name]
    assert marker is not None
    with Llama(smollm2_path, n_ctx=512, n_threads=2, chat_format=name) as llm:
        for content in ("Hi", "Say hello."):
            out = llm.create_chat_completion([{"role": "user", "content": content}], max_tokens=48, temperature=0)
            text = out["choices"][0]["message"]["content"]
            assert marker not in text, repr(text)
            assert not any(text.endswith(marker[:k]) for k in range(2, len(marker))), repr(text)
