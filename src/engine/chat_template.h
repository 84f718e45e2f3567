// ChatTemplate: renders a conversation into a prompt, with the model's own Jinja
// template (llama.cpp common's engine: it interprets the template, it cannot run code)
// or one of llama.cpp's built-in templates chosen by name. With the model's template it
// also gives what the reply needs: the format's tool-call grammar (lazy or forced), the
// special tokens the reply's parser reads, and that parser (ChatParser).
#pragma once

#include <llama.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lcn {

class Model;
class ChatParser;

// Bounds on parsing and rendering a Jinja template (llama.cpp's engine, patched: see
// scripts/llama_cpp_patches.py). Process-wide; a render past one throws, and the caller sees
// ValidationError naming the limit.
struct TemplateLimits {
    uint64_t max_depth = 0;    // nesting of blocks and expressions (parsing and executing)
    uint64_t max_steps = 0;    // statements and expressions executed in one render
    uint64_t max_bytes = 0;    // characters in one string
    uint64_t max_items = 0;    // items in one array
    double max_seconds = 0;    // wall time of one render
};
TemplateLimits template_limits();
void set_template_limits(const TemplateLimits& limits);

struct ChatMessage {
    std::string role;
    std::string content;
};

struct RenderedChat {
    std::string prompt;
    std::vector<std::string> stops;  // extra stop strings the template asks for
};

// One chat request as llama.cpp's common chat layer takes it. Messages and tools are
// OpenAI-shaped JSON text (common_chat_msgs_parse_oaicompat reads them).
struct ChatInputs {
    std::string messages_json = "[]";
    std::string tools_json;                 // "": no tools; else a JSON array of OpenAI tools
    std::string tool_choice = "auto";       // auto | none | required
    bool parallel_tool_calls = false;
    int32_t thinking = -1;                  // -1: the template's default; 0: off; 1: on
    bool add_generation_prompt = true;
    std::map<std::string, std::string> template_kwargs;  // extra template variables, values as JSON text
};

// Everything a generation needs from the template for one request.
struct ChatPrompt {
    std::string prompt;
    std::vector<std::string> stops;
    std::string grammar;  // GBNF of the tool-call format; "" when the request needs none
    bool grammar_lazy = false;
    std::vector<std::string> grammar_trigger_patterns;
    std::vector<llama_token> grammar_trigger_tokens;
    std::vector<llama_token> grammar_prefill;
    std::vector<llama_token> text_tokens;  // special tokens the parser reads: rendered as text
    std::string format;                     // common_chat_format_name
    std::string generation_prompt;
    std::shared_ptr<const ChatParser> parser;
};

// How a template treats thinking: "hybrid" (a switch turns it on and off), "always" (the
// model reasons before every answer; no switch), "none" (no reasoning markers).
enum class ThinkingMode { none, hybrid, always };
const char* thinking_mode_name(ThinkingMode mode);

class ChatTemplate {
public:
    // `builtin_name` empty: the model's template (llama.cpp's ChatML fallback if it has none).
    ChatTemplate(const Model& model, const std::string& builtin_name);
    ~ChatTemplate();
    ChatTemplate(const ChatTemplate&) = delete;
    ChatTemplate& operator=(const ChatTemplate&) = delete;

    RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    // The full request: tools, tool choice, thinking. Throws ValidationError for messages the
    // template or the common layer rejects, and for tools on a built-in template.
    ChatPrompt apply(const ChatInputs& inputs) const;
    const std::string& source() const { return source_; }
    bool is_builtin() const { return jinja_ == nullptr; }
    // Found by rendering one user turn with thinking on and off (computed once).
    ThinkingMode thinking_mode() const;
    // The template's capabilities as llama.cpp's Jinja analysis reports them
    // (supports_tools, supports_tool_calls, supports_system_role, ...).
    std::map<std::string, bool> capabilities() const;

    static std::vector<std::string> builtin_names();

private:
    struct Jinja;
    const Model& model_;
    std::unique_ptr<Jinja> jinja_;
    std::string builtin_;
    std::string source_;
};

}  // namespace lcn
