#include "chat_template.h"

#include <llama.h>

#include "chat.h"  // llama.cpp common
#include "errors.h"
#include "model.h"

namespace lcn {
namespace {

// The text that closes an assistant turn in each of llama.cpp's built-in templates, as
// llm_chat_apply_template (the pinned tree's src/llama-chat.cpp) renders it: generation stops
// there. Stop strings are matched on the generated text, so a marker that is a plain or
// user-defined token of the vocabulary stops as text; a marker the vocabulary marks as
// end-of-generation stops as that token. nullptr: the renderer closes the assistant turn with
// nothing but whitespace or the next turn's header, so the turn ends at the model's EOS token.
// rwkv-world and yandex end turns with a blank line ("\n\n" is those models' EOT token).
struct TurnEnd {
    const char* name;
    const char* marker;
};
constexpr TurnEnd kTurnEnds[] = {
    {"chatml", "<|im_end|>"},
    {"llama2", "</s>"},
    {"llama2-sys", "</s>"},
    {"llama2-sys-bos", "</s>"},
    {"llama2-sys-strip", "</s>"},
    {"mistral-v1", "</s>"},
    {"mistral-v3", "</s>"},
    {"mistral-v3-tekken", "</s>"},
    {"mistral-v7", "</s>"},
    {"mistral-v7-tekken", "</s>"},
    {"phi3", "<|end|>"},
    {"phi4", "<|im_end|>"},
    {"falcon3", nullptr},
    {"zephyr", "<|endoftext|>"},
    {"monarch", "</s>"},
    {"gemma", "<end_of_turn>"},
    {"orion", "</s>"},
    {"openchat", "<|end_of_turn|>"},
    {"vicuna", "</s>"},
    {"vicuna-orca", "</s>"},
    {"deepseek", "<|EOT|>"},
    {"deepseek2", "<｜end▁of▁sentence｜>"},
    {"deepseek3", "<｜end▁of▁sentence｜>"},
    {"deepseek-ocr", nullptr},
    {"command-r", "<|END_OF_TURN_TOKEN|>"},
    {"llama3", "<|eot_id|>"},
    {"chatglm3", nullptr},
    {"chatglm4", nullptr},
    {"glmedge", nullptr},
    {"minicpm", nullptr},
    {"exaone3", "[|endofturn|]"},
    {"exaone4", "[|endofturn|]"},
    {"exaone-moe", "<|endofturn|>"},
    {"rwkv-world", "\n\n"},
    {"granite", "<|end_of_text|>"},
    {"granite-4.0", "<|end_of_text|>"},
    {"granite-4.1", "<|end_of_text|>"},
    {"gigachat", "<|message_sep|>"},
    {"megrez", "<|turn_end|>"},
    {"yandex", "\n\n"},
    {"bailing", nullptr},
    {"bailing-think", nullptr},
    {"bailing2", "<|role_end|>"},
    {"llama4", "<|eot|>"},
    {"smolvlm", "<end_of_utterance>"},
    {"hunyuan-moe", "<|eos|>"},
    {"gpt-oss", "<|return|>"},
    {"hunyuan-dense", "<｜hy_place▁holder▁no▁2｜>"},
    {"hunyuan-vl", "<｜hy_Assistant｜>"},
    {"kimi-k2", "<|im_end|>"},
    {"seed_oss", "<seed:eos>"},
    {"grok-2", "<|separator|>"},
    {"pangu-embedded", "[unused10]"},
    {"solar-open", "<|end|>"},
};

// Throws for a built-in missing from the table (a llama.cpp update added one): better
// than a format that never stops.
std::vector<std::string> builtin_stops(const std::string& name) {
    for (const auto& entry : kTurnEnds) {
        if (name == entry.name) {
            return entry.marker != nullptr ? std::vector<std::string>{entry.marker} : std::vector<std::string>{};
        }
    }
    throw ValidationError("[LlamaConfig] chat_format '" + name + "': no end-of-turn marker known for this built-in");
}

}  // namespace

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
        out.stops = builtin_stops(builtin_);
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
