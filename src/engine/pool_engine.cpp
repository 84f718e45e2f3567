#include "pool_engine.h"

#if defined(__linux__)
#include <pthread.h>
#endif

namespace lcn {

PoolEngine::PoolEngine(Context& context, size_t sampling_threads, bool share_prefixes)
    : engine_(context, sampling_threads, share_prefixes),
      mailbox_index_(context.n_seq_max(), -1),
      thread_([this] {
#if defined(__linux__)
          pthread_setname_np(pthread_self(), "lcn-pool-step");
#endif
          serve();
      }) {}

PoolEngine::~PoolEngine() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    work_.notify_all();
    ready_.notify_all();
    thread_.join();
}

size_t PoolEngine::active() {
    std::lock_guard<std::mutex> lock(mutex_);
    return active_;
}

std::unique_lock<Baton> PoolEngine::take_context() {
    callers_.fetch_add(1);  // the step thread starts no new step while a caller waits
    return std::unique_lock<Baton>(context().mutex());
}

void PoolEngine::serve() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            work_.wait(lock, [this] { return stop_ || (active_ > 0 && !failed_ && callers_.load() == 0); });
            if (stop_) return;
        }
        std::unique_lock<Baton> context_lock(context().mutex());
        if (callers_.load() > 0) continue;  // a caller came first: it gets the context
        std::vector<SlotEvent> events;
        std::exception_ptr error;
        try {
            events = engine_.step();
        } catch (...) {
            error = std::current_exception();
        }
        {
            // Still holding the context: a caller that takes it next sees this step's events.
            std::lock_guard<std::mutex> lock(mutex_);
            merge(std::move(events));
            if (error) {
                failure_ = error;
                failed_ = true;
            }
            active_ = engine_.active();
        }
        context_lock.unlock();
        ready_.notify_all();
    }
}

void PoolEngine::merge(std::vector<SlotEvent>&& events) {
    for (auto& event : events) {
        int& index = mailbox_index_[static_cast<size_t>(event.slot)];
        if (index < 0) {
            index = static_cast<int>(mailbox_.size());
            mailbox_.push_back(std::move(event));
            continue;
        }
        SlotEvent& pending = mailbox_[static_cast<size_t>(index)];
        pending.text += event.text;
        pending.logprobs.append(std::move(event.logprobs));
        if (event.finished) {
            pending.finished = true;
            pending.result = std::move(event.result);
            pending.error = event.error;
        }
    }
}

std::pair<std::vector<SlotEvent>, std::vector<SlotEvent>> PoolEngine::add_many(std::vector<GenerationRequest> requests) {
    std::pair<std::vector<SlotEvent>, std::vector<SlotEvent>> out;
    {
        std::unique_lock<Baton> context_lock = take_context();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            out.first.swap(mailbox_);
            for (const SlotEvent& event : out.first) mailbox_index_[static_cast<size_t>(event.slot)] = -1;
            if (active_ == 0) {  // a failure nobody is left to hear about: start afresh
                failure_ = nullptr;
                failed_ = false;
            }
        }
        std::exception_ptr error;
        try {
            out.second = engine_.add_many(std::move(requests));
        } catch (...) {
            error = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            active_ = engine_.active();
            callers_.fetch_sub(1);
        }
        context_lock.unlock();
        work_.notify_one();
        if (error) std::rethrow_exception(error);
    }
    return out;
}

std::vector<SlotEvent> PoolEngine::wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return !mailbox_.empty() || failure_ || interrupted_ || active_ == 0 || stop_; });
    interrupted_ = false;
    std::vector<SlotEvent> events;
    if (!mailbox_.empty()) {
        events.swap(mailbox_);
        for (const SlotEvent& event : events) mailbox_index_[static_cast<size_t>(event.slot)] = -1;
        return events;
    }
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    return events;
}

void PoolEngine::interrupt() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        interrupted_ = true;
    }
    ready_.notify_all();
}

bool PoolEngine::cancel(int32_t slot) {
    bool cancelled = false;
    {
        std::unique_lock<Baton> context_lock = take_context();
        std::exception_ptr error;
        try {
            if (engine_.is_active(slot)) {
                engine_.cancel(slot);
                cancelled = true;
            }
        } catch (...) {
            error = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            active_ = engine_.active();
            if (active_ == 0 && !failure_) failed_ = false;  // every slot of a failed step is gone
            callers_.fetch_sub(1);
        }
        context_lock.unlock();
        work_.notify_one();
        if (error) std::rethrow_exception(error);
    }
    return cancelled;
}

}  // namespace lcn
