#include "stream.h"

namespace lcn {

std::shared_ptr<Stream> Stream::start(Context& context, GenerationRequest request) {
    std::shared_ptr<Stream> stream(new Stream());
    Stream* s = stream.get();
    TextCallback on_text = [s](const std::string& piece, TokenLogprobs&& logprobs) {
        return s->pieces_.push(piece, std::move(logprobs));
    };
    context.mutex().lock();
    try {
        s->loop_ = std::make_unique<DecodeLoop>(context, std::move(request), std::move(on_text));
        s->loop_->start();
    } catch (...) {
        s->loop_.reset();
        context.mutex().unlock();
        throw;
    }
    if (s->loop_->finished()) {
        s->run_rest(context);  // the first token ended it: nothing to hand over
    } else {
        context.post_to_stream_thread([stream, &context] { stream->run_rest(context); });
    }
    return stream;
}

void Stream::run_rest(Context& context) noexcept {
    GenerationResult result;
    std::exception_ptr error;
    try {
        result = loop_->finish();
    } catch (...) {
        error = std::current_exception();
    }
    loop_.reset();
    context.mutex().unlock();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        result_ = std::move(result);
        error_ = error;
        done_ = true;
    }
    ended_.notify_all();
    pieces_.close();  // last: a consumer that sees the end finds the context free
}

void Stream::wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    ended_.wait(lock, [this] { return done_; });
}

bool Stream::done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
}

GenerationResult Stream::result() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    return result_;
}

}  // namespace lcn
