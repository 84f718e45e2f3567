// Model: the RAII owner of a llama_model and its vocabulary.
#pragma once

#include <llama.h>

#include <cstdint>
#include <map>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "devices.h"

namespace lcn {

// Throws ModelLoadError unless `path` names a readable file starting with the GGUF magic.
void check_gguf_file(const std::string& path, const char* api, const char* what = "model file");

struct ModelParams {
    std::string path;
    int32_t n_gpu_layers = -1;  // -1: every layer on the GPU when there is one
    bool vocab_only = false;
    bool use_mmap = true;
    Placement placement;  // devices, split, RPC servers
};

// Shared by every context created from it: contexts hold a shared_ptr, so the
// weights outlive the last context whatever order Python frees things in.
// All methods are const and safe to call from several threads at once.
class Model {
public:
    // Throws ModelLoadError naming the path and the reason.
    // `progress` (optional, must not throw) gets the fraction loaded, 0 to 1, as llama.cpp
    // reports it; returning false cancels the load (ModelLoadError saying so).
    static std::shared_ptr<Model> load(const ModelParams& params,
                                       const std::function<bool(float)>* progress = nullptr);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    llama_model* get() const { return model_; }
    const llama_vocab* vocab() const { return vocab_; }
    const ModelParams& params() const { return params_; }

    std::vector<llama_token> tokenize(std::string_view text, bool add_special, bool parse_special) const;
    // Raw bytes of the tokens' text (may end inside a UTF-8 character).
    std::string detokenize(const std::vector<llama_token>& tokens, bool render_special) const;
    std::string token_to_piece(llama_token token, bool render_special) const;
    // ValidationError, its message starting with `what`, unless `token` is in the vocabulary.
    void check_token(llama_token token, const char* what) const;

    int32_t n_vocab() const { return llama_vocab_n_tokens(vocab_); }
    int32_t n_ctx_train() const { return llama_model_n_ctx_train(model_); }
    int32_t n_embd() const { return llama_model_n_embd(model_); }
    int32_t n_layer() const { return llama_model_n_layer(model_); }
    uint64_t size_bytes() const { return llama_model_size(model_); }
    uint64_t n_params() const { return llama_model_n_params(model_); }
    bool add_bos() const { return llama_vocab_get_add_bos(vocab_); }
    bool is_eog(llama_token token) const { return llama_vocab_is_eog(vocab_, token); }
    llama_token bos() const { return llama_vocab_bos(vocab_); }
    llama_token eos() const { return llama_vocab_eos(vocab_); }
    std::string description() const;
    std::map<std::string, std::string> metadata() const;

private:
    Model(llama_model* model, ModelParams params);
    std::string piece_of(llama_token token, bool render_special) const;
    llama_model* model_;
    const llama_vocab* vocab_;
    ModelParams params_;
};

}  // namespace lcn
