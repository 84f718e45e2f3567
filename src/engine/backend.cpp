#include "backend.h"

#include <llama.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace lcn {
namespace {

std::mutex backend_mutex;
bool backend_ready = false;
std::atomic<int> min_level{3};
thread_local std::string recent_errors;

int rank(ggml_log_level level) {
    switch (level) {
        case GGML_LOG_LEVEL_DEBUG: return 0;
        case GGML_LOG_LEVEL_INFO: return 1;
        case GGML_LOG_LEVEL_WARN: return 2;
        case GGML_LOG_LEVEL_ERROR: return 3;
        default: return -1;  // NONE / CONT: continuation of the previous line
    }
}

void log_sink(ggml_log_level level, const char* text, void* /*user_data*/) {
    static thread_local int last_rank = 1;
    int r = rank(level);
    if (r < 0) {
        r = last_rank;
    }
    last_rank = r;
    if (r >= 3 && text != nullptr) {
        // Bounded so that a chatty failure cannot grow memory without limit.
        if (recent_errors.size() < 4096) recent_errors += text;
    }
    if (r >= min_level.load(std::memory_order_relaxed) && text != nullptr) {
        std::fputs(text, stderr);
        std::fflush(stderr);
    }
}

}  // namespace

void ensure_backend() {
    std::lock_guard<std::mutex> lock(backend_mutex);
    if (backend_ready) return;
    llama_log_set(log_sink, nullptr);
    llama_backend_init();
    backend_ready = true;
}

void free_backend() {
    std::lock_guard<std::mutex> lock(backend_mutex);
    if (!backend_ready) return;
    llama_backend_free();
    backend_ready = false;
}

void set_log_level(int level) {
    // Installing the sink here too means logging is ours even before the first load.
    llama_log_set(log_sink, nullptr);
    min_level.store(level, std::memory_order_relaxed);
}

int log_level() { return min_level.load(std::memory_order_relaxed); }

std::string last_error_messages() {
    std::string text = recent_errors;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
}

void clear_error_messages() {
    recent_errors.clear();
}

std::string system_info() {
    ensure_backend();
    return llama_print_system_info();
}

}  // namespace lcn
