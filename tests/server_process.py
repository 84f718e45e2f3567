"""The server as users start it: ``python -m llama_cpp.server`` in a subprocess on a free
loopback port, ready once ``/health`` answers 200."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, *args: str, api_key: str | None = None, command: tuple[str, ...] = ("-m", "llama_cpp.server"),
                 ready_path: str = "/health") -> None:
        """``python <command> --port PORT [--api-key KEY] <args>``; ``ready_path`` answers 200
        once the server can serve."""
        self.port = free_port()
        self.api_key = api_key
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.log = tempfile.TemporaryFile(mode="w+")
        extra = ["--api-key", api_key] if api_key else []
        self.proc = subprocess.Popen([sys.executable, *command, "--port", str(self.port), *extra, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout: float = 180) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready after {timeout} s:\n{self.output()}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def openai(self, **kwargs):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "none", **kwargs)

    def async_openai(self, **kwargs):
        import openai

        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "none", **kwargs)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {sample name with labels: value}; every sample has a ``# TYPE``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        typed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                base = name.split("{", 1)[0]
                assert base in typed or base.rsplit("_", 1)[0] in typed, f"{base} has no # TYPE line"
                samples[name] = float(value)
        return samples

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
