"""llama.cpp's RPC backend: ``python -m llama_cpp.rpc_server`` workers on loopback, started as
real processes, and models spread over them with ``LlamaConfig(rpc_servers=[...])``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import llama_cpp
from llama_cpp import Llama, LlamaPool, SamplingParams, ValidationError
from conftest import GPU_RUN
from server_process import free_port

GREEDY = SamplingParams.greedy()
PROMPT = "The capital of France is"
LOAD = {"n_ctx": 512, "n_batch": 512, "n_threads": 1}


class Worker:
    """``python -m llama_cpp.rpc_server`` on a loopback port, ready once it accepts."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.rpc_server", "--port", str(self.port), "--threads", "1", *args],
            stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the worker did not listen within {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def workers():
    started = [Worker(), Worker()]
    try:
        yield [w.wait_ready() for w in started]
    finally:
        for w in started:
            w.stop()


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llama_cpp.rpc_server", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_devices_lists_each_workers_device(workers):
    found = llama_cpp.devices(rpc_servers=[w.endpoint for w in workers])
    remote = [d for d in found if d.backend == "RPC"]
    # One device per worker here (its CPU); a GPU machine's workers offer each of its GPUs.
    assert sorted({d.description for d in remote}) == sorted(w.endpoint for w in workers), found
    assert all(d.index is None and d.memory_total > 0 for d in remote), remote


@pytest.mark.skipif(GPU_RUN, reason="the client's own GPUs would take layers too; the CPU run checks equality")
def test_greedy_output_over_two_workers_is_the_local_output(smollm2_path, workers):
    with Llama(smollm2_path, **LOAD) as local:
        expected = local.generate(PROMPT, max_tokens=24, sampling=GREEDY)
    with Llama(smollm2_path, rpc_servers=[w.endpoint for w in workers], **LOAD) as remote:
        assert remote.generate(PROMPT, max_tokens=24, sampling=GREEDY) == expected
        pieces = list(remote.generate_stream(PROMPT, max_tokens=24, sampling=GREEDY))
        assert "".join(pieces) == expected
    assert all(w.proc.poll() is None for w in workers)  # the client's going left them serving


# A worker killed mid-generation: the stream fails with GenerationError (llama.cpp's RPC client
# would abort the process; our build fails the connection instead), nothing hangs, and the
# model can be closed and loaded again once a worker is back on the port. In a subprocess:
# a regression would abort the process.
KILL_SCRIPT = """
import json, os, signal, subprocess, socket, sys, time
from llama_cpp import Llama, GenerationError, SamplingParams
path, endpoints, victim_pid, victim_port, expected = sys.argv[1:6]
endpoints = endpoints.split(",")
load = dict(n_ctx=512, n_batch=512, n_threads=1)
out = {}
llm = Llama(path, rpc_servers=endpoints, **load)
no_end = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
stream = llm.generate_stream("Write a long story about a dragon.", max_tokens=400,
                             sampling=SamplingParams(temperature=0.0, logit_bias=no_end))
pieces = []
try:
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 5:
            os.kill(int(victim_pid), signal.SIGKILL)
    out["error"] = None
except GenerationError as exc:
    out["error"] = str(exc)
out["pieces"] = len(pieces)
try:
    llm.generate("Hello", max_tokens=4)
    out["after"] = "generated"
except Exception as exc:
    out["after"] = type(exc).__name__ + ": " + str(exc)
llm.close()
worker = subprocess.Popen([sys.executable, "-m", "llama_cpp.rpc_server", "--port", victim_port, "--threads", "1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", int(victim_port)), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    with Llama(path, rpc_servers=endpoints, **load) as again:
        out["again"] = again.generate("The capital of France is", max_tokens=24,
                                      sampling=SamplingParams.greedy()) == expected
finally:
    worker.terminate()
print(json.dumps(out))
"""


@pytest.mark.skipif(GPU_RUN, reason="compares with local greedy output: the CPU run does")
def test_a_worker_killed_mid_generation_fails_it_and_the_model_loads_again(smollm2_path, workers):
    with Llama(smollm2_path, **LOAD) as local:
        expected = local.generate(PROMPT, max_tokens=24, sampling=GREEDY)
    victim = workers[1]
    child = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(smollm2_path), ",".join(w.endpoint for w in workers),
         str(victim.proc.pid), str(victim.port), expected],
        capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["error"] is not None and victim.endpoint in out["error"], out
    assert "failed (connection lost)" in out["error"], out
    assert 5 <= out["pieces"] < 400, out
    assert out["after"].startswith("GenerationError") and victim.endpoint in out["after"], out
    assert out["again"] is True, (out, child.stderr[-3000:])
    assert workers[0].proc.poll() is None  # the surviving worker still serves


def test_an_unreachable_worker_is_a_load_error(smollm2_path, run_python):
    port = free_port()  # nothing listens there
    child = run_python(f"""
        from llama_cpp import Llama, ModelLoadError
        import llama_cpp
        try:
            Llama({str(smollm2_path)!r}, rpc_servers=["127.0.0.1:{port}"], n_ctx=256)
        except ModelLoadError as exc:
            print("ModelLoadError:", exc)
        try:
            llama_cpp.devices(rpc_servers=["127.0.0.1:{port}"])
        except ModelLoadError as exc:
            print("devices:", exc)
    """)
    assert child.returncode == 0, child.stderr[-3000:]
    assert f"cannot use the RPC server at 127.0.0.1:{port}" in child.stdout, child.stdout
    assert "Failed to connect" in child.stdout, child.stdout
    assert f"devices: [devices] rpc_servers: cannot use the RPC server at 127.0.0.1:{port}" in child.stdout


def test_a_worker_gone_since_it_was_listed_is_a_load_error(run_python):
    worker = Worker().wait_ready()
    try:
        child = run_python(f"""
            import os, signal, time
            import llama_cpp
            from llama_cpp import ModelLoadError
            print("listed:", [d.backend for d in llama_cpp.devices(rpc_servers=["{worker.endpoint}"])][-1])
            os.kill({worker.proc.pid}, signal.SIGKILL)
            time.sleep(0.5)
            try:
                llama_cpp.devices(rpc_servers=["{worker.endpoint}"])
            except ModelLoadError as exc:
                print("ModelLoadError:", exc)
        """)
    finally:
        worker.stop()
    assert child.returncode == 0, child.stderr[-3000:]
    assert "listed: RPC" in child.stdout, child.stdout
    assert f"ModelLoadError: [devices] rpc_servers: cannot use the RPC server at {worker.endpoint}" in child.stdout


def test_one_worker_listed_under_two_names_is_refused(smollm2_path):
    port = free_port()
    with pytest.raises(ValidationError, match=rf"lists the worker at 127.0.0.1:{port} twice"):
        Llama(smollm2_path, rpc_servers=[f"127.0.0.1:{port}", f"localhost:{port}"], n_ctx=256)
    with pytest.raises(ValidationError, match="cannot be combined with rpc_servers"):
        LlamaPool(smollm2_path, pool_size=1, devices=[0], rpc_servers=[f"127.0.0.1:{port}"], n_ctx=256)


def test_the_worker_refuses_a_bad_port_a_taken_port_and_an_unknown_device():
    bad = run_worker("--port", "70000")
    assert bad.returncode == 2 and "--port must be 1-65535" in bad.stderr, bad.stderr
    threads = run_worker("--port", str(free_port()), "--threads", "600")
    assert threads.returncode == 2 and "--threads must be 0 (every core) to 512" in threads.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_worker("--port", str(taken.getsockname()[1]))
    assert busy.returncode == 1 and "cannot listen on 127.0.0.1:" in busy.stderr, busy.stderr
    unknown = run_worker("--port", str(free_port()), "--device", "NOPE0")
    assert unknown.returncode == 1, unknown.stderr
    assert "there is no device named 'NOPE0'; the devices are " in unknown.stderr, unknown.stderr
    assert "CPU" in unknown.stderr.split("the devices are ")[1], unknown.stderr


def test_the_worker_binds_loopback_unless_told_and_warns_when_told(smollm2_path):
    default = Worker().wait_ready()
    try:
        with socket.socket() as probe:  # not on another address of this machine
            addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
            others = sorted(a for a in addresses if not a.startswith("127."))
            if others:
                assert probe.connect_ex((others[0], default.port)) != 0
    finally:
        default.stop()
    open_worker = Worker("--host", "0.0.0.0").wait_ready()
    open_worker.stop()
    assert "no authentication or encryption" in open_worker.output(), open_worker.output()
    assert "no authentication" not in default.output()
    assert f"serving every GPU (else the CPU) on 127.0.0.1:{default.port}, one client at a time" in default.output()


def test_readme_says_rpc_is_for_trusted_networks_only():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    section = readme[readme.index("python -m llama_cpp.rpc_server"):][:3000]
    assert "no authentication" in section and "127.0.0.1" in section, section


KILL_SCRIPT = textwrap.dedent(KILL_SCRIPT)
