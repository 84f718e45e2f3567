"""Obtain the pinned llama.cpp source tree and unpack it into an ignored folder.

The tree is commit 0c1e570 (2026-10-01) as carried by the llama-cpp-python
0.3.36 sdist on PyPI. We use only its ``vendor/llama.cpp`` folder, none of that
package's Python code, with our patches applied (scripts/llama_cpp_patches.py).
Prints the path of the unpacked tree on stdout.

    python scripts/fetch_llama_cpp.py [--dest third_party/llama.cpp]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_cpp_patches  # noqa: E402
from pypi_fetch import fetch  # noqa: E402

PROJECT = "llama-cpp-python"
VERSION = "0.3.36"
FILENAME = "llama_cpp_python-0.3.36.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_COMMIT = "0c1e570"
PREFIX = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
STAMP = ".llama-cpp-nanobind-source"


def unpack(archive: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.name.startswith(PREFIX) or member.issym() or member.islnk():
                continue
            relative = member.name[len(PREFIX):]
            if not relative or relative.startswith("/") or ".." in Path(relative).parts:
                continue
            member.name = relative
            tar.extract(member, tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extract(member, tmp)
    llama_cpp_patches.apply(tmp)
    (tmp / STAMP).write_text(stamp_text())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def stamp_text() -> str:
    return f"{FILENAME} {SHA256} commit {LLAMA_CPP_COMMIT} patches {llama_cpp_patches.digest()}\n"


def ensure_source(dest: Path) -> Path:
    stamp = dest / STAMP
    if stamp.exists() and stamp.read_text() == stamp_text():
        return dest
    archive = fetch(PROJECT, VERSION, FILENAME, SHA256, sdist=True)
    print(f"unpacking llama.cpp {LLAMA_CPP_COMMIT} into {dest}", file=sys.stderr)
    unpack(archive, dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "third_party" / "llama.cpp"
    parser.add_argument("--dest", type=Path, default=default)
    args = parser.parse_args()
    print(ensure_source(args.dest.resolve()))


if __name__ == "__main__":
    main()
