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
