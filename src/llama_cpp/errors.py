"""The exception hierarchy. Every error the package raises on purpose is one of these.

- :class:`LlamaError`: the base class.
- :class:`ModelLoadError`: a model file is missing, unreadable, not GGUF or corrupt.
- :class:`ValidationError`: an argument is out of range; the message names it and the limit.
- :class:`GenerationError`: llama.cpp failed while decoding or sampling.

The classes are defined once, in the C++ extension, so errors raised deep in C++
and errors raised by the Python layer are the same types.
"""

from __future__ import annotations

from ._core import GenerationError, LlamaError, ModelLoadError, ValidationError

__all__ = ["LlamaError", "ModelLoadError", "ValidationError", "GenerationError"]
