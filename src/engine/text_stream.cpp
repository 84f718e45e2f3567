#include "text_stream.h"

#include <algorithm>

namespace lcn {

size_t complete_utf8_prefix(std::string_view text) {
    // Look back at most 3 bytes for the lead byte of the last character.
    const size_t n = text.size();
    for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
        const auto byte = static_cast<unsigned char>(text[n - back]);
        if ((byte & 0xC0) == 0x80) continue;  // continuation byte
        size_t need = 1;
        if ((byte & 0xE0) == 0xC0) need = 2;
        else if ((byte & 0xF0) == 0xE0) need = 3;
        else if ((byte & 0xF8) == 0xF0) need = 4;
        return back >= need ? n : n - back;
    }
    return n;  // only continuation bytes: invalid, let the decoder replace them
}

TextStream::TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {
    stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
    for (const auto& s : stop_) longest_stop_ = std::max(longest_stop_, s.size());
}

size_t TextStream::safe_length() const {
    size_t safe = complete_utf8_prefix(pending_);
    // Hold back the longest suffix that is a proper prefix of some stop string.
    const size_t window = std::min(pending_.size(), longest_stop_ > 0 ? longest_stop_ - 1 : 0);
    for (size_t len = window; len > 0; --len) {
        const std::string_view tail(pending_.data() + pending_.size() - len, len);
        const bool is_prefix = std::any_of(stop_.begin(), stop_.end(), [&](const std::string& s) {
            return s.size() > len && std::string_view(s).substr(0, len) == tail;
        });
        if (is_prefix) {
            safe = std::min(safe, pending_.size() - len);
            break;
        }
    }
    return safe;
}

bool TextStream::push(std::string_view piece, std::string& out) {
    // pending_ holds only the held-back tail (shorter than the longest stop string
    // plus a partial character), so each search is bounded by the stop lengths.
    pending_.append(piece);
    if (longest_stop_ > 0) {
        size_t best = std::string::npos;
        for (const auto& s : stop_) best = std::min(best, pending_.find(s));
        if (best != std::string::npos) {
            out.append(pending_, 0, best);
            pending_.clear();
            return true;
        }
    }
    const size_t safe = safe_length();
    out.append(pending_, 0, safe);
    pending_.erase(0, safe);
    return false;
}

void TextStream::finish(std::string& out) {
    const size_t whole = complete_utf8_prefix(pending_);
    out.append(pending_, 0, whole);
    if (whole < pending_.size()) out.append("\xEF\xBF\xBD");
    pending_.clear();
}

}  // namespace lcn
