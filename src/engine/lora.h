// LoraAdapter: the RAII owner of a llama_adapter_lora. It holds its model, so the
// weights it patches outlive it.
#pragma once

#include <llama.h>

#include <memory>
#include <string>

#include "model.h"

namespace lcn {

class LoraAdapter {
public:
    // Throws ModelLoadError for a missing or non-GGUF file, ValidationError when
    // llama.cpp rejects the adapter for this model (another architecture, shapes).
    static std::shared_ptr<LoraAdapter> load(std::shared_ptr<Model> model, const std::string& path);
    ~LoraAdapter();
    LoraAdapter(const LoraAdapter&) = delete;
    LoraAdapter& operator=(const LoraAdapter&) = delete;

    llama_adapter_lora* get() const { return adapter_; }
    const std::string& path() const { return path_; }

private:
    LoraAdapter(std::shared_ptr<Model> model, llama_adapter_lora* adapter, std::string path);
    std::shared_ptr<Model> model_;
    llama_adapter_lora* adapter_;
    std::string path_;
};

}  // namespace lcn
