"""Runs snippets of Python that may crash or hang the interpreter in a child process, and
reports each one's outcome: its result, the exception it raised (class, whether it is one of
the package's, message), or how the child died (signal, the abort line from stderr) or that
it stopped making progress (a hang).

Used by test_bad_arguments.py and test_fuzz.py. Snippets run one after another in one child
(the model is loaded once per child); after a crash or a hang the parent starts a new child
for the snippets that remain, so one crasher costs one interpreter start, not the batch.

Protocol (child to parent, on stdout, one line each): ``START <index>`` before a snippet,
``PROGRESS <json>`` whenever a snippet calls ``progress(obj)`` (a fuzz loop does, before each
input: the last one names the input a crash or hang happened on), ``RESULT <json>`` after it.
Any line resets the idle timer; a snippet that prints nothing for ``idle_timeout`` seconds hangs.

    python tests/_subprocess_probe.py CASES.json START_INDEX     # the child (internal)
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# What the child's snippets start with: the package, and one model loaded on first use.
PRELUDE = """
import json, math, os, sys
from llama_cpp import *

_models = {}

def llm(**overrides):
    '''SmolLM2 with a small context, loaded once per child (per set of overrides).'''
    key = tuple(sorted(overrides.items()))
    if key not in _models:
        kwargs = dict(n_ctx=256)  # default threads: shed while other processes use the cores
        kwargs.update(overrides)
        _models[key] = Llama(os.environ["PROBE_MODEL"], **kwargs)
    return _models[key]

def generate(grammar, max_tokens=4, sampling=None):
    '''A few tokens under ``grammar`` (greedy unless ``sampling``).'''
    return llm().generate("Answer:", max_tokens=max_tokens, grammar=grammar,
                          sampling=sampling or SamplingParams.greedy())
"""


@dataclass
class Outcome:
    """What one snippet did. ``status``: ``ok`` (``value`` is the repr of its ``result``),
    ``raised`` (``error_type``, ``package_error``, ``message``), ``crashed`` (``returncode``,
    negative for a signal, and ``abort_line``), ``hang`` (no output for the idle timeout)."""

    name: str
    status: str
    value: str = ""
    error_type: str = ""
    package_error: bool = False
    message: str = ""
    returncode: int | None = None
    abort_line: str = ""
    stderr_tail: str = ""
    last_progress: Any = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.status == "ok":
            return f"{self.name}: returned {self.value[:300]}"
        if self.status == "raised":
            kind = "package error" if self.package_error else "NOT a package error"
            return f"{self.name}: raised {self.error_type} ({kind}): {self.message[:500]}"
        where = f"; last input {self.last_progress!r:.600}" if self.last_progress is not None else ""
        if self.status == "crashed":
            return (f"{self.name}: CRASHED (exit status {self.returncode}{signal_name(self.returncode)}) "
                    f"{self.abort_line!r}{where}\n--- stderr tail ---\n{self.stderr_tail[-1500:]}")
        return f"{self.name}: HANG (no progress for the idle timeout){where}"


def signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return ""
    import signal

    try:
        return f", {signal.Signals(-returncode).name}"
    except ValueError:
        return ""


_ABORT = re.compile(r"(GGML_ASSERT|GGML_ABORT|fatal error|Assertion|terminate called|Segmentation fault|"
                    r"Fatal Python error|what\(\))")


def abort_line(stderr: str) -> str:
    """The line of ``stderr`` that says why the child died (ggml's abort, an assertion, ...)."""
    for line in stderr.splitlines():
        if _ABORT.search(line):
            return line.strip()
    return ""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    from conftest import SMOLLM2

    env = dict(os.environ)
    env.setdefault("PROBE_MODEL", str(SMOLLM2))
    env["GGML_NO_BACKTRACE"] = "1"  # ggml's abort would otherwise attach gdb for a backtrace
    env["PYTHONFAULTHANDLER"] = "1"  # a Python traceback on SIGSEGV/SIGABRT
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run_cases(
    cases: list[tuple[str, str]] | list[tuple[str, str, float]],
    *,
    idle_timeout: float = 60.0,
    env: dict[str, str] | None = None,
    prelude: str = PRELUDE,
) -> dict[str, Outcome]:
    """Runs each ``(name, code)`` snippet (after ``prelude``) in a child interpreter; a snippet
    sets ``result`` or raises. A third element, seconds, overrides ``idle_timeout`` for that
    snippet. Returns the outcome of every snippet, by name."""
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        spec = Path(tmp) / "cases.json"
        spec.write_text(json.dumps({"prelude": prelude, "cases": [list(c[:2]) for c in cases]}))
        start = 0
        while start < len(cases):
            start = _run_child(spec, cases, start, outcomes, idle_timeout, child_env(env), Path(tmp))
    return outcomes


def _run_child(spec: Path, cases: list[Any], start: int, outcomes: dict[str, Outcome],
               idle_timeout: float, env: dict[str, str], tmp: Path) -> int:
    """One child from case ``start`` on; returns the index of the next case to run."""
    stderr_path = tmp / f"stderr-{start}.txt"
    with open(stderr_path, "w+b") as stderr:
        proc = subprocess.Popen([sys.executable, "-X", "faulthandler", __file__, str(spec), str(start)],
                                stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=str(HERE))
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        current, progress, began = None, None, time.monotonic()
        last_done, started_any = start - 1, False
        buffer = b""
        deadline = time.monotonic() + idle_timeout
        hung = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                hung = True
                break
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace")
                if line.startswith("START "):
                    current, progress, began, started_any = int(line[6:]), None, time.monotonic(), True
                elif line.startswith("PROGRESS "):
                    progress = json.loads(line[9:])
                elif line.startswith("RESULT "):
                    data = json.loads(line[7:])
                    last_done = data.pop("index")
                    name = cases[last_done][0]
                    outcomes[name] = Outcome(name=name, seconds=time.monotonic() - began, **data)
                    current = None
                # Any line is progress; the snippet running now may have a timeout of its own.
                timeout = idle_timeout if current is None or len(cases[current]) < 3 else cases[current][2]
                deadline = time.monotonic() + timeout
        if hung:
            proc.kill()
        returncode = proc.wait()
        selector.close()
        stderr.seek(0)
        text = stderr.read().decode("utf-8", "replace")
    if not started_any and (hung or returncode != 0):
        # The child died before its first snippet (the prelude): every remaining snippet fails so.
        for name, _ in cases[start:]:
            outcomes[name] = Outcome(name=name, status="hang" if hung else "crashed", returncode=returncode,
                                     abort_line=abort_line(text), stderr_tail=text[-4000:])
        return len(cases)
    if current is None:
        if returncode != 0 and not hung:  # died after a snippet had finished (at exit, say)
            name = f"{cases[last_done][0]}@exit"
            outcomes[name] = Outcome(name=name, status="crashed", returncode=returncode,
                                     abort_line=abort_line(text), stderr_tail=text[-4000:])
        return last_done + 1
    # The stderr of the snippet that died: after its marker.
    marker = f"@@START {current}@@"
    tail = text[text.rfind(marker) + len(marker):] if marker in text else text
    name = cases[current][0]
    outcomes[name] = Outcome(name=name, status="hang" if hung else "crashed", returncode=None if hung else returncode,
                             abort_line=abort_line(tail), stderr_tail=tail[-4000:], last_progress=progress,
                             seconds=time.monotonic() - began)
    return current + 1


# ---- the child ---------------------------------------------------------------------------------


def _child(spec_path: str, start: int) -> None:
    spec = json.loads(Path(spec_path).read_text())
    base: dict[str, Any] = {"__name__": "__probe__"}

    def progress(obj: Any) -> None:
        try:
            text = json.dumps(obj)
        except (TypeError, ValueError):
            text = json.dumps(repr(obj))
        sys.stdout.write(f"PROGRESS {text}\n")
        sys.stdout.flush()

    base["progress"] = progress
    exec(compile(spec["prelude"], "<prelude>", "exec"), base)
    from llama_cpp import LlamaError

    for index in range(start, len(spec["cases"])):
        name, code = spec["cases"][index]
        sys.stdout.write(f"START {index}\n")
        sys.stdout.flush()
        sys.stderr.write(f"@@START {index}@@\n")
        sys.stderr.flush()
        namespace = dict(base)
        record: dict[str, Any] = {"index": index}
        try:
            exec(compile(code, f"<case {name}>", "exec"), namespace)
        except BaseException as exc:  # noqa: BLE001 - every outcome is reported
            record.update(status="raised", error_type=type(exc).__name__,
                          package_error=isinstance(exc, LlamaError), message=str(exc))
        else:
            record.update(status="ok", value=repr(namespace.get("result"))[:2000])
        sys.stdout.write("RESULT " + json.dumps(record) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
