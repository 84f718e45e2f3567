// Grammar helpers: GBNF validation and JSON-schema conversion (llama.cpp's own converter).
#pragma once

#include <string>

namespace lcn {

class Model;

// Parses a GBNF grammar; throws ValidationError carrying llama.cpp's parser message.
// With model == nullptr, grammars that name tokens by text (<token>) are accepted
// unchecked: those need a vocabulary and are checked again when sampling starts.
void validate_grammar(const std::string& gbnf, const std::string& root, const Model* model);

// JSON schema (as JSON text) to GBNF through llama.cpp common's json_schema_to_grammar.
// Throws ValidationError on invalid JSON or an unsupported schema.
// Throws ValidationError (prefixed "[api]") when ( ) groups nest deeper than llama.cpp's
// recursive parser and grammar stacks can take (a stack overflow is not an exception).
void check_grammar_nesting(const std::string& gbnf, const char* api);

std::string json_schema_to_gbnf(const std::string& schema_json);

}  // namespace lcn
