// PoolEngine: a BatchEngine stepped by its own thread, so the GPU never waits for Python.
// The step thread decodes and samples step after step while requests are active; what the
// steps release (text, finished results, errors) is merged per slot into a mailbox that the
// pool's scheduler empties with wait(). Text of a slot whose events were not collected yet
// is appended to its pending event, so a busy consumer gets fewer, longer pieces and the
// decoding never stalls. Admission and cancellation take the context between two steps.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "batch_engine.h"

namespace lcn {

class PoolEngine {
public:
    PoolEngine(Context& context, size_t sampling_threads, bool share_prefixes);
    ~PoolEngine();  // stops the step thread (after its step in progress)
    PoolEngine(const PoolEngine&) = delete;
    PoolEngine& operator=(const PoolEngine&) = delete;

    Context& context() { return engine_.context(); }
    size_t capacity() const { return engine_.capacity(); }
    size_t sampling_threads() const { return engine_.sampling_threads(); }
    bool share_prefixes() const { return engine_.share_prefixes(); }
    size_t active();

    // Starts requests between two steps. first: the events of earlier steps not collected yet
    // (deliver them before the outcomes: a slot they finish may be the one a new request
    // gets); second: one outcome per request, as BatchEngine::add_many.
    std::pair<std::vector<SlotEvent>, std::vector<SlotEvent>> add_many(std::vector<GenerationRequest> requests);

    // Blocks until events are there (merged per slot, in slot order of arrival), or interrupt()
    // was called, or the pool has nothing active. A failed decode is rethrown here once the
    // events before it are out; the step thread then waits until every slot was cancelled or
    // a request is added.
    std::vector<SlotEvent> wait();
    void interrupt();

    // Ends a request now. False when it had already finished: its event is then in the mailbox
    // (or was collected), and the consumer drops it.
    bool cancel(int32_t slot);

private:
    void serve();
    void merge(std::vector<SlotEvent>&& events);  // holds mutex_
    // Takes the context between two steps: the step thread yields to the caller.
    std::unique_lock<Baton> take_context();

    BatchEngine engine_;
    std::mutex mutex_;
    std::condition_variable work_, ready_;
    std::vector<SlotEvent> mailbox_;
    std::vector<int> mailbox_index_;  // slot -> position in mailbox_, -1 if none
    std::exception_ptr failure_;      // a failed step, not yet reported by wait()
    bool failed_ = false;             // stepping paused after a failure
    bool interrupted_ = false;
    bool stop_ = false;
    size_t active_ = 0;               // engine_.active(), as of the last change (under mutex_)
    std::atomic<int> callers_{0};     // threads waiting for the context
    std::thread thread_;              // last: starts once the members it uses exist
};

}  // namespace lcn
