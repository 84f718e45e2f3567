#include "backend.h"

#include "log.h"  // llama.cpp common

#include <ggml-backend.h>
#include <llama.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "build_config.h"
#include "devices.h"

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

// llama.cpp's common library (chat templates and parsers) logs through its own logger, not
// llama_log_set: its threshold follows ours (0 debug .. 3 errors only; above: silent).
void set_common_log_level(int level) {
    static constexpr int thresholds[] = {LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR};
    common_log_set_verbosity_thold(level >= 0 && level <= 3 ? thresholds[level] : -1);
}

}  // namespace

void ensure_backend() {
    std::lock_guard<std::mutex> lock(backend_mutex);
    if (backend_ready) return;
    llama_log_set(log_sink, nullptr);
    set_common_log_level(min_level.load(std::memory_order_relaxed));
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
    set_common_log_level(level);
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

namespace {

const char* device_type_name(enum ggml_backend_dev_type type) {
    switch (type) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "CPU";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "GPU";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "integrated GPU";
        case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accelerator";
        default: return "other";
    }
}

bool is_gpu(enum ggml_backend_dev_type type) {
    return type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU;
}

std::string gib(size_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
    return text;
}

}  // namespace

std::string system_info() {
    ensure_backend();
    std::string out = "llama.cpp ";
    out += llama_version();
    out += "\nCUDA: ";
    out += LLAMA_NB_CUDA_STATUS;
    out += "\n";
    out += llama_print_system_info();
    while (!out.empty() && (out.back() == ' ' || out.back() == '|')) out.pop_back();
    out += "\nggml backends:";
    // A backend with no device (CUDA built, no GPU present) is listed too: it explains
    // why a GPU build runs on the CPU.
    std::string gpu_backends;
    int offload_index = 0;  // what LlamaConfig(devices=[...], main_gpu=...) calls a device
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        ggml_backend_reg_t reg = ggml_backend_reg_get(i);
        const size_t n_devices = ggml_backend_reg_dev_count(reg);
        out += "\n  ";
        out += ggml_backend_reg_name(reg);
        out += ": " + std::to_string(n_devices) + (n_devices == 1 ? " device" : " devices");
        bool gpu_backend = false;
        for (size_t j = 0; j < n_devices; ++j) {
            ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, j);
            const enum ggml_backend_dev_type type = ggml_backend_dev_type(dev);
            out += "\n    ";
            out += ggml_backend_dev_name(dev);
            out += " (";
            out += device_type_name(type);
            if (is_gpu(type)) out += ", index " + std::to_string(offload_index++);
            out += "): ";
            out += ggml_backend_dev_description(dev);
            if (is_gpu(type)) {
                gpu_backend = true;
                size_t free = 0, total = 0;
                ggml_backend_dev_memory(dev, &free, &total);
                out += ", " + gib(total) + " total, " + gib(free) + " free";
            }
        }
        const std::string name = ggml_backend_reg_name(reg);
        // RPC has no device of its own: its devices are the servers a model names.
        if (gpu_backend || (n_devices == 0 && name != "CPU" && name != "RPC")) {
            if (!gpu_backends.empty()) gpu_backends += ", ";
            gpu_backends += name;
            if (n_devices == 0) gpu_backends += " (no device found)";
        }
    }
    out += "\nGPU backends: ";
    out += gpu_backends.empty() ? "none (this build is CPU-only)" : gpu_backends;
    out += "\nGPU offload: ";
    out += has_gpu() ? "yes" : "no";
    out += "\nRPC: ";
    out += llama_supports_rpc() ? "yes (LlamaConfig(rpc_servers=[...]); workers: python -m llama_cpp.rpc_server)"
                                : "no (built without GGML_RPC)";
    return out;
}

}  // namespace lcn
