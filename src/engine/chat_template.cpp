#include "chat_template.h"

#include <llama.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "abort_guard.h"
#include "chat.h"  // llama.cpp common
#include "chat_parser.h"
#include "common.h"
#include "errors.h"
#include "jinja/value.h"  // llama.cpp common (render_limits: our patch)
#include "model.h"

namespace lcn {
namespace {

// Real chat templates are a few KiB to a few tens of KiB; the Jinja engine's memory and time
// grow with the source, so a template from a stranger is bounded before it is parsed.
constexpr size_t kMaxTemplateBytes = 1u << 20;

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

// The single token `text` is, or -1 (tokenized with special-token parsing, no start token).
llama_token single_token(const Model& model, const std::string& text) {
    const auto ids = model.tokenize(text, false, true);
    return ids.size() == 1 ? ids[0] : -1;
}

}  // namespace

TemplateLimits template_limits() {
    const jinja::render_limits l = jinja::get_render_limits();
    return {l.max_depth, l.max_steps, l.max_bytes, l.max_items, l.max_seconds};
}

void set_template_limits(const TemplateLimits& limits) {
    if (limits.max_depth < 16 || limits.max_steps < 1000 || limits.max_bytes < 4096 || limits.max_items < 256 ||
        !(limits.max_seconds > 0)) {
        throw ValidationError("[set_template_limits] limits below max_depth=16, max_steps=1000, max_bytes=4096, "
                              "max_items=256 or max_seconds > 0 would break ordinary templates");
    }
    jinja::render_limits l;
    l.max_depth = static_cast<size_t>(limits.max_depth);
    l.max_steps = limits.max_steps;
    l.max_bytes = static_cast<size_t>(limits.max_bytes);
    l.max_items = static_cast<size_t>(limits.max_items);
    l.max_seconds = limits.max_seconds;
    jinja::set_render_limits(l);
}

const char* thinking_mode_name(ThinkingMode mode) {
    switch (mode) {
        case ThinkingMode::hybrid: return "hybrid";
        case ThinkingMode::always: return "always";
        default: return "none";
    }
}

struct ChatTemplate::Jinja {
    common_chat_templates_ptr templates;
    mutable std::once_flag thinking_once;
    mutable ThinkingMode thinking = ThinkingMode::none;
};

ChatTemplate::ChatTemplate(const Model& model, const std::string& builtin_name)
    : model_(model), builtin_(builtin_name) {
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
    const char* source = llama_model_chat_template(model.get(), nullptr);
    if (source != nullptr && std::strlen(source) > kMaxTemplateBytes) {
        throw ValidationError("the model's chat template is " + std::to_string(std::strlen(source)) +
                              " bytes long; the limit is " + std::to_string(kMaxTemplateBytes));
    }
    try {
        AbortGuard guard;
        jinja::render_scope budget;  // one budget for all of the renders this call makes
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
        AbortGuard guard;
        jinja::render_scope budget;  // one budget for all of the renders this call makes
        common_chat_params params = common_chat_templates_apply(jinja_->templates.get(), inputs);
        out.prompt = std::move(params.prompt);
        out.stops = std::move(params.additional_stops);
    } catch (const std::exception& e) {
        throw ValidationError(std::string("the chat template failed to render: ") +
                              e.what());
    }
    return out;
}

ChatPrompt ChatTemplate::apply(const ChatInputs& in) const {
    ChatPrompt out;
    if (jinja_ == nullptr) {
        if (!in.tools_json.empty() && in.tool_choice != "none") {
            throw ValidationError("chat_format '" + builtin_ + "' is a llama.cpp built-in template, which cannot "
                                  "describe tools; use the model's own template (chat_format=None) for tool calls");
        }
        std::vector<ChatMessage> messages;
        try {
            for (const auto& m : common_chat_msgs_parse_oaicompat(common_json::parse(in.messages_json))) {
                messages.push_back({m.role, m.render_content("\n")});
            }
        } catch (const std::exception& e) {
            throw ValidationError(e.what());
        }
        RenderedChat r = render(messages, in.add_generation_prompt);
        out.prompt = std::move(r.prompt);
        out.stops = std::move(r.stops);
        out.format = common_chat_format_name(COMMON_CHAT_FORMAT_CONTENT_ONLY);
        out.parser = std::make_shared<ChatParser>(COMMON_CHAT_FORMAT_CONTENT_ONLY, "", "", false, false);
        return out;
    }
    common_chat_templates_inputs inputs;
    common_chat_params params;
    try {
        inputs.messages = common_chat_msgs_parse_oaicompat(common_json::parse(in.messages_json));
        if (!in.tools_json.empty()) inputs.tools = common_chat_tools_parse_oaicompat(common_json::parse(in.tools_json));
        inputs.tool_choice = common_chat_tool_choice_parse_oaicompat(in.tool_choice);
        inputs.parallel_tool_calls = in.parallel_tool_calls;
        inputs.add_generation_prompt = in.add_generation_prompt;
        inputs.use_jinja = true;
        inputs.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
        inputs.chat_template_kwargs = in.template_kwargs;
        if (in.thinking >= 0) {
            // The switch's names: enable_thinking (Qwen3, SmolLM3, Gemma 4, ...), thinking (Granite).
            inputs.enable_thinking = in.thinking != 0;
            inputs.chat_template_kwargs["enable_thinking"] = in.thinking != 0 ? "true" : "false";
            inputs.chat_template_kwargs.emplace("thinking", in.thinking != 0 ? "true" : "false");
        }
        AbortGuard guard;
        jinja::render_scope budget;  // one budget for all of the renders this call makes
        params = common_chat_templates_apply(jinja_->templates.get(), inputs);
    } catch (const std::exception& e) {
        throw ValidationError(std::string("the chat template failed to render: ") + e.what());
    }
    out.prompt = std::move(params.prompt);
    for (auto& stop : params.additional_stops) {
        if (!stop.empty()) out.stops.push_back(std::move(stop));
    }
    out.format = common_chat_format_name(params.format);
    out.generation_prompt = params.generation_prompt;
    for (const auto& text : params.preserved_tokens) {
        const llama_token t = single_token(model_, text);
        if (t >= 0) out.text_tokens.push_back(t);
    }
    if (!params.grammar.empty()) {
        out.grammar = std::move(params.grammar);
        out.grammar_lazy = params.grammar_lazy;
        for (const auto& trigger : params.grammar_triggers) {
            switch (trigger.type) {
                case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
                    out.grammar_trigger_tokens.push_back(trigger.token);
                    break;
                case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: {
                    // A word that is one preserved token triggers as that token (as llama-server does).
                    const llama_token t = single_token(model_, trigger.value);
                    if (t >= 0 && std::find(out.text_tokens.begin(), out.text_tokens.end(), t) != out.text_tokens.end()) {
                        out.grammar_trigger_tokens.push_back(t);
                    } else {
                        out.grammar_trigger_patterns.push_back(regex_escape(trigger.value));
                    }
                    break;
                }
                case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
                    out.grammar_trigger_patterns.push_back(trigger.value);
                    break;
                case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
                    const std::string& p = trigger.value;
                    out.grammar_trigger_patterns.push_back(
                        p.empty() ? "^$" : (p.front() != '^' ? "^" : "") + p + (p.back() != '$' ? "$" : ""));
                    break;
                }
            }
        }
        if (out.grammar_lazy && out.grammar_trigger_patterns.empty() && out.grammar_trigger_tokens.empty()) {
            throw ValidationError("the chat format's lazy tool-call grammar has no trigger");
        }
        if (!out.grammar_lazy && !params.generation_prompt.empty()) {
            // The grammar starts at the generation prompt: feed it those tokens first. A leading
            // space some tokenizers add before a special token is not part of it.
            const auto ids = model_.tokenize(params.generation_prompt, false, true);
            for (size_t i = 0; i < ids.size(); ++i) {
                const std::string piece = model_.token_to_piece(ids[i], true);
                if (i == 0 && !piece.empty() && std::isspace(static_cast<unsigned char>(piece[0])) &&
                    !std::isspace(static_cast<unsigned char>(params.generation_prompt[0]))) {
                    continue;
                }
                out.grammar_prefill.push_back(ids[i]);
            }
        }
    }
    out.parser = std::make_shared<ChatParser>(static_cast<int>(params.format), params.parser, params.generation_prompt,
                                              true, !inputs.tools.empty() && inputs.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE);
    return out;
}

ThinkingMode ChatTemplate::thinking_mode() const {
    if (jinja_ == nullptr) return ThinkingMode::none;
    std::call_once(jinja_->thinking_once, [this] {
        try {
            AbortGuard guard;
            jinja::render_scope budget;  // one budget for all of the renders this call makes
            common_chat_templates_inputs inputs;
            inputs.messages = common_chat_msgs_parse_oaicompat(common_json::parse(R"([{"role": "user", "content": "Hi"}])"));
            inputs.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
            inputs.enable_thinking = true;
            inputs.chat_template_kwargs["enable_thinking"] = "true";
            inputs.chat_template_kwargs["thinking"] = "true";
            const common_chat_params on = common_chat_templates_apply(jinja_->templates.get(), inputs);
            inputs.enable_thinking = false;
            inputs.chat_template_kwargs["enable_thinking"] = "false";
            inputs.chat_template_kwargs["thinking"] = "false";
            const common_chat_params off = common_chat_templates_apply(jinja_->templates.get(), inputs);
            if (on.prompt != off.prompt) {
                jinja_->thinking = ThinkingMode::hybrid;
            } else if (on.supports_thinking) {
                jinja_->thinking = ThinkingMode::always;
            }
        } catch (const std::exception&) {
            jinja_->thinking = ThinkingMode::none;  // a template that cannot render one turn: no switch
        }
    });
    return jinja_->thinking;
}

std::map<std::string, bool> ChatTemplate::capabilities() const {
    if (jinja_ == nullptr) return {};
    return common_chat_templates_get_caps(jinja_->templates.get());
}

}  // namespace lcn
