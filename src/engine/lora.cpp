#include "lora.h"

#include "abort_guard.h"
#include "backend.h"
#include "errors.h"
#include "gguf_check.h"

namespace lcn {

std::shared_ptr<LoraAdapter> LoraAdapter::load(std::shared_ptr<Model> model, const std::string& path) {
    check_gguf_file(path, "", "LoRA adapter file");  // the Python layer names the API
    preflight_lora(path);
    clear_error_messages();
    llama_adapter_lora* adapter = nullptr;
    {
        AbortGuard guard;  // llama.cpp returns null with the reason logged
        adapter = llama_adapter_lora_init(model->get(), path.c_str());
    }
    if (adapter == nullptr) {
        std::string reason = last_error_messages();
        if (reason.empty()) reason = "llama.cpp rejected the adapter";
        throw ValidationError("cannot apply LoRA adapter '" + path + "' to this model: " + reason);
    }
    return std::shared_ptr<LoraAdapter>(new LoraAdapter(std::move(model), adapter, path));
}

LoraAdapter::LoraAdapter(std::shared_ptr<Model> model, llama_adapter_lora* adapter, std::string path)
    : model_(std::move(model)), adapter_(adapter), path_(std::move(path)) {}

LoraAdapter::~LoraAdapter() { llama_adapter_lora_free(adapter_); }

}  // namespace lcn
