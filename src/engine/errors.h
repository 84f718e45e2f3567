// The exception hierarchy shared by the engine and the bindings.
// Each type maps one-to-one onto a Python class in llama_cpp.errors.
#pragma once

#include <stdexcept>
#include <string>

namespace lcn {

struct LlamaError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The model file is missing, unreadable, not GGUF, or rejected by llama.cpp.
struct ModelLoadError : LlamaError {
    using LlamaError::LlamaError;
};

// An argument is out of range or inconsistent with the model or context.
struct ValidationError : LlamaError {
    using LlamaError::LlamaError;
};

// llama.cpp failed while decoding or sampling.
struct GenerationError : LlamaError {
    using LlamaError::LlamaError;
};

}  // namespace lcn
