#include "grammar.h"

#include <llama.h>

#include "backend.h"
#include "errors.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "model.h"

namespace lcn {

void validate_grammar(const std::string& gbnf, const std::string& root, const Model* model) {
    if (gbnf.empty()) throw ValidationError("[LlamaGrammar] the grammar is empty");
    ensure_backend();
    clear_error_messages();
    llama_sampler* sampler =
        llama_sampler_init_grammar(model != nullptr ? model->vocab() : nullptr, gbnf.c_str(), root.c_str());
    if (sampler != nullptr) {
        llama_sampler_free(sampler);
        return;
    }
    std::string reason = last_error_messages();
    if (model == nullptr && reason.find("no vocab to parse token") != std::string::npos) return;
    if (reason.empty()) reason = "llama.cpp rejected the grammar";
    throw ValidationError("[LlamaGrammar] invalid grammar: " + reason);
}

std::string json_schema_to_gbnf(const std::string& schema_json) {
    try {
        return json_schema_to_grammar(common_json::parse(schema_json));
    } catch (const std::exception& e) {
        throw ValidationError(std::string("[LlamaGrammar.from_json_schema] ") + e.what());
    }
}

}  // namespace lcn
