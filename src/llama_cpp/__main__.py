"""``python -m llama_cpp``: the command-line interface (see :mod:`llama_cpp.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
