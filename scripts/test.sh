#!/usr/bin/env bash
# The test suite, from a fresh clone (this is what .ci/run runs):
#  1. fetch the pinned llama.cpp tree and the real models (cached in ~/.cache/llama-cpp-nanobind);
#  2. build llama.cpp once on its own (libraries + llama-completion, the reference), cached by
#     commit and build recipe;
#  3. Python 3.11: install the package in prebuilt mode against that build, run pytest;
#  4. Python 3.12: build the wheel from source (the default mode), install it into a fresh
#     venv and run the same suite against it, from outside the source tree;
#  5. Python 3.13: install that same abi3 wheel into a fresh venv, run the smoke tests;
#  6. Python 3.10: install in prebuilt mode (its own extension), run the smoke tests.
# The smoke tests are every README snippet (load, generate, stream, chat, structured output,
# embeddings, state, async, the pool, errors) plus packaging and system info.
# Builds show their compile steps; whole build logs go to build/logs/.
# CPU only unless TEST_CUDA=1 (the GPU machine's script sets it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/_common.sh
start=$(date +%s)
cache=${LLAMA_NB_CACHE:-$HOME/.cache/llama-cpp-nanobind}
cuda_args="-DGGML_CUDA=OFF"
[ "${TEST_CUDA:-0}" = 1 ] && cuda_args="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-native}"

step "llama.cpp source and models"
export LLAMA_CPP_SOURCE_DIR=${LLAMA_CPP_SOURCE_DIR:-$(python3 scripts/fetch_llama_cpp.py)}
python3 scripts/fetch_models.py

step "reference llama.cpp build"
recipe=$(cat scripts/build_llama_cpp.sh "$LLAMA_CPP_SOURCE_DIR/.llama-cpp-nanobind-source" | sha256sum | cut -c1-16)
prefix="$cache/llama-prefix-$recipe-${TEST_CUDA:-0}"
if [ ! -x "$prefix/bin/llama-completion" ]; then
  CMAKE_ARGS="$cuda_args" scripts/build_llama_cpp.sh "$prefix"
fi
export LLAMA_NB_REFERENCE_PREFIX=$prefix

py311=$(find_python 3.11)
step "Python 3.11: install in prebuilt mode and test"
make_venv .venv-test "$py311"
.venv-test/bin/python -m pip install -q pytest numpy pyyaml tqdm jsonschema mypy jinja2 hypothesis fastapi uvicorn sse-starlette orjson openai httpx
LLAMA_LIB_DIR="$prefix/lib" LLAMA_INCLUDE_DIR="$prefix/include" \
  pip_build build/logs/py311.log .venv-test/bin/python install --force-reinstall --no-deps .
(cd "$root/tests" && "$root/.venv-test/bin/python" -m pytest -q -p no:cacheprovider "$root/tests")

py312=$(find_python 3.12)
step "Python 3.12: wheel from source (default mode), installed in a fresh venv, tested off the build tree"
rm -rf dist .venv-wheel
CMAKE_ARGS="$cuda_args" pip_build build/logs/py312-wheel.log "$py312" wheel --no-deps . -w dist
"$py312" -m venv .venv-wheel
.venv-wheel/bin/python -m pip install -q pytest numpy pyyaml tqdm jsonschema mypy jinja2 hypothesis fastapi uvicorn sse-starlette orjson openai httpx dist/*.whl
(cd "$root/tests" && "$root/.venv-wheel/bin/python" -m pytest -q -p no:cacheprovider "$root/tests")

smoke=("$root/tests/test_readme.py" "$root/tests/test_packaging.py" "$root/tests/test_system_info.py")
py313=$(find_python 3.13)
step "Python 3.13: the same abi3 wheel in a fresh venv, smoke tests"
rm -rf .venv-313
"$py313" -m venv .venv-313
.venv-313/bin/python -m pip install -q pytest numpy pyyaml tqdm jsonschema mypy jinja2 hypothesis fastapi uvicorn sse-starlette orjson openai httpx dist/*.whl
(cd "$root/tests" && "$root/.venv-313/bin/python" -m pytest -q -p no:cacheprovider "${smoke[@]}")

py310=$(find_python 3.10)
step "Python 3.10: install in prebuilt mode, smoke tests"
make_venv .venv-310 "$py310"
.venv-310/bin/python -m pip install -q pytest numpy pyyaml tqdm jsonschema mypy jinja2 hypothesis fastapi uvicorn sse-starlette orjson openai httpx
LLAMA_LIB_DIR="$prefix/lib" LLAMA_INCLUDE_DIR="$prefix/include" \
  pip_build build/logs/py310.log .venv-310/bin/python install --force-reinstall --no-deps .
(cd "$root/tests" && "$root/.venv-310/bin/python" -m pytest -q -p no:cacheprovider "${smoke[@]}")

echo "tests finished in $(( $(date +%s) - start )) s"
