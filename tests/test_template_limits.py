"""Chat templates from strangers (issue 13): every hostile template is refused with a
ValidationError naming the limit and the place, in a child process so that a crash or a hang
fails the test instead of ending the run; nothing a template says is ever executed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llama_cpp
from llama_cpp import Llama, TemplateLimits, ValidationError

import hostile_gguf

HERE = Path(__file__).resolve().parent

# Payloads that once crashed (stack overflow) or froze the process (minutes, gigabytes).
HOSTILE = {
    "nested parentheses": "{{ " + "(" * 100_000 + "1" + ")" * 100_000 + " }}",
    "long attribute chain": "{{ x" + ".a" * 100_000 + " }}",
    "long call chain": "{{ x" + "()" * 100_000 + " }}",
    "nested ternaries": "{{ " + "1 if x else " * 50_000 + "1 }}",
    "long operator chain": "{{ " + "1 + " * 100_000 + "1 }}",
    "nested blocks": "{% if 1 %}" * 20_000 + "x" + "{% endif %}" * 20_000,
    "recursive macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "huge range": "{% for i in range(1000000000) %}{{ i }}{% endfor %}",
    "string repetition": "{{ 'a' * 1000000000 }}",
    "doubling a namespace value": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                                  "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "doubling a list": "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
                       "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}",
    "many variables": "{% for i in range(100000) %}{% set x = i %}{% endfor %}",
    "nested loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "huge indent": "{{ 'a\nb' | indent(1000000000) }}",
    "huge tojson indent": "{{ messages | tojson(indent=1000000000) }}",
}

# Attempts to reach Python or the shell: the engine has no such objects; they must not run.
MARKER = "/tmp/llama-cpp-nanobind-template-payload-ran"
ESCAPES = {
    "attribute walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler globals": "{{ cycler.__init__.__globals__.os.popen('touch " + MARKER + "').read() }}",
    "lipsum globals": "{{ lipsum.__globals__['os'].popen('touch " + MARKER + "').read() }}",
    "namespace init": "{{ namespace.__init__.__globals__['os'].system('touch " + MARKER + "') }}",
    "self reference": "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch " + MARKER + "') }}",
}

CHILD = textwrap.dedent("""
    import json, sys, time
    import llama_cpp

    def peak_mb():
        # VmHWM: this process's own peak (ru_maxrss also counts the parent's memory at fork).
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
    for name, path in json.loads(sys.argv[1]):
        start = time.monotonic()
        try:
            with llama_cpp.Llama(path, vocab_only=True, verbose=False) as llm:
                prompt = llm.format_chat([{"role": "user", "content": "hi"}])
            outcome, message = "rendered", prompt[:200]
        except Exception as exc:
            outcome, message = type(exc).__name__, str(exc)
        print(json.dumps({"name": name, "outcome": outcome, "message": message,
                          "seconds": round(time.monotonic() - start, 3),
                          "max_rss_mb": peak_mb()}), flush=True)
""")


def write_model(path: Path, template: str) -> Path:
    model = hostile_gguf.base_model()
    model.set("tokenizer.chat_template", hostile_gguf.STR, template)
    data, _ = hostile_gguf.serialize(model)
    path.write_bytes(data)
    return path


def run_child(cases: dict[str, str], folder: Path) -> dict[str, dict]:
    """Loads each template in one child process; a crash or hang fails with the case in flight."""
    paths = [(name, str(write_model(folder / f"case{i}.gguf", text))) for i, (name, text) in enumerate(cases.items())]
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths)], capture_output=True, text=True,
                          timeout=300)
    results = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    if proc.returncode != 0:
        in_flight = next((name for name, _ in paths if name not in results), "?")
        pytest.fail(f"the child died (status {proc.returncode}) on {in_flight!r}: {proc.stderr[-2000:]}")
    return results


def test_hostile_templates_are_refused_with_the_limit_named(tmp_path):
    results = run_child(HOSTILE, tmp_path)
    assert set(results) == set(HOSTILE)
    for name, r in results.items():
        assert r["outcome"] == "ValidationError", (name, r)
        assert "template" in r["message"], (name, r)
        assert "limit" in r["message"] or "nests deeper" in r["message"], (name, r)
        # Memory stays bounded (the payloads once grew to gigabytes).
        assert r["max_rss_mb"] < 1024, (name, r)
    # The position is named: the parser's line and column, or the renderer's.
    assert "line 1, column" in results["nested parentheses"]["message"]
    assert "line 1, column" in results["string repetition"]["message"]


def test_template_escapes_do_not_execute(tmp_path):
    marker = Path(MARKER)
    marker.unlink(missing_ok=True)
    results = run_child(ESCAPES, tmp_path)
    assert set(results) == set(ESCAPES)
    for name, r in results.items():
        # Refused (there is no such attribute or function) or rendered inertly: never run.
        assert r["outcome"] in ("ValidationError", "rendered"), (name, r)
    assert not marker.exists(), "a template ran a shell command"


def test_parse_errors_name_the_line_and_the_problem(tmp_path):
    path = write_model(tmp_path / "broken.gguf", "{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    with Llama(path, vocab_only=True, verbose=False) as llm:
        with pytest.raises(ValidationError) as info:
            llm.format_chat([{"role": "user", "content": "hi"}])
    message = str(info.value)
    assert "std::exception" not in message
    assert "line 2, column" in message
    assert "Expected }}" in message or "Unexpected" in message


def test_ordinary_templates_render_within_the_limits(tmp_path):
    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    path = write_model(tmp_path / "plain.gguf", template)
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " * 50} for i in range(500)]
    with Llama(path, vocab_only=True, verbose=False) as llm:
        prompt = llm.format_chat(messages)
    assert prompt.count("<|user|>") == 250 and prompt.endswith("<|assistant|>")


def test_limits_can_be_read_and_changed(tmp_path):
    default = llama_cpp.template_limits()
    assert default == TemplateLimits()
    path = write_model(tmp_path / "loop.gguf", "{% for i in range(900) %}{{ i }}{% endfor %}")
    try:
        llama_cpp.set_template_limits(dataclasses.replace(default, max_steps=1000))
        assert llama_cpp.template_limits().max_steps == 1000
        with Llama(path, vocab_only=True, verbose=False) as llm:
            with pytest.raises(ValidationError, match="more than 1000 statements"):
                llm.format_chat([{"role": "user", "content": "hi"}])
        # The default step budget renders it (the time limit raised: under AddressSanitizer
        # llama.cpp's analysis of this output alone took more than the default second).
        llama_cpp.set_template_limits(dataclasses.replace(default, max_seconds=30.0))
        with Llama(path, vocab_only=True, verbose=False) as llm:
            assert llm.format_chat([{"role": "user", "content": "hi"}]).endswith("899")
    finally:
        llama_cpp.set_template_limits(default)


@pytest.mark.parametrize("field, value", [("max_depth", 0), ("max_steps", -1), ("max_bytes", 1.5),
                                          ("max_items", True), ("max_seconds", float("nan")),
                                          ("max_seconds", 0), ("max_depth", 3)])
def test_bad_limits_are_validation_errors(field, value):
    with pytest.raises(ValidationError, match=field if field != "max_depth" or value == 0 else "max_depth=16"):
        llama_cpp.set_template_limits(dataclasses.replace(TemplateLimits(), **{field: value}))
    assert llama_cpp.template_limits() == TemplateLimits()
