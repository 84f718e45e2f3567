"""The installed package is self-contained: its extension loads llama.cpp's libraries
from the package's own lib/ folder, and it ships type information."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import llama_cpp
from conftest import GPU_RUN
from llama_cpp import _core


def loaded_libraries() -> dict[str, Path]:
    libs = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        name = Path(path).name
        if name.startswith(("libllama", "libggml")):
            libs[name] = Path(path)
    return libs


def test_llama_cpp_libraries_come_from_the_package(smollm2):
    package_lib = Path(llama_cpp.__file__).parent / "lib"
    libs = loaded_libraries()
    assert any(name.startswith("libllama.so") for name in libs), libs
    for name, path in libs.items():
        assert path.parent == package_lib, f"{name} loaded from {path}, not from {package_lib}"


def test_extension_is_inside_the_package():
    assert Path(_core.__file__).parent == Path(llama_cpp.__file__).parent


def test_type_information_is_shipped():
    package = Path(llama_cpp.__file__).parent
    assert (package / "py.typed").exists()
    stub = (package / "_core.pyi").read_text()
    assert "class Model" in stub and "def generate(" in stub


def test_version_and_system_info():
    assert llama_cpp.__version__
    info = _core.system_info()
    assert "CPU" in info


def test_stubs_match_the_reference():
    """The generated stub equals tests/stubs/_core.pyi.ref: a change to the binding's
    signatures must update the reference (copy the installed _core.pyi over it)."""
    package = Path(llama_cpp.__file__).parent
    reference = Path(__file__).parent / "stubs" / "_core.pyi.ref"
    assert (package / "_core.pyi").read_text() == reference.read_text()


def test_every_public_name_has_a_docstring():
    import inspect

    import llama_cpp

    missing = []
    for name in llama_cpp.__all__:
        obj = getattr(llama_cpp, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_") and attr != "__call__":
                continue
            target = member.fget if isinstance(member, property) else member
            if isinstance(member, (classmethod, staticmethod)):
                target = member.__func__
            if callable(target) and not inspect.getdoc(target):
                missing.append(f"{name}.{attr}")
    assert not missing, f"public names without a docstring: {missing}"


@pytest.mark.skipif(GPU_RUN, reason="GPU run: the GPU machine has no mypy (CI runs the type check)")
def test_the_installed_package_type_checks(tmp_path):
    # mypy --strict (pyproject.toml's [tool.mypy]) over the installed package, stubs included,
    # as a user's type checker sees it. CI installs mypy: without it this fails, not skips.
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: pip install mypy", pytrace=False)
    config = Path(__file__).resolve().parents[1] / "pyproject.toml"
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path),
                          "-p", "llama_cpp"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
