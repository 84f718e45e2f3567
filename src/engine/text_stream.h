// TextStream: turns token pieces into text that is safe to hand out: whole UTF-8
// characters only, and nothing that might turn out to be the start of a stop string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lcn {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stop);

    // Appends a piece; moves the text that can no longer change into `out`.
    // Returns true when a stop string completed: the stop string and anything
    // after it are dropped, and the stream is finished.
    bool push(std::string_view piece, std::string& out);

    // End of generation: releases what was held back (an incomplete UTF-8 tail is
    // replaced by U+FFFD so the result is always valid UTF-8).
    void finish(std::string& out);

private:
    size_t safe_length() const;

    std::vector<std::string> stop_;
    size_t longest_stop_ = 0;
    std::string pending_;
};

// Length of the longest prefix of `text` that does not end inside a UTF-8 character.
size_t complete_utf8_prefix(std::string_view text);

}  // namespace lcn
