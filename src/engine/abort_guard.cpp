#include "abort_guard.h"

#include <ggml.h>

#include <cstdio>
#include <mutex>

namespace lcn {
namespace {

thread_local int guard_depth = 0;
thread_local unsigned long aborts = 0;

// ggml_abort calls this with "file:line: message" and calls abort() if it returns.
void on_ggml_abort(const char* message) {
    if (guard_depth > 0) {
        ++aborts;
        throw LlamaAbort(message);
    }
    std::fprintf(stderr, "%s\n", message);
    std::fflush(stderr);
}

}  // namespace

void install_abort_handler() {
    static std::once_flag once;
    std::call_once(once, [] { ggml_set_abort_callback(on_ggml_abort); });
}

AbortGuard::AbortGuard() : start_(aborts) {
    install_abort_handler();
    ++guard_depth;
}

bool AbortGuard::fired() const { return aborts != start_; }

AbortGuard::~AbortGuard() { --guard_depth; }

}  // namespace lcn
