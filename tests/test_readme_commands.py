"""Every command line in README.md's ``sh`` blocks runs as written (model paths point at the
test models): the CLI commands in a subprocess, the server commands as a server that must
become ready and answer a request."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import httpx
import pytest

from conftest import MODELS, ROOT, real_weights
from server_process import ServerProcess

BLOCKS = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
COMMANDS = [line.split("#")[0].strip() for block in BLOCKS for line in block.splitlines()
            if line.startswith("python -m llama_cpp")]


def test_readme_has_commands():
    assert any(c.startswith("python -m llama_cpp.server") for c in COMMANDS)
    assert {shlex.split(c)[3] for c in COMMANDS if c.startswith("python -m llama_cpp ")} >= {
        "generate", "chat", "embed", "info", "bench", "serve"}


@pytest.mark.parametrize("command", COMMANDS)
@real_weights
def test_readme_command_runs(command, smollm2_path):
    argv = [a.replace("models/", f"{MODELS}/", 1) if a.startswith("models/") else a for a in shlex.split(command)][1:]
    if argv[1] == "llama_cpp.server" or argv[2:3] == ["serve"]:
        key = argv[argv.index("--api-key") + 1] if "--api-key" in argv else None
        if key:
            i = argv.index("--api-key")
            del argv[i:i + 2]
        server = ServerProcess(*argv[3 if argv[2:3] == ["serve"] else 2:], api_key=key,
                               command=tuple(argv[:3] if argv[2:3] == ["serve"] else argv[:2]))
        try:
            server.wait_ready()
            reply = server.openai(max_retries=0).completions.create(model="x", prompt="Hello", max_tokens=4)
            keyless = httpx.get(f"{server.url}/v1/models").status_code
        finally:
            server.stop()
        assert reply.usage.completion_tokens == 4
        assert keyless == (401 if key else 200)
        return
    stdin = "Hello\n/exit\n" if argv[2] == "chat" else None
    out = subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), out.stderr
