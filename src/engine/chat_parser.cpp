#include "chat_parser.h"

#include <random>

#include "abort_guard.h"
#include "chat.h"  // llama.cpp common
#include "errors.h"

namespace lcn {
namespace {

std::string new_call_id() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string id = "call_";
    std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
    for (int i = 0; i < 24; ++i) id += alphabet[pick(rng)];
    return id;
}

common_json message_json(const common_chat_msg& msg) {
    common_json out = {{"role", "assistant"}, {"content", msg.content}};
    if (!msg.reasoning_content.empty()) out["reasoning_content"] = msg.reasoning_content;
    if (!msg.tool_calls.empty()) {
        common_json calls = common_json::array();
        for (const auto& call : msg.tool_calls) {
            calls.push_back({{"id", call.id},
                             {"type", "function"},
                             {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
        }
        out["tool_calls"] = std::move(calls);
    }
    return out;
}

void append_deltas(common_json& out, const std::vector<common_chat_msg_diff>& diffs) {
    for (const auto& d : diffs) {
        if (!d.reasoning_content_delta.empty()) out.push_back({{"reasoning_content", d.reasoning_content_delta}});
        if (!d.content_delta.empty()) out.push_back({{"content", d.content_delta}});
        if (d.tool_call_index != std::string::npos) {
            common_json call = {{"index", d.tool_call_index}, {"arguments", d.tool_call_delta.arguments}};
            if (!d.tool_call_delta.id.empty()) call["id"] = d.tool_call_delta.id;
            if (!d.tool_call_delta.name.empty()) call["name"] = d.tool_call_delta.name;
            out.push_back({{"tool_call", std::move(call)}});
        }
    }
}

}  // namespace

struct ChatParser::Impl {
    common_chat_parser_params params;

    common_chat_msg run(const std::string& text, bool partial) const {
        try {
            AbortGuard guard;
            return common_chat_parse(text, partial, params);
        } catch (const std::exception& e) {
            throw GenerationError(std::string("the reply does not parse as the chat format's output: ") + e.what());
        }
    }
};

ChatParser::ChatParser(int format, const std::string& parser, const std::string& generation_prompt,
                       bool extract_reasoning, bool parse_tool_calls)
    : impl_(std::make_unique<Impl>()) {
    if (format < 0 || format >= COMMON_CHAT_FORMAT_COUNT) throw ValidationError("unknown chat format id");
    auto& p = impl_->params;
    p.format = static_cast<common_chat_format>(format);
    p.generation_prompt = generation_prompt;
    p.reasoning_format = extract_reasoning ? COMMON_REASONING_FORMAT_DEEPSEEK : COMMON_REASONING_FORMAT_NONE;
    p.parse_tool_calls = parse_tool_calls;
    if (!parser.empty()) {
        try {
            AbortGuard guard;
            p.parser.load(parser);
        } catch (const std::exception& e) {
            throw ValidationError(std::string("the chat format's parser cannot be loaded: ") + e.what());
        }
    }
}

ChatParser::~ChatParser() = default;

std::string ChatParser::parse(const std::string& text, bool partial) const {
    common_chat_msg msg = impl_->run(text, partial);
    for (auto& call : msg.tool_calls) {
        if (call.id.empty()) call.id = new_call_id();
    }
    return message_json(msg).dump();
}

struct ChatStreamParser::State {
    std::shared_ptr<const ChatParser> parser;
    std::string text;
    common_chat_msg previous;
    std::vector<std::string> ids;

    common_chat_msg parse(bool partial) {
        common_chat_msg msg;
        try {
            msg = parser->impl_->run(text, partial);
        } catch (const GenerationError&) {
            if (partial) return previous;  // wait for more text
            msg = common_chat_msg();
            msg.role = "assistant";
            msg.content = text;  // keep what the model wrote
        }
        msg.set_tool_call_ids(ids, new_call_id);
        return msg;
    }
};

ChatStreamParser::ChatStreamParser(std::shared_ptr<const ChatParser> parser) : state_(std::make_unique<State>()) {
    state_->parser = std::move(parser);
    state_->previous.role = "assistant";
}

ChatStreamParser::~ChatStreamParser() = default;

std::string ChatStreamParser::feed(const std::string& piece) {
    auto& s = *state_;
    s.text += piece;
    common_chat_msg msg = s.parse(true);
    common_json out = common_json::array();
    try {
        append_deltas(out, common_chat_msg_diff::compute_diffs(s.previous, msg));
    } catch (const std::exception&) {
        return "[]";  // a partial parse that takes back text already sent: wait for more
    }
    s.previous = std::move(msg);
    return out.dump();
}

std::string ChatStreamParser::finish() {
    auto& s = *state_;
    common_chat_msg msg = s.parse(false);
    common_json deltas = common_json::array();
    // A final parse may disagree with what was streamed (text held as a possible marker turns
    // out to be content): only additions can be sent; the message is the final parse.
    try {
        append_deltas(deltas, common_chat_msg_diff::compute_diffs(s.previous, msg));
    } catch (const std::exception&) {
    }
    s.previous = msg;
    return common_json{{"deltas", std::move(deltas)}, {"message", message_json(msg)}}.dump();
}

}  // namespace lcn
