// ChatParser: a reply's text into an OpenAI assistant message (content, reasoning_content,
// tool_calls), with the parser llama.cpp's common chat layer built for the request's format.
// ChatStreamParser: the same over a reply arriving piece by piece, as OpenAI deltas.
// Messages and deltas cross to Python as JSON text.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace lcn {

class ChatParser {
public:
    // `parser` is common_chat_params::parser (serialized; "" parses everything as content).
    ChatParser(int format, const std::string& parser, const std::string& generation_prompt, bool extract_reasoning,
               bool parse_tool_calls);
    ~ChatParser();
    ChatParser(const ChatParser&) = delete;
    ChatParser& operator=(const ChatParser&) = delete;

    // The message as JSON text: {"role": "assistant", "content": ..., "reasoning_content"?: ...,
    // "tool_calls"?: [...]}. A final reply that does not match the format raises
    // GenerationError naming the format; `partial` parses what there is so far.
    std::string parse(const std::string& text, bool partial) const;

private:
    friend class ChatStreamParser;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

class ChatStreamParser {
public:
    explicit ChatStreamParser(std::shared_ptr<const ChatParser> parser);
    ~ChatStreamParser();
    ChatStreamParser(const ChatStreamParser&) = delete;
    ChatStreamParser& operator=(const ChatStreamParser&) = delete;

    // Appends a piece; returns the new deltas as a JSON array of objects with
    // "reasoning_content", "content" or "tool_call" ({index, id?, name?, arguments}).
    std::string feed(const std::string& piece);
    // The reply is complete: the remaining deltas and the final message, as JSON text
    // {"deltas": [...], "message": {...}}. A reply that does not parse keeps its text as
    // content (what was streamed stays valid).
    std::string finish();

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace lcn
