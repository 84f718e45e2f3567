#include "gguf_check.h"

#include <ggml.h>
#include <gguf.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "abort_guard.h"
#include "errors.h"

namespace lcn {
namespace {

// llama.cpp's limits (src/llama-hparams.h at the pinned commit).
constexpr double kMaxLayers = 512;
constexpr double kMaxExperts = 1024;
constexpr int64_t kMaxKeys = 4096;
// Far above any real model's head count, embedding or feed-forward width.
constexpr double kMaxSize = 1 << 20;

struct GgufFree {
    void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};

class Checker {
public:
    Checker(const gguf_context* ctx, std::string prefix) : ctx_(ctx), prefix_(std::move(prefix)) {}

    [[noreturn]] void fail(const std::string& what) const { throw ModelLoadError(prefix_ + what); }

    // A scalar number under `key`, whatever its numeric type; nullopt when absent.
    std::optional<double> number(const std::string& key) const {
        const int64_t id = gguf_find_key(ctx_, key.c_str());
        if (id < 0) return std::nullopt;
        switch (gguf_get_kv_type(ctx_, id)) {
            case GGUF_TYPE_UINT8: return gguf_get_val_u8(ctx_, id);
            case GGUF_TYPE_INT8: return gguf_get_val_i8(ctx_, id);
            case GGUF_TYPE_UINT16: return gguf_get_val_u16(ctx_, id);
            case GGUF_TYPE_INT16: return gguf_get_val_i16(ctx_, id);
            case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx_, id);
            case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx_, id);
            case GGUF_TYPE_UINT64: return static_cast<double>(gguf_get_val_u64(ctx_, id));
            case GGUF_TYPE_INT64: return static_cast<double>(gguf_get_val_i64(ctx_, id));
            case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(ctx_, id);
            case GGUF_TYPE_FLOAT64: return gguf_get_val_f64(ctx_, id);
            case GGUF_TYPE_BOOL: return gguf_get_val_bool(ctx_, id) ? 1.0 : 0.0;
            case GGUF_TYPE_ARRAY: return std::nullopt;  // per-layer arrays: checked by llama.cpp
            default: fail("metadata key " + key + " should be a number");
        }
    }

    // Every number under `key`: the scalar, or each entry of an array of integers.
    std::vector<double> numbers(const std::string& key) const {
        const int64_t id = gguf_find_key(ctx_, key.c_str());
        if (id < 0) return {};
        if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_ARRAY) {
            const auto v = number(key);
            return v ? std::vector<double>{*v} : std::vector<double>{};
        }
        const gguf_type type = gguf_get_arr_type(ctx_, id);
        if (type != GGUF_TYPE_INT32 && type != GGUF_TYPE_UINT32 && type != GGUF_TYPE_INT64 && type != GGUF_TYPE_UINT64) {
            return {};  // other element types: llama.cpp rejects them itself
        }
        const size_t n = gguf_get_arr_n(ctx_, id);
        const void* data = gguf_get_arr_data(ctx_, id);
        std::vector<double> out;
        for (size_t i = 0; i < n; ++i) {
            switch (type) {
                case GGUF_TYPE_INT32: out.push_back(static_cast<const int32_t*>(data)[i]); break;
                case GGUF_TYPE_UINT32: out.push_back(static_cast<const uint32_t*>(data)[i]); break;
                case GGUF_TYPE_INT64: out.push_back(static_cast<double>(static_cast<const int64_t*>(data)[i])); break;
                case GGUF_TYPE_UINT64: out.push_back(static_cast<double>(static_cast<const uint64_t*>(data)[i])); break;
                default: return out;  // other element types: llama.cpp rejects them itself
            }
        }
        return out;
    }

    // Length of the array under `key`; nullopt when absent; fails when it is not an array.
    std::optional<size_t> array_length(const std::string& key) const {
        const int64_t id = gguf_find_key(ctx_, key.c_str());
        if (id < 0) return std::nullopt;
        if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_ARRAY) fail("metadata key " + key + " should be an array");
        return gguf_get_arr_n(ctx_, id);
    }

    void vocabulary() const {
        const auto tokens = array_length("tokenizer.ggml.tokens");
        if (!tokens) return;
        const int64_t id = gguf_find_key(ctx_, "tokenizer.ggml.tokens");
        if (gguf_get_arr_type(ctx_, id) != GGUF_TYPE_STRING) fail("tokenizer.ggml.tokens should be an array of strings");
        for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
            const auto n = array_length(key);
            if (n && *n != *tokens) {
                fail(std::string(key) + " has " + std::to_string(*n) + " entries but tokenizer.ggml.tokens has " +
                     std::to_string(*tokens) + " (the vocabulary arrays must have one entry per token)");
            }
        }
        const int64_t merges = gguf_find_key(ctx_, "tokenizer.ggml.merges");
        if (merges >= 0 && (gguf_get_kv_type(ctx_, merges) != GGUF_TYPE_ARRAY ||
                            gguf_get_arr_type(ctx_, merges) != GGUF_TYPE_STRING)) {
            fail("tokenizer.ggml.merges should be an array of strings");
        }
    }

    void hyperparameters(const std::string& arch) const {
        const auto layers = number(arch + ".block_count");
        if (layers && !(*layers >= 1 && *layers <= kMaxLayers)) {
            fail(arch + ".block_count is " + fmt(*layers) + "; llama.cpp supports 1 to " + fmt(kMaxLayers) + " layers");
        }
        const auto experts = number(arch + ".expert_count");
        const auto used = number(arch + ".expert_used_count");
        if (experts && !(*experts >= 0 && *experts <= kMaxExperts)) {
            fail(arch + ".expert_count is " + fmt(*experts) + "; llama.cpp supports at most " + fmt(kMaxExperts));
        }
        if (used && !(*used >= 0 && *used <= experts.value_or(0))) {
            fail(arch + ".expert_used_count is " + fmt(*used) + " but " + arch + ".expert_count is " +
                 fmt(experts.value_or(0)));
        }
        if (experts && *experts > 0 && (!used || *used < 1)) {
            fail(arch + ".expert_count is " + fmt(*experts) + " but " + arch + ".expert_used_count is not at least 1");
        }
        // M-RoPE sections reach the rope kernel unchecked: it asserts one of them is positive.
        const int64_t sections = gguf_find_key(ctx_, (arch + ".rope.dimension_sections").c_str());
        if (sections >= 0 && gguf_get_kv_type(ctx_, sections) == GGUF_TYPE_ARRAY &&
            (gguf_get_arr_type(ctx_, sections) == GGUF_TYPE_INT32 || gguf_get_arr_type(ctx_, sections) == GGUF_TYPE_UINT32)) {
            const auto* v = static_cast<const int32_t*>(gguf_get_arr_data(ctx_, sections));
            bool positive = false;
            for (size_t k = 0; k < std::min<size_t>(4, gguf_get_arr_n(ctx_, sections)); ++k) positive |= v[k] > 0;
            if (!positive) fail(arch + ".rope.dimension_sections has no positive entry among its first four");
        }
        // Per-layer sizes (scalars or one entry per layer): llama.cpp sizes its buffers by them.
        for (const char* name : {".attention.head_count", ".attention.head_count_kv", ".feed_forward_length",
                                 ".embedding_length"}) {
            const std::string key = arch + name;
            for (const double v : numbers(key)) {
                if (!(v >= 0 && v <= kMaxSize)) {
                    fail(key + " has the value " + fmt(v) + "; llama.cpp's sizes are between 0 and " + fmt(kMaxSize));
                }
            }
        }
        // A rope base of zero, below zero or NaN only shows up as NaN logits.
        const auto base = number(arch + ".rope.freq_base");
        if (base && !(std::isfinite(*base) && *base > 0)) {
            fail(arch + ".rope.freq_base is " + fmt(*base) + "; it must be a finite number > 0");
        }
        // Normalisation epsilons reach the compute kernels unchecked (ggml-cpu asserts eps >= 0
        // on a worker thread while decoding).
        const int64_t n_kv = gguf_get_n_kv(ctx_);
        for (int64_t i = 0; i < n_kv; ++i) {
            const std::string key = gguf_get_key(ctx_, i);
            if (key.find("epsilon") == std::string::npos) continue;
            const auto eps = number(key);
            if (eps && !(std::isfinite(*eps) && *eps >= 0)) fail(key + " is " + fmt(*eps) + "; it must be a finite number >= 0");
        }
    }

    void tensors() const {
        const int64_t n = gguf_get_n_tensors(ctx_);
        for (int64_t i = 0; i < n; ++i) {
            const int64_t* ne = gguf_get_tensor_ne(ctx_, i);
            const ggml_type type = gguf_get_tensor_type(ctx_, i);
            // Vectors (norm weights, biases, scales) are added and multiplied element-wise; the
            // CPU kernels take them as F32 only (llama.cpp's converters always write them so) and
            // assert otherwise mid-decode, on a worker thread.
            const bool vector = ne[1] == 1 && ne[2] == 1 && ne[3] == 1;
            if (vector && type != GGML_TYPE_F32) {
                fail(std::string("tensor ") + gguf_get_tensor_name(ctx_, i) + " has one row of type " +
                     ggml_type_name(type) + "; vectors (norms, biases) must be F32");
            }
            // Integer, F64 and the intermediate Q8_1/Q8_K types are not weight formats: the CPU
            // kernels have no matrix product or row lookup for them (a null function pointer).
            switch (type) {
                case GGML_TYPE_I8: case GGML_TYPE_I16: case GGML_TYPE_I32: case GGML_TYPE_I64:
                case GGML_TYPE_F64: case GGML_TYPE_Q8_1: case GGML_TYPE_Q8_K:
                    fail(std::string("tensor ") + gguf_get_tensor_name(ctx_, i) + " has type " + ggml_type_name(type) +
                         ", which is not a weight format llama.cpp computes with");
                default: break;
            }
        }
    }

private:
    static std::string fmt(double v) {
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e18) return std::to_string(static_cast<long long>(v));
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", v);
        return buf;
    }

    const gguf_context* ctx_;
    std::string prefix_;
};

}  // namespace

void check_file(const std::string& path, const char* api);

void preflight_gguf(const std::string& path, const char* api) {
    try {
        AbortGuard guard;  // ggml's GGUF accessors assert on a wrong type: a check here must not stop the process
        check_file(path, api);
    } catch (const LlamaAbort& e) {
        throw ModelLoadError(std::string(*api != 0 ? "[" : "") + api + (*api != 0 ? "] " : "") + "'" + path +
                             "' is not a usable model: " + e.what());
    }
}

void preflight_lora(const std::string& path) {
    gguf_init_params params = {/*no_alloc=*/true, /*ctx=*/nullptr};
    std::unique_ptr<gguf_context, GgufFree> ctx;
    try {
        AbortGuard guard;
        ctx.reset(gguf_init_from_file(path.c_str(), params));
    } catch (const LlamaAbort&) {
        return;  // llama.cpp's own loader reports a file its reader refuses
    }
    if (ctx == nullptr) return;
    const std::string prefix = "cannot apply LoRA adapter '" + path + "': ";
    // llama.cpp compares the first two dimensions of each pair with the base model's tensor and
    // not the others, nor the type: a 3-D tensor passed and asserted in the first matrix
    // product, an integer one was read as floats out of bounds (SIGSEGV).
    const int64_t n = gguf_get_n_tensors(ctx.get());
    for (int64_t i = 0; i < n; ++i) {
        const std::string name = gguf_get_tensor_name(ctx.get(), i);
        const int64_t* ne = gguf_get_tensor_ne(ctx.get(), i);
        if (ne[2] != 1 || ne[3] != 1) {
            throw ValidationError(prefix + "tensor " + name + " has " + std::to_string(ne[3] != 1 ? 4 : 3) +
                                  " dimensions; LoRA tensors are matrices");
        }
        switch (gguf_get_tensor_type(ctx.get(), i)) {
            case GGML_TYPE_I8: case GGML_TYPE_I16: case GGML_TYPE_I32: case GGML_TYPE_I64:
            case GGML_TYPE_F64: case GGML_TYPE_Q8_1: case GGML_TYPE_Q8_K:
                throw ValidationError(prefix + "tensor " + name + " has type " +
                                      ggml_type_name(gguf_get_tensor_type(ctx.get(), i)) +
                                      ", which is not a weight format llama.cpp computes with");
            default: break;
        }
    }
}

void check_file(const std::string& path, const char* api) {
    gguf_init_params params = {/*no_alloc=*/true, /*ctx=*/nullptr};
    std::unique_ptr<gguf_context, GgufFree> ctx(gguf_init_from_file(path.c_str(), params));
    if (ctx == nullptr) return;
    std::string prefix = *api != 0 ? std::string("[") + api + "] " : std::string();
    prefix += "'" + path + "' is not a usable model: ";
    Checker check(ctx.get(), prefix);
    // llama.cpp lists metadata by walking its map from the start for each index: a file with
    // tens of thousands of keys makes Llama.metadata take many seconds. Real models have < 100.
    if (gguf_get_n_kv(ctx.get()) > kMaxKeys) {
        check.fail("it has " + std::to_string(gguf_get_n_kv(ctx.get())) + " metadata keys; the limit is " +
                   std::to_string(kMaxKeys));
    }
    check.vocabulary();
    const int64_t arch_id = gguf_find_key(ctx.get(), "general.architecture");
    if (arch_id >= 0 && gguf_get_kv_type(ctx.get(), arch_id) == GGUF_TYPE_STRING) {
        check.hyperparameters(gguf_get_val_str(ctx.get(), arch_id));
    }
    check.tensors();
}

}  // namespace lcn
