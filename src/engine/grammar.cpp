#include "grammar.h"

#include <llama.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "backend.h"
#include "errors.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "model.h"

namespace lcn {
namespace {

// llama.cpp's grammar parser reports the reason for a failure on stderr (fprintf), not
// through its log. To hand that reason to the caller, stderr is redirected to a
// temporary file for the duration of the parse. One capture at a time.
std::mutex stderr_mutex;

class StderrCapture {
public:
    StderrCapture() : lock_(stderr_mutex) {
        std::fflush(stderr);
        file_ = std::tmpfile();
        saved_ = file_ != nullptr ? dup(STDERR_FILENO) : -1;
        if (saved_ >= 0) dup2(fileno(file_), STDERR_FILENO);
    }
    ~StderrCapture() {
        restore();
        if (file_ != nullptr) std::fclose(file_);
    }
    StderrCapture(const StderrCapture&) = delete;
    StderrCapture& operator=(const StderrCapture&) = delete;

    std::string finish() {
        restore();
        std::string text;
        if (file_ == nullptr) return text;
        std::rewind(file_);
        char buf[1024];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0 && text.size() < 65536) text.append(buf, n);
        std::fclose(file_);
        file_ = nullptr;
        return text;
    }

private:
    void restore() {
        if (saved_ >= 0) {
            std::fflush(stderr);
            dup2(saved_, STDERR_FILENO);
            close(saved_);
            saved_ = -1;
        }
    }

    std::lock_guard<std::mutex> lock_;
    std::FILE* file_ = nullptr;
    int saved_ = -1;
};

// The parser prints "...: error parsing grammar: <reason>\n\n<grammar>": keep the reason.
std::string parser_reason(const std::string& captured) {
    const std::string marker = "error parsing grammar: ";
    const size_t at = captured.find(marker);
    if (at == std::string::npos) return {};
    const size_t start = at + marker.size();
    return captured.substr(start, captured.find('\n', start) - start);
}

}  // namespace

void validate_grammar(const std::string& gbnf, const std::string& root, const Model* model) {
    if (gbnf.empty()) throw ValidationError("[LlamaGrammar] the grammar is empty");
    ensure_backend();
    clear_error_messages();
    StderrCapture capture;
    llama_sampler* sampler =
        llama_sampler_init_grammar(model != nullptr ? model->vocab() : nullptr, gbnf.c_str(), root.c_str());
    const std::string parser_output = capture.finish();
    if (sampler != nullptr) {
        llama_sampler_free(sampler);
        return;
    }
    std::string reason = parser_reason(parser_output);
    const std::string logged = last_error_messages();
    if (!logged.empty()) reason += (reason.empty() ? "" : "; ") + logged;
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
