#!/usr/bin/env bash
# The extension and llama.cpp built from source with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option LLAMA_SANITIZE=ON), installed into .venv-asan, and tests run under them.
#
#   scripts/asan_test.sh                      # the default subset (below)
#   scripts/asan_test.sh tests/test_llama.py  # chosen test files (paths from the repository root)
#
# Python is not instrumented, so the sanitizer runtime is preloaded; leak detection is off
# (CPython keeps its own allocations until exit). Any ASan/UBSan report aborts the process
# that made it, which fails the test. The build takes a while (llama.cpp from source, -O1 -g).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/_common.sh
export LLAMA_CPP_SOURCE_DIR=${LLAMA_CPP_SOURCE_DIR:-$(python3 scripts/fetch_llama_cpp.py)}
python3 scripts/fetch_models.py
py=$(find_python 3.11 || find_python 3.12)
step "sanitized build ($py)"
make_venv .venv-asan "$py"
.venv-asan/bin/python -m pip install -q pytest numpy pyyaml tqdm jsonschema jinja2 hypothesis
CMAKE_BUILD_TYPE=RelWithDebInfo CMAKE_ARGS="-DGGML_CUDA=OFF -DLLAMA_SANITIZE=ON" \
  pip_build build/logs/asan.log .venv-asan/bin/python install --force-reinstall --no-deps .
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/test_llama.py tests/test_errors.py tests/test_grammar.py tests/test_chat.py tests/test_state.py
         tests/test_template_limits.py tests/test_bad_arguments.py tests/test_pool.py)
fi
step "tests under ASan + UBSan: ${tests[*]}"
libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
(cd tests && LD_PRELOAD="$libasan:$libubsan" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$root/.venv-asan/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]/#/$root/}")
