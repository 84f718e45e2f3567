// llama.cpp stops the whole process when one of its GGML_ASSERTs fails, including asserts that
// a hostile model file, grammar or adapter can reach. Inside an AbortGuard, such a failure on
// this thread becomes a C++ exception (LlamaAbort) instead: the code between the assert and
// our catch is llama.cpp's loader, vocabulary, grammar and sampler code, which owns its state
// through RAII and already turns exceptions into error returns (llama_model_load_from_file
// returns null and logs the reason).
//
// Never guard work that runs on ggml's compute threads (llama_decode): an exception there
// would leave the other threads waiting at a barrier. Unguarded threads keep llama.cpp's
// behaviour (message on stderr, then abort).
#pragma once

#include "errors.h"

namespace lcn {

// "file:line: GGML_ASSERT(condition) failed": a LlamaError unless the guarded code turns it
// into a more specific one.
struct LlamaAbort : LlamaError {
    using LlamaError::LlamaError;
};

// Installs the process-wide ggml abort callback (idempotent; ensure_backend() calls it).
void install_abort_handler();

class AbortGuard {
public:
    AbortGuard();
    ~AbortGuard();
    AbortGuard(const AbortGuard&) = delete;
    AbortGuard& operator=(const AbortGuard&) = delete;

    // Whether an assert failed on this thread since the guard began (llama.cpp may have
    // caught the LlamaAbort itself and returned an error code).
    bool fired() const;

private:
    unsigned long start_;
};

}  // namespace lcn
