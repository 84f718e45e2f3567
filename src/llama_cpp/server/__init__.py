"""An OpenAI-compatible HTTP server over :class:`~llama_cpp.LlamaPool` (``pip install .[server]``).

    python -m llama_cpp.server --model models/SmolLM2-135M-Instruct.Q4_1.gguf --pool-size 8

``create_app(settings)`` returns the FastAPI application, for mounting in another ASGI app.
"""

from __future__ import annotations

from .app import create_app
from .settings import ModelSettings, ServerSettings, load_config

__all__ = ["create_app", "ServerSettings", "ModelSettings", "load_config"]
