// SPDX-License-Identifier: Apache-2.0
// The event loop's internals: the ring, the provided-buffer ring, the ready queue, timers and
// the per-iteration work lists that transports register in (flush, re-arm).
#pragma once

#include <aioring/loop.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <typeinfo>
#include <vector>

#include "uring/buffer_ring.hpp"
#include "uring/ring.hpp"

namespace aioring::detail {

struct HandleState {
    Callback cb;
    double when = 0;
    std::uint64_t seq = 0;
    bool cancelled = false;
    LoopCore* timer_heap = nullptr;  // set while a timer sits in that loop's heap
};

// Something with writes to turn into SQEs before the loop enters the kernel.
class Flushable {
public:
    virtual void flush() = 0;
    bool flush_scheduled = false;

protected:
    ~Flushable() = default;
};

// A receiver whose multishot ended with ENOBUFS, to re-arm once buffers are back.
class Rearmable {
public:
    virtual void rearm() = 0;
    bool rearm_scheduled = false;

protected:
    ~Rearmable() = default;
};

class Executor;
class Resolver;
class SignalWatcher;
class Wakeup;
class LoopCore;

// Something the loop owns while it is open (a transport, a server). Ownership: the loop's
// registry holds one reference to it (adopt(), when it starts), beside the user's handles;
// release() gives that reference up, and the loop drops it at the end of the current iteration
// (LoopCore::release_later), so an object never frees itself under a call on its own stack.
// When the loop closes with it still open, loop_closed() runs once every io_uring operation
// has completed or been cancelled: it must close its fds and never touch the loop again (a
// user's handle to it stays safe: calls are ignored); the loop's reference goes right after.
class LoopResource {
public:
    virtual void loop_closed() = 0;
    // Debug mode: what to report when the loop closes with this resource never closed (empty:
    // nothing). The default names a transport that is not closing, with its peer address.
    virtual std::string unclosed() const;
    LoopResource(const LoopResource&) = delete;
    LoopResource& operator=(const LoopResource&) = delete;

protected:
    explicit LoopResource(LoopCore& core);
    ~LoopResource();
    // The loop's reference (the object's own shared_ptr), held until release().
    void adopt(std::shared_ptr<LoopResource> self) { owned_ = std::move(self); }
    // The loop lets go of its reference at the end of this iteration (at once once closed).
    void release();
    bool adopted() const { return owned_ != nullptr; }

private:
    friend class LoopCore;
    LoopCore* core_;  // null once unlinked
    LoopResource* prev_ = nullptr;
    LoopResource* next_ = nullptr;
    std::shared_ptr<LoopResource> owned_;
};

class LoopCore {
public:
    LoopCore(EventLoop& loop, const LoopOptions& options);
    ~LoopCore();

    EventLoop& loop;
    uring::Ring ring;
    uring::BufferRing buffers;         // datagrams, and streams without incremental buffers
    uring::BufferRing stream_buffers;  // incremental (set up only where the kernel has it)
    // The ring stream sockets receive into.
    uring::BufferRing& stream_ring() { return stream_buffers.ok() ? stream_buffers : buffers; }

    // call_soon without a handle: the transports' internal scheduling.
    void post(Callback cb) {
        check_thread();
        ready_.push_back(Item{std::move(cb), nullptr});
    }
    Handle call_soon(Callback cb);
    TimerHandle call_at(double when, Callback cb);
    void call_soon_threadsafe(Callback cb);
    // A timer in the heap was cancelled; the heap is compacted once most of it is cancelled.
    void timer_cancelled();

    void want_flush(Flushable* f) {
        if (!f->flush_scheduled) {
            f->flush_scheduled = true;
            flush_.push_back(f);
        }
    }
    void want_rearm(Rearmable* r) {
        if (!r->rearm_scheduled) {
            r->rearm_scheduled = true;
            rearm_.push_back(r);
        }
    }

    // The one deferred-destroy path: `p` (a released resource's loop reference, a replaced
    // protocol) is dropped at the end of the current loop iteration, once every callback of
    // it has returned. No allocation in the steady state (the list keeps its capacity).
    void release_later(std::shared_ptr<void> p) { released_.push_back(std::move(p)); }

    void run_forever();
    void run_once();
    void stop() { stopping_ = true; }
    void close();
    bool is_running() const { return running_; }
    bool is_closed() const { return closed_; }
    double time() const;
    // Throws LoopError when called from a thread other than the running loop's.
    void check_thread() const {
        if (running_ && owner_ != std::this_thread::get_id()) [[unlikely]]
            wrong_thread();
    }

    // Runs after every loop iteration while set (tests wait on their conditions with it, so
    // that only real events wake the loop).
    std::function<void()> iteration_hook;

    ExceptionHandler exception_handler;
    void call_exception_handler(const ExceptionContext& ctx);

    LogHandler log_handler;  // empty: one line on stderr
    void log(LogLevel level, std::string_view message);

    // asyncio's debug mode: slow callbacks and completions timed, leaks reported at close.
    bool debug() const { return debug_; }
    void set_debug(bool on);
    double slow_callback_duration = 0.1;

    // write() on a closing transport is dropped; as asyncio, the 5th such write of a transport
    // logs a warning (asyncio then logs every later one; once per transport here), in every build.
    static constexpr std::uint32_t ignored_writes_logged_at = 5;
    void ignored_write(std::uint32_t& count) {
        if (++count == ignored_writes_logged_at) [[unlikely]]
            log_ignored_writes();
    }

    std::vector<std::coroutine_handle<>> roots;  // pending root tasks, freed at close
    LoopCore* next_live = nullptr;  // this thread's live loops: a list that needs no destructor

    std::unique_ptr<Resolver> resolver;
    std::unique_ptr<Executor> executor;  // run_in_executor's pool, made on first use
    std::unique_ptr<SignalWatcher> signals;

private:
    friend class LoopResource;
    void drop_queues();
    LoopResource* resources_ = nullptr;  // intrusive list, no allocation per connection
    struct Item {
        Callback cb;
        std::shared_ptr<HandleState> handle;  // null for post()
    };
    struct TimerEntry {
        double when;
        std::uint64_t seq;
        std::shared_ptr<HandleState> handle;
        bool operator>(const TimerEntry& o) const {
            return when != o.when ? when > o.when : seq > o.seq;
        }
    };
    [[noreturn]] void wrong_thread() const;
    void log_ignored_writes();
    void run_ready();
    void run_ready_timed();
    void check_slow(std::chrono::steady_clock::time_point start, const char* kind,
                    const std::type_info& type);
    class SlowCallbackTimer;
    std::unique_ptr<SlowCallbackTimer> slow_timer_;  // the ring's runner while debug_ is on
    bool debug_ = false;
    void fire_timers();
    // What call_soon_threadsafe queued goes to the ready queue; the check is inline.
    void drain_threadsafe() {
        if (ts_pending_.load(std::memory_order_acquire)) [[unlikely]]
            drain_threadsafe_slow();
    }
    void drain_threadsafe_slow();

    std::vector<Item> ready_;
    std::vector<Item> running_items_;
    std::vector<TimerEntry> timers_;  // a min-heap on (when, seq)
    std::uint64_t timer_seq_ = 0;
    std::size_t cancelled_timers_ = 0;  // cancelled entries still in timers_
    std::vector<Flushable*> flush_;
    std::vector<Flushable*> flushing_;
    std::vector<Rearmable*> rearm_;
    std::vector<Rearmable*> rearming_;
    std::vector<std::shared_ptr<void>> released_;  // see release_later
    std::vector<std::shared_ptr<void>> releasing_;
    void free_released();

    std::unique_ptr<Wakeup> wakeup_;
    std::mutex ts_mutex_;
    std::vector<Callback> ts_items_;
    std::atomic<bool> ts_pending_{false};

    std::thread::id owner_;
    bool running_ = false;
    bool stopping_ = false;
    bool closed_ = false;
};

// An exception from a callback (or a protocol) goes to the loop's exception handler.
void report(LoopCore& core, std::exception_ptr e, const char* message,
            const BaseTransport* transport = nullptr);

}  // namespace aioring::detail
