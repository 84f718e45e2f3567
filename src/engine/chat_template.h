// ChatTemplate: renders a conversation into a prompt, with the model's own Jinja
// template (llama.cpp common's engine: it interprets the template, it cannot run code)
// or one of llama.cpp's built-in templates chosen by name.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lcn {

class Model;

struct ChatMessage {
    std::string role;
    std::string content;
};

struct RenderedChat {
    std::string prompt;
    std::vector<std::string> stops;  // extra stop strings the template asks for
};

class ChatTemplate {
public:
    // `builtin_name` empty: the model's template (llama.cpp's ChatML fallback if it has none).
    ChatTemplate(const Model& model, const std::string& builtin_name);
    ~ChatTemplate();
    ChatTemplate(const ChatTemplate&) = delete;
    ChatTemplate& operator=(const ChatTemplate&) = delete;

    RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    const std::string& source() const { return source_; }

    static std::vector<std::string> builtin_names();

private:
    struct Jinja;
    std::unique_ptr<Jinja> jinja_;
    std::string builtin_;
    std::string source_;
};

}  // namespace lcn
