#include "model.h"

#include <stdexcept>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "abort_guard.h"
#include "backend.h"
#include "errors.h"
#include "gguf_check.h"

namespace lcn {
// Checks llama.cpp would otherwise report only through its log (or not at all):
// a clear, specific reason is worth a few syscalls before the real load.
void check_gguf_file(const std::string& path, const char* api, const char* what) {
    const std::string prefix = *api != 0 ? std::string("[") + api + "] " : std::string();
    if (path.empty()) throw ModelLoadError(prefix + "the path is empty");
    // Opening a FIFO or a device would block or never end: only regular files are read.
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        throw ModelLoadError(prefix + "cannot open " + what + " '" + path + "': " + std::strerror(errno));
    }
    if (!S_ISREG(info.st_mode)) {
        throw ModelLoadError(prefix + "cannot open " + what + " '" + path + "': " +
                             (S_ISDIR(info.st_mode) ? "it is a directory" : "it is not a regular file"));
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw ModelLoadError(prefix + "cannot open " + what + " '" + path + "': " + std::strerror(errno));
    }
    char magic[4] = {};
    file.read(magic, sizeof magic);
    if (file.gcount() != sizeof magic || std::memcmp(magic, "GGUF", 4) != 0) {
        throw ModelLoadError(prefix + "'" + path + "' is not a GGUF file (bad magic bytes)");
    }
}

namespace {

// Multi-section rope (Qwen2-VL and its kind): llama.cpp reads the sections as optional, zero by
// default, and its rope kernel asserts one is positive on a worker thread, mid-decode.
void check_rope_sections(const Model& model) {
    const llama_rope_type type = llama_model_rope_type(model.get());
    if (type != LLAMA_ROPE_TYPE_MROPE && type != LLAMA_ROPE_TYPE_IMROPE && type != LLAMA_ROPE_TYPE_VISION) return;
    char arch[128] = {};
    llama_model_meta_val_str(model.get(), "general.architecture", arch, sizeof arch);
    const std::string key = std::string(arch) + ".rope.dimension_sections";
    char value[256] = {};
    const int32_t n = llama_model_meta_val_str(model.get(), key.c_str(), value, sizeof value);
    bool positive = false;
    for (const char* p = value; n > 0 && *p != 0; ++p) positive |= *p >= '1' && *p <= '9';
    if (!positive) {
        throw ModelLoadError("[Llama] '" + model.params().path + "' uses multi-section rope but " + key +
                             " is missing or has no positive entry");
    }
}

}  // namespace

std::shared_ptr<Model> Model::load(const ModelParams& params, const std::function<bool(float)>* progress) {
    check_gguf_file(params.path, "Llama");
    ensure_backend();
    preflight_gguf(params.path, "Llama");
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = params.n_gpu_layers;
    mp.vocab_only = params.vocab_only;
    mp.load_mode = params.use_mmap ? mp.load_mode : LLAMA_LOAD_MODE_NONE;
    std::vector<ggml_backend_dev_t> devices;  // what mp points into, alive until the load ends
    std::vector<float> tensor_split;
    apply_placement(params.placement, mp, devices, tensor_split);
    struct Progress {
        const std::function<bool(float)>* report;
        bool cancelled = false;
    } state{progress};
    if (progress != nullptr && *progress) {
        mp.progress_callback = [](float fraction, void* data) {
            auto* s = static_cast<Progress*>(data);
            if (!(*s->report)(fraction)) s->cancelled = true;
            return !s->cancelled;
        };
        mp.progress_callback_user_data = &state;
    }
    clear_error_messages();
    llama_model* model = nullptr;
    {
        // llama.cpp's loader catches exceptions and returns null with the reason logged.
        AbortGuard guard;
        model = llama_model_load_from_file(params.path.c_str(), mp);
    }
    if (model == nullptr && state.cancelled) {
        throw ModelLoadError("[Llama] loading '" + params.path + "' was cancelled by the progress callback");
    }
    if (model == nullptr) {
        std::string reason = last_error_messages();
        if (reason.empty()) reason = "llama.cpp rejected the file";
        throw ModelLoadError("[Llama] failed to load model '" + params.path + "': " + reason);
    }
    auto loaded = std::shared_ptr<Model>(new Model(model, params));
    // A vocabulary llama.cpp accepted can still be unusable (no tokens, no tokenizer, a BOS or
    // SEP it must add but does not have): found here rather than by the first prompt.
    if (loaded->n_vocab() <= 0) throw ModelLoadError("[Llama] '" + params.path + "' has no vocabulary");
    check_rope_sections(*loaded);
    try {
        loaded->tokenize("Hello", true, false);
    } catch (const std::exception& e) {
        throw ModelLoadError("[Llama] '" + params.path + "' has a vocabulary that cannot tokenize text: " + e.what());
    }
    return loaded;
}

Model::Model(llama_model* model, ModelParams params)
    : model_(model), vocab_(llama_model_get_vocab(model)), params_(std::move(params)) {}

Model::~Model() { llama_model_free(model_); }

std::vector<llama_token> Model::tokenize(std::string_view text, bool add_special, bool parse_special) const {
    if (text.size() > static_cast<size_t>(INT32_MAX) / 2) {
        throw ValidationError("text is too long to tokenize");
    }
    const auto n_text = static_cast<int32_t>(text.size());
    // A token covers at least one byte, plus BOS/EOS: this bound is exact enough
    // that the second call below only runs in pathological cases.
    std::vector<llama_token> tokens(static_cast<size_t>(n_text) + 2);
    int32_t n = 0;
    try {
        AbortGuard guard;  // the vocabulary asserts what a hostile file can leave out (BOS, SEP ids)
        n = llama_tokenize(vocab_, text.data(), n_text, tokens.data(), static_cast<int32_t>(tokens.size()),
                           add_special, parse_special);
        if (n < 0) {
            tokens.resize(static_cast<size_t>(-n));
            n = llama_tokenize(vocab_, text.data(), n_text, tokens.data(), static_cast<int32_t>(tokens.size()),
                               add_special, parse_special);
        }
    } catch (const LlamaError&) {
        throw;
    } catch (const std::invalid_argument& e) {
        // llama.cpp's UTF-8 decoder: the text (bytes given by the caller) is not valid UTF-8
        throw ValidationError(std::string("the text is not valid UTF-8: ") + e.what());
    } catch (const std::exception& e) {
        // e.g. std::out_of_range from a SentencePiece vocabulary without the byte tokens it needs
        throw LlamaError(std::string("this model's vocabulary cannot tokenize the text: ") + e.what());
    }
    if (n < 0) throw LlamaError("llama_tokenize failed");
    tokens.resize(static_cast<size_t>(n));
    return tokens;
}

void Model::check_token(llama_token token, const char* what) const {
    if (token < 0 || token >= n_vocab()) {
        throw ValidationError(std::string(what) + (*what != 0 ? " " : "") + "token id " + std::to_string(token) +
                              " is out of range (vocabulary has " + std::to_string(n_vocab()) + " tokens)");
    }
}

std::string Model::token_to_piece(llama_token token, bool render_special) const {
    try {
        return piece_of(token, render_special);
    } catch (const LlamaError&) {
        throw;
    } catch (const std::exception& e) {
        throw LlamaError("this model's vocabulary cannot render token " + std::to_string(token) + ": " + e.what());
    }
}

std::string Model::piece_of(llama_token token, bool render_special) const {
    AbortGuard guard;
    char buf[256];
    int32_t n = llama_token_to_piece(vocab_, token, buf, sizeof buf, 0, render_special);
    if (n >= 0) return std::string(buf, static_cast<size_t>(n));
    std::string piece(static_cast<size_t>(-n), '\0');
    n = llama_token_to_piece(vocab_, token, piece.data(), static_cast<int32_t>(piece.size()), 0, render_special);
    piece.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return piece;
}

std::string Model::detokenize(const std::vector<llama_token>& tokens, bool render_special) const {
    for (llama_token t : tokens) check_token(t, "");
    std::string text;
    for (llama_token t : tokens) text += token_to_piece(t, render_special);
    return text;
}

std::string Model::description() const {
    char buf[256];
    int32_t n = llama_model_desc(model_, buf, sizeof buf);
    return n > 0 ? std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1)) : std::string();
}

std::map<std::string, std::string> Model::metadata() const {
    std::map<std::string, std::string> out;
    const int32_t count = llama_model_meta_count(model_);
    std::string key(256, '\0');
    std::string value(4096, '\0');
    for (int32_t i = 0; i < count; ++i) {
        int32_t nk = llama_model_meta_key_by_index(model_, i, key.data(), key.size());
        int32_t nv = llama_model_meta_val_str_by_index(model_, i, value.data(), value.size());
        if (nv >= static_cast<int32_t>(value.size())) {
            value.resize(static_cast<size_t>(nv) + 1);
            nv = llama_model_meta_val_str_by_index(model_, i, value.data(), value.size());
        }
        if (nk < 0 || nv < 0) continue;
        out.emplace(std::string(key.data(), std::min<size_t>(static_cast<size_t>(nk), key.size() - 1)),
                    std::string(value.data(), static_cast<size_t>(nv)));
    }
    return out;
}

}  // namespace lcn
