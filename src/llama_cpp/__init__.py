"""llama_cpp: Python bindings for llama.cpp, written in C++ with nanobind.

    from llama_cpp import Llama, SamplingParams
    with Llama("models/SmolLM2-135M-Instruct.Q4_1.gguf") as llm:
        print(llm.generate("The capital of France is", max_tokens=16,
                           sampling=SamplingParams(temperature=0)))
"""

from __future__ import annotations

from ._logging import disable_logging, print_system_info, reset_logging, set_log_level
from .config import LlamaConfig
from .errors import GenerationError, LlamaError, ModelLoadError, ValidationError
from .grammar import LlamaGrammar
from .limits import TemplateLimits, set_template_limits, template_limits
from ._registry import shutdown
from .llama import Llama
from .lora import LoraAdapter
from .families import ModelFamily
from .placement import Device, devices, rpc_available
from .pool import LlamaPool
from .sampling import SamplingParams
from .unified import UnifiedLLM

__version__ = "0.1.0"

__all__ = [
    "Llama",
    "LlamaPool",
    "UnifiedLLM",
    "ModelFamily",
    "LlamaConfig",
    "SamplingParams",
    "LlamaGrammar",
    "LoraAdapter",
    "LlamaError",
    "ModelLoadError",
    "ValidationError",
    "GenerationError",
    "print_system_info",
    "set_log_level",
    "disable_logging",
    "reset_logging",
    "shutdown",
    "Device",
    "devices",
    "rpc_available",
    "TemplateLimits",
    "template_limits",
    "set_template_limits",
]
