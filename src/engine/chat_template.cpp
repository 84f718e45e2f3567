#include "chat_template.h"

#include <llama.h>

#include "chat.h"  // llama.cpp common
#include "errors.h"
#include "model.h"

namespace lcn {

struct ChatTemplate::Jinja {
    common_chat_templates_ptr templates;
};

ChatTemplate::ChatTemplate(const Model& model, const std::string& builtin_name) : builtin_(builtin_name) {
    if (!builtin_.empty()) {
        const auto names = builtin_names();
        if (std::find(names.begin(), names.end(), builtin_) == names.end()) {
            std::string list;
            for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
            throw ValidationError("[LlamaConfig] chat_format '" + builtin_ + "' is not a llama.cpp built-in template; "
                                  "known: " + list);
        }
        source_ = builtin_;
        return;
    }
    jinja_ = std::make_unique<Jinja>();
    try {
        jinja_->templates = common_chat_templates_init(model.get(), "");
    } catch (const std::exception& e) {
        throw ValidationError(std::string("the model's chat template cannot be parsed: ") + e.what());
    }
    source_ = common_chat_templates_source(jinja_->templates.get());
}

ChatTemplate::~ChatTemplate() = default;

std::vector<std::string> ChatTemplate::builtin_names() {
    std::vector<const char*> raw(static_cast<size_t>(llama_chat_builtin_templates(nullptr, 0)));
    llama_chat_builtin_templates(raw.data(), raw.size());
    return std::vector<std::string>(raw.begin(), raw.end());
}

RenderedChat ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    RenderedChat out;
    if (jinja_ == nullptr) {
        std::vector<llama_chat_message> chat;
        chat.reserve(messages.size());
        for (const auto& m : messages) chat.push_back({m.role.c_str(), m.content.c_str()});
        size_t total = 0;
        for (const auto& m : messages) total += m.content.size() + m.role.size();
        std::string buf(total * 2 + 256, '\0');
        int32_t n = llama_chat_apply_template(builtin_.c_str(), chat.data(), chat.size(), add_generation_prompt,
                                              buf.data(), static_cast<int32_t>(buf.size()));
        if (n > static_cast<int32_t>(buf.size())) {
            buf.resize(static_cast<size_t>(n));
            n = llama_chat_apply_template(builtin_.c_str(), chat.data(), chat.size(), add_generation_prompt,
                                          buf.data(), static_cast<int32_t>(buf.size()));
        }
        if (n < 0) throw ValidationError("template '" + builtin_ + "' failed to render");
        buf.resize(static_cast<size_t>(n));
        out.prompt = std::move(buf);
        return out;
    }
    common_chat_templates_inputs inputs;
    inputs.add_generation_prompt = add_generation_prompt;
    inputs.use_jinja = true;
    for (const auto& m : messages) {
        common_chat_msg msg;
        msg.role = m.role;
        msg.content = m.content;
        inputs.messages.push_back(std::move(msg));
    }
    try {
        common_chat_params params = common_chat_templates_apply(jinja_->templates.get(), inputs);
        out.prompt = std::move(params.prompt);
        out.stops = std::move(params.additional_stops);
    } catch (const std::exception& e) {
        throw ValidationError(std::string("the chat template failed to render: ") +
                              e.what());
    }
    return out;
}

}  // namespace lcn
