"""``python -m llama_cpp.server --model PATH [--host 127.0.0.1] [--port 8000] [--pool-size N] ...``"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import LlamaError

if TYPE_CHECKING:
    from .settings import ServerSettings


def main(argv: Sequence[str] | None = None, prog: str = "python -m llama_cpp.server") -> int:
    """Parses the flags and serves until interrupted; returns the exit status."""
    from .settings import add_arguments, from_arguments

    parser = argparse.ArgumentParser(prog=prog, description="An OpenAI-compatible server over LlamaPool.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = from_arguments(args)
    except LlamaError as e:
        parser.error(str(e))
    return serve(settings)


def serve(settings: ServerSettings) -> int:
    """Runs uvicorn with the app of ``settings`` until interrupted."""
    import os

    import uvicorn

    from .app import create_app

    for model in settings.models:
        if not os.path.isfile(model.model):
            print(f"error: model file {model.model!r} does not exist", file=sys.stderr)
            return 2
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level))
    models = app.state.models
    models.on_failure = lambda: setattr(server, "should_exit", True)  # a model that cannot load ends the server
    server.run()
    return 1 if models.error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
