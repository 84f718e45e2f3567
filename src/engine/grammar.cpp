#include "grammar.h"

#include <llama.h>

#include <algorithm>
#include <stdexcept>

#include "abort_guard.h"
#include "backend.h"
#include "errors.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "model.h"

#ifdef LLAMA_NB_GRAMMAR_PARSER
#include "llama-grammar.h"  // llama.cpp's src/ (not installed): see CMakeLists.txt
#endif

namespace lcn {
namespace {

#ifdef LLAMA_NB_GRAMMAR_PARSER
// llama_grammar_parser::parse() prints the reason for a failure to stderr (fprintf) and
// returns false. These are its steps (the pinned tree's src/llama-grammar.cpp) with the
// reason caught instead, so validating a grammar never writes to the process's stderr.
// Returns the reason, or "" when the grammar parses.
void check_alternatives(const llama_grammar_parser& parser);

std::string parse_error(const std::string& gbnf, const llama_vocab* vocab) {
    llama_grammar_parser parser(vocab);
    try {
        const char* pos = gbnf.c_str();
        // parse() starts with parse_space(src, true): blanks, newlines and # comments.
        while (*pos == ' ' || *pos == '\t' || *pos == '\r' || *pos == '\n' || *pos == '#') {
            if (*pos == '#') {
                while (*pos != '\0' && *pos != '\r' && *pos != '\n') ++pos;
            } else {
                ++pos;
            }
        }
        while (*pos != '\0') pos = parser.parse_rule(pos);
        check_alternatives(parser);
        for (const auto& rule : parser.rules) {
            if (rule.empty()) throw std::runtime_error("Undefined rule");
            for (const auto& elem : rule) {
                if (elem.type != LLAMA_GRETYPE_RULE_REF ||
                    (elem.value < parser.rules.size() && !parser.rules[elem.value].empty())) {
                    continue;
                }
                for (const auto& [name, id] : parser.symbol_ids) {
                    if (id == elem.value) throw std::runtime_error("Undefined rule identifier '" + name + "'");
                }
            }
        }
    } catch (const std::exception& e) {
        // Messages such as "expecting ::= at <rest of the grammar>": keep the first line.
        const std::string what = e.what();
        return what.substr(0, what.find('\n'));
    }
    return {};
}

// Every alternative of a rule is a stack the grammar keeps while it is open, and each sampled
// token is checked against every stack: a rule of 100,000 alternatives makes each token take
// minutes. Enumerations of that size belong in a token-level check, not a grammar.
constexpr size_t kMaxAlternatives = 4096;

void check_alternatives(const llama_grammar_parser& parser) {
    for (size_t r = 0; r < parser.rules.size(); ++r) {
        const auto& rule = parser.rules[r];
        const size_t n = 1 + static_cast<size_t>(std::count_if(
            rule.begin(), rule.end(), [](const llama_grammar_element& e) { return e.type == LLAMA_GRETYPE_ALT; }));
        if (n <= kMaxAlternatives) continue;
        std::string name = "#" + std::to_string(r);
        for (const auto& [symbol, id] : parser.symbol_ids) {
            if (id == r) name = "'" + symbol + "'";
        }
        throw std::runtime_error("rule " + name + " has " + std::to_string(n) + " alternatives; the limit is " +
                                 std::to_string(kMaxAlternatives) + " (each one is checked for every sampled token)");
    }
}
#endif

// llama.cpp's GBNF parser and its grammar stacks recurse once per nested group: a grammar
// nested thousands deep overflows the thread's stack (SIGSEGV, no exception possible). Real
// grammars nest a handful of levels; this bound is far above them and far below the stack.
constexpr int kMaxGrammarNesting = 256;

// The deepest nesting of ( ) groups outside literals, character classes and comments.
int grammar_nesting(const std::string& gbnf) {
    int depth = 0;
    int deepest = 0;
    for (size_t i = 0; i < gbnf.size(); ++i) {
        const char c = gbnf[i];
        if (c == '#') {
            while (i < gbnf.size() && gbnf[i] != '\n' && gbnf[i] != '\r') ++i;
        } else if (c == '"' || c == '[') {
            const char close = c == '"' ? '"' : ']';
            for (++i; i < gbnf.size() && gbnf[i] != close; ++i) {
                if (gbnf[i] == '\\') ++i;
            }
        } else if (c == '(') {
            deepest = std::max(deepest, ++depth);
        } else if (c == ')') {
            depth = std::max(0, depth - 1);
        }
    }
    return deepest;
}

}  // namespace

void check_with_llama(const std::string& gbnf, const std::string& root, const Model* model);

void check_grammar_nesting(const std::string& gbnf, const char* api) {
    const int depth = grammar_nesting(gbnf);
    if (depth > kMaxGrammarNesting) {
        throw ValidationError(std::string("[") + api + "] invalid grammar: groups are nested " + std::to_string(depth) +
                              " deep; the limit is " + std::to_string(kMaxGrammarNesting));
    }
}

void validate_grammar(const std::string& gbnf, const std::string& root, const Model* model) {
    if (gbnf.empty()) throw ValidationError("[LlamaGrammar] the grammar is empty");
    check_grammar_nesting(gbnf, "LlamaGrammar");
    ensure_backend();
    try {
        AbortGuard guard;
        check_with_llama(gbnf, root, model);
    } catch (const LlamaAbort& e) {
        throw ValidationError(std::string("[LlamaGrammar] invalid grammar: ") + e.what());
    }
}

// Without a vocabulary llama.cpp's parser stops at the first token reference (<|name|>), so
// nothing after it would be checked until generation. For that check each named reference
// stands in as token id 0 (<[0]>, which parses without a vocabulary); whether the names exist
// is known only with the model's vocabulary, when a generation builds its sampler.
std::string with_token_placeholders(const std::string& gbnf) {
    std::string out;
    out.reserve(gbnf.size());
    for (size_t i = 0; i < gbnf.size(); ++i) {
        const char c = gbnf[i];
        if (c == '#') {
            const size_t end = gbnf.find_first_of("\r\n", i);
            const size_t stop = end == std::string::npos ? gbnf.size() : end;
            out.append(gbnf, i, stop - i);
            i = stop - 1;
        } else if (c == '"' || c == '[') {
            const char close = c == '"' ? '"' : ']';
            size_t j = i + 1;
            for (; j < gbnf.size() && gbnf[j] != close; ++j) {
                if (gbnf[j] == '\\') ++j;
            }
            const size_t stop = std::min(j + 1, gbnf.size());
            out.append(gbnf, i, stop - i);
            i = stop - 1;
        } else if (c == '<' && (i + 1 == gbnf.size() || gbnf[i + 1] != '[')) {
            const size_t end = gbnf.find('>', i + 1);
            if (end == std::string::npos) throw ValidationError("[LlamaGrammar] invalid grammar: token reference "
                                                                "without its closing '>'");
            out += "<[0]>";
            i = end;
        } else {
            out += c;
        }
    }
    return out;
}

void check_with_llama(const std::string& gbnf, const std::string& root, const Model* model) {
    const llama_vocab* vocab = model != nullptr ? model->vocab() : nullptr;
    const std::string checked = vocab != nullptr ? gbnf : with_token_placeholders(gbnf);
    std::string reason;
#ifdef LLAMA_NB_GRAMMAR_PARSER
    reason = parse_error(checked, vocab);
#endif
    if (reason.empty()) {
        // Parsed (or no parser header at build time): llama.cpp's own checks (root rule,
        // left recursion) report through its log, which is captured per thread.
        clear_error_messages();
        llama_sampler* sampler = llama_sampler_init_grammar(vocab, checked.c_str(), root.c_str());
        if (sampler != nullptr) {
            llama_sampler_free(sampler);
            return;
        }
        reason = last_error_messages();
    }
    if (model == nullptr && reason.find("no vocab to parse token") != std::string::npos) return;
    if (reason.empty()) reason = "llama.cpp rejected the grammar";
    // Parser messages quote the rest of the grammar ("... at <text>"): keep the message short.
    constexpr size_t kMaxReason = 300;
    if (reason.size() > kMaxReason) reason = reason.substr(0, kMaxReason) + "...";
    throw ValidationError("[LlamaGrammar] invalid grammar: " + reason);
}

std::string json_schema_to_gbnf(const std::string& schema_json) {
    // The converter recurses once per nested schema: bounded like a grammar's groups.
    int depth = 0;
    int deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < schema_json.size(); ++i) {
        const char c = schema_json[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    if (deepest > kMaxGrammarNesting) {
        throw ValidationError("[LlamaGrammar.from_json_schema] the schema nests " + std::to_string(deepest) +
                              " deep; the limit is " + std::to_string(kMaxGrammarNesting));
    }
    try {
        AbortGuard guard;
        return json_schema_to_grammar(common_json::parse(schema_json));
    } catch (const std::exception& e) {
        throw ValidationError(std::string("[LlamaGrammar.from_json_schema] ") + e.what());
    }
}

}  // namespace lcn
