# Shared by scripts/run.sh and scripts/test.sh (sourced, not run).

# find_python VERSION: the path of a CPython of that version (PATH first, then pyenv).
find_python() {
  local v=$1 candidate
  for candidate in "python$v" "$HOME/.pyenv/versions/$v"*/bin/"python$v" /usr/bin/"python$v" /usr/local/bin/"python$v"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# make_venv DIR PYTHON: a virtual environment with pip up to date.
make_venv() {
  local dir=$1 python=$2
  if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null
}

step() { printf '\n==> %s\n' "$*"; }

# build_progress LOG: reads a verbose pip build (pip -v) on stdin, keeps all of it in LOG and
# shows what a person waiting wants to see: ninja's [n/N] compile steps, the build's CUDA
# decision, CMake warnings and errors. A plain 'pip install .' shows none of it, and pip -v
# alone adds a few hundred lines of pip's own detail.
build_progress() {
  mkdir -p "$(dirname "$1")"
  tee "$1" | { grep --line-buffered -E '^ *(\[[0-9]+/[0-9]+\] |(-- )?CUDA: (on|off) |CMake (Warning|Error)|ERROR|error:)' || true; } \
    | sed -u 's/^ *//'
}

# pip_build LOG PYTHON PIP_INSTALL_ARGS...: 'PYTHON -m pip ARGS -v' with build_progress; on
# failure the end of LOG is printed.
pip_build() {
  local log=$1 python=$2
  shift 2
  if ! "$python" -m pip "$@" -v 2>&1 | build_progress "$log"; then
    tail -n 40 "$log"
    echo "pip $* failed; the whole log is in $log" >&2
    return 1
  fi
}
