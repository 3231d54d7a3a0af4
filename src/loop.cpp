// SPDX-License-Identifier: Apache-2.0
// The event loop: ready queue, timers, thread wake-ups (eventfd: src/wakeup.hpp), signals
// (signalfd: src/signals.hpp), all waited for in the ring's single submit-and-wait per iteration.
#include <aioring/loop.hpp>

#include <cxxabi.h>
#include <fmt/core.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <system_error>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

#include "src/executor.hpp"
#include "src/loop_core.hpp"
#include "src/resolver.hpp"
#include "src/signals.hpp"
#include "src/wakeup.hpp"

namespace aioring {
namespace detail {

namespace {
// This thread's live loops, linked through next_live. A plain pointer, not a container: a
// thread_local with a destructor is gone before a static or global EventLoop is destroyed at
// exit (thread storage ends first), and the loop's destructor must still unlink itself.
thread_local LoopCore* live_loops = nullptr;

// The HandleStates of call_soon and call_at (each with its shared_ptr control block, one
// allocation) come from this thread's list of fixed-size blocks, so scheduling allocates nothing
// once the loop has run a while. A block goes back to the list of the thread that frees it, up
// to a cap; the rest, and every block once the thread is exiting, go back to the heap.
constexpr std::size_t handle_block_size = 128;
constexpr std::size_t handle_blocks_kept = 1024;
static_assert(sizeof(HandleState) + 32 <= handle_block_size,
              "a HandleState and its control block must fit a pooled block");
struct FreeBlock {
    FreeBlock* next;
};
struct HandleBlocks {
    FreeBlock* head = nullptr;
    std::size_t count = 0;
    bool gone = false;  // this thread's storage is being destroyed
};
// Trivially destructible, so that it is still there for a handle freed after the reaper ran (a
// static TimerHandle destroyed at exit).
constinit thread_local HandleBlocks handle_blocks;
struct HandleBlocksReaper {
    bool armed = false;
    ~HandleBlocksReaper() {
        while (FreeBlock* b = handle_blocks.head) {
            ASAN_UNPOISON_MEMORY_REGION(b, handle_block_size);
            handle_blocks.head = b->next;
            ::operator delete(b);
        }
        handle_blocks.count = 0;
        handle_blocks.gone = true;
    }
};
thread_local HandleBlocksReaper handle_blocks_reaper;

void* take_handle_block() {
    FreeBlock* b = handle_blocks.head;
    if (b == nullptr) return ::operator new(handle_block_size);
    ASAN_UNPOISON_MEMORY_REGION(b, handle_block_size);
    handle_blocks.head = b->next;
    --handle_blocks.count;
    return b;
}

void give_handle_block(void* p) noexcept {
    if (handle_blocks.gone || handle_blocks.count == handle_blocks_kept) {
        ::operator delete(p);
        return;
    }
    handle_blocks_reaper.armed = true;  // first use on this thread: registers its destructor
    auto* b = static_cast<FreeBlock*>(p);
    b->next = handle_blocks.head;
    handle_blocks.head = b;
    ++handle_blocks.count;
    ASAN_POISON_MEMORY_REGION(b, handle_block_size);  // a use after free still shows
}

// allocate_shared's allocator: single objects that fit a block come from the list.
template <class T>
struct HandleAllocator {
    using value_type = T;
    static constexpr bool pooled =
        sizeof(T) <= handle_block_size && alignof(T) <= alignof(std::max_align_t);
    HandleAllocator() = default;
    template <class U>
    HandleAllocator(const HandleAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        if (pooled && n == 1) return static_cast<T*>(take_handle_block());
        return static_cast<T*>(::operator new(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (pooled && n == 1)
            give_handle_block(p);
        else
            ::operator delete(p);
    }
    template <class U>
    bool operator==(const HandleAllocator<U>&) const noexcept {
        return true;
    }
};

std::shared_ptr<HandleState> make_handle_state() {
    return std::allocate_shared<HandleState>(HandleAllocator<HandleState>{});
}

uring::Backend to_uring(Backend b) {
    switch (b) {
        case Backend::automatic:
            return uring::Backend::automatic;
        case Backend::io_uring:
            return uring::Backend::io_uring;
        case Backend::epoll:
            return uring::Backend::epoll;
    }
    return uring::Backend::automatic;
}

uring::SetupMode to_setup(RingMode m) {
    switch (m) {
        case RingMode::defer_taskrun:
            return uring::SetupMode::defer_taskrun;
        case RingMode::coop_taskrun:
            return uring::SetupMode::coop_taskrun;
        case RingMode::basic:
            return uring::SetupMode::basic;
    }
    return uring::SetupMode::basic;
}
}  // namespace

// "aioring::detail::SocketTransport" rather than the mangled name.
std::string type_name(const std::type_info& t) {
    int status = 0;
    char* d = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
    std::string out = status == 0 && d ? d : t.name();
    std::free(d);
    return out;
}

namespace {
bool debug_from_env() {
    const char* v = std::getenv("AIORING_DEBUG");
    return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

std::string peer_of(const BaseTransport& t) {
    try {
        if (auto peer = t.extra<SocketAddress>("peername")) return peer->to_string();
    } catch (...) {
    }
    return {};
}
}  // namespace

// Debug mode: each completion the ring dispatches is timed (as asyncio times each handle).
class LoopCore::SlowCallbackTimer final : public uring::CompletionRunner {
public:
    explicit SlowCallbackTimer(LoopCore& core) : core_(core) {}
    void run(uring::Op& op, int res, unsigned flags) override {
        const std::type_info& type = typeid(op);  // before: complete() may free the op
        const auto start = std::chrono::steady_clock::now();
        op.complete(res, flags);
        core_.check_slow(start, "completion of", type);
    }

private:
    LoopCore& core_;
};

void LoopCore::check_slow(std::chrono::steady_clock::time_point start, const char* kind,
                          const std::type_info& type) {
    const double dt =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (dt >= slow_callback_duration)
        log(LogLevel::warning,
            fmt::format("Executing {} {} took {:.3f} seconds", kind, type_name(type), dt));
}

void LoopCore::set_debug(bool on) {
    debug_ = on;
    if (on && !slow_timer_) slow_timer_ = std::make_unique<SlowCallbackTimer>(*this);
    ring.set_runner(on ? slow_timer_.get() : nullptr);
}

void LoopCore::log(LogLevel level, std::string_view message) {
    if (log_handler) {
        try {
            log_handler(level, message);
            return;
        } catch (...) {
            // A failing handler must not lose the message: it goes to stderr below.
        }
    }
    if (level == LogLevel::error)
        fmt::print(stderr, "aioring: {}\n", message);
    else
        fmt::print(stderr, "aioring: {}: {}\n", to_string(level), message);
}

void LoopCore::log_ignored_writes() {
    log(LogLevel::warning,
        fmt::format("write() on a closing transport is ignored ({} writes so far; not reported "
                    "again for this transport)",
                    ignored_writes_logged_at));
}

std::string LoopResource::unclosed() const {
    auto* t = dynamic_cast<const BaseTransport*>(this);
    if (t == nullptr || t->is_closing()) return {};
    std::string line = fmt::format("unclosed transport {}", type_name(typeid(*t)));
    if (std::string peer = peer_of(*t); !peer.empty()) line += fmt::format(" (peer {})", peer);
    return line;
}

bool is_live_loop(const EventLoop* loop) {
    for (LoopCore* c = live_loops; c; c = c->next_live)
        if (&c->loop == loop) return true;
    return false;
}

// The stream ring's buffers offered to the kernel at once (the rest wait, most recently freed
// first): 2 MiB that a stream cycles through, about one core's L2 cache here, instead of all
// 16 MiB; enough for the receives of a busy iteration (a shortfall is ENOBUFS, then a re-arm).
constexpr unsigned stream_buffers_offered = 8;

LoopCore::LoopCore(EventLoop& l, const LoopOptions& o)
    : loop(l),
      ring(o.sq_entries, o.cq_entries, to_setup(o.strongest_ring_mode), to_uring(o.backend)),
      buffers(ring, 0, o.buffer_count, o.buffer_size),
      stream_buffers(ring, 1, o.incremental_buffers ? o.stream_buffer_count : 0,
                     o.stream_buffer_size, uring::BufferRing::Consumption::incremental,
                     stream_buffers_offered),
      owner_(std::this_thread::get_id()) {
    // Room for this many transports to flush or re-arm in one iteration before the lists
    // grow: each one that grows does so once, at a new peak, and it is not the first time two
    // transports write in one iteration that allocates, in the middle of a stream.
    constexpr std::size_t per_iteration = 64;
    flush_.reserve(per_iteration);
    flushing_.reserve(per_iteration);
    rearm_.reserve(per_iteration);
    rearming_.reserve(per_iteration);
    wakeup_ = std::make_unique<Wakeup>(*this);
    if (!(o.slow_callback_duration >= 0))
        throw std::invalid_argument("slow_callback_duration must be >= 0");
    slow_callback_duration = o.slow_callback_duration;
    if (o.debug || debug_from_env()) set_debug(true);
    next_live = live_loops;
    live_loops = this;
}

LoopCore::~LoopCore() {
    close();
    drop_queues();  // what was scheduled after close()
    for (LoopCore** p = &live_loops; *p; p = &(*p)->next_live)
        if (*p == this) {
            *p = next_live;
            break;
        }
}

LoopResource::LoopResource(LoopCore& core) : core_(&core) {
    next_ = core.resources_;
    if (next_) next_->prev_ = this;
    core.resources_ = this;
}

void LoopResource::release() {
    if (!owned_) return;
    if (core_)
        core_->release_later(std::move(owned_));
    else
        owned_.reset();  // unreachable in practice: close() takes the reference itself
}

void LoopCore::free_released() {
    // Dropping a reference may free an object whose destructor releases another: go round.
    while (!released_.empty()) {
        releasing_.swap(released_);
        releasing_.clear();
    }
}

LoopResource::~LoopResource() {
    if (!core_) return;
    if (prev_)
        prev_->next_ = next_;
    else
        core_->resources_ = next_;
    if (next_) next_->prev_ = prev_;
}

void LoopCore::drop_queues() {
    // Destroying a callback may destroy an object that schedules another: go round until
    // nothing is left (bounded, in case something keeps scheduling).
    for (int round = 0; round < 64; ++round) {
        auto ready = std::exchange(ready_, {});
        auto timers = std::exchange(timers_, {});
        for (auto& t : timers) t.handle->timer_heap = nullptr;  // handles may outlive the loop
        cancelled_timers_ = 0;
        std::vector<Callback> ts;
        {
            std::lock_guard lock(ts_mutex_);
            ts.swap(ts_items_);
        }
        const bool released = !released_.empty();
        free_released();
        if (ready.empty() && timers.empty() && ts.empty() && !released) break;
    }
}

void LoopCore::close() {
    if (closed_) return;
    if (running_) throw LoopError("Cannot close a running event loop");
    {
        std::lock_guard lock(ts_mutex_);  // call_soon_threadsafe reads it under the lock
        closed_ = true;
    }
    resolver.reset();  // joins the workers; they see the loop closed and drop their results
    executor.reset();  // waits for running jobs; their results find the loop closed
    // Every operation delivers its final completion before anything it points into is freed.
    ring.cancel_all(std::chrono::seconds(1));
    flush_.clear();
    rearm_.clear();
    // What is still open lets go of its fds and of itself; no callback runs any more.
    while (LoopResource* r = resources_) {
        resources_ = r->next_;
        if (resources_) resources_->prev_ = nullptr;
        r->core_ = nullptr;
        r->next_ = nullptr;
        auto owned = std::move(r->owned_);  // the loop's reference, dropped once r is done
        if (debug_) [[unlikely]]
            if (std::string m = r->unclosed(); !m.empty()) log(LogLevel::warning, m);
        r->loop_closed();
    }
    free_released();
    // Pending root tasks are destroyed (asyncio reports "Task was destroyed but it is pending!"
    // always; here in debug mode).
    for (auto h : std::exchange(roots, {})) {
        if (debug_) [[unlikely]]
            log(LogLevel::error, "Task was destroyed but it is pending!");
        h.destroy();
    }
    drop_queues();
    signals.reset();
}

double LoopCore::time() const {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void LoopCore::wrong_thread() const {
    throw LoopError("event loop used from a thread other than its own: use call_soon_threadsafe()");
}

Handle LoopCore::call_soon(Callback cb) {
    check_thread();
    if (closed_) throw LoopError("Event loop is closed");
    auto h = make_handle_state();
    ready_.push_back(Item{std::move(cb), h});
    return Handle(std::move(h));
}

TimerHandle LoopCore::call_at(double when, Callback cb) {
    check_thread();
    if (closed_) throw LoopError("Event loop is closed");
    auto h = make_handle_state();
    h->cb = std::move(cb);
    h->when = when;
    h->seq = ++timer_seq_;
    h->timer_heap = this;
    timers_.push_back(TimerEntry{when, h->seq, h});
    std::push_heap(timers_.begin(), timers_.end(), std::greater<>{});
    return TimerHandle(std::move(h));
}

void LoopCore::timer_cancelled() {
    ++cancelled_timers_;
    // As asyncio: once more than half of a sizeable heap is cancelled, rebuild it without them,
    // so that timeouts set and cancelled per request do not pile up until they are due.
    if (cancelled_timers_ < 100 || cancelled_timers_ * 2 <= timers_.size()) return;
    std::erase_if(timers_, [](const TimerEntry& t) {
        if (!t.handle->cancelled) return false;
        t.handle->timer_heap = nullptr;
        return true;
    });
    std::make_heap(timers_.begin(), timers_.end(), std::greater<>{});
    cancelled_timers_ = 0;
}

void LoopCore::call_soon_threadsafe(Callback cb) {
    // The wake-up is written under the lock: close() takes it too, so a loop that runs this
    // callback at once and is then closed and destroyed cannot free the eventfd under us.
    std::lock_guard lock(ts_mutex_);
    if (closed_) throw LoopError("Event loop is closed");
    ts_items_.push_back(std::move(cb));
    if (!ts_pending_.exchange(true, std::memory_order_acq_rel)) wakeup_->notify();
}

void LoopCore::drain_threadsafe_slow() {
    std::vector<Callback> items;
    {
        std::lock_guard lock(ts_mutex_);
        ts_pending_.store(false, std::memory_order_release);
        items.swap(ts_items_);
    }
    for (auto& cb : items) ready_.push_back(Item{std::move(cb), nullptr});
}

void LoopCore::call_exception_handler(const ExceptionContext& ctx) {
    if (exception_handler) {
        try {
            exception_handler(loop, ctx);
            return;
        } catch (...) {
            ExceptionContext inner{"Unhandled error in exception handler", std::current_exception(),
                                   ctx.transport};
            loop.default_exception_handler(inner);
        }
    }
    loop.default_exception_handler(ctx);
}

void report(LoopCore& core, std::exception_ptr e, const char* message, const BaseTransport* t) {
    // asyncio's context for a failing protocol callback: message, exception, transport, protocol.
    core.call_exception_handler(
        ExceptionContext{message, std::move(e), t, t ? t->get_protocol() : nullptr});
}

void LoopCore::run_forever() {
    if (closed_) throw LoopError("Event loop is closed");
    if (running_) throw LoopError("This event loop is already running");
    for (LoopCore* other = live_loops; other; other = other->next_live)
        if (other != this && other->running_)
            throw LoopError("Cannot run the event loop while another loop is running");
    owner_ = std::this_thread::get_id();
    running_ = true;
    struct Reset {
        LoopCore* c;
        ~Reset() {
            c->running_ = false;
            c->stopping_ = false;
        }
    } reset{this};
    for (;;) {
        run_once();
        if (stopping_) break;
    }
}

void LoopCore::run_once() {
    // Writes made by callbacks become SQEs now, coalesced per transport.
    if (!flush_.empty()) {
        flushing_.swap(flush_);
        for (Flushable* f : flushing_) {
            f->flush_scheduled = false;
            f->flush();
        }
        flushing_.clear();
    }
    if (!rearm_.empty()) {
        rearming_.swap(rearm_);
        for (Rearmable* r : rearming_) {
            r->rearm_scheduled = false;
            r->rearm();
        }
        rearming_.clear();
    }
    drain_threadsafe();

    std::optional<std::chrono::nanoseconds> timeout;
    // Something released outside an iteration (set_protocol from outside the loop's callbacks)
    // is freed by the next one, without waiting for an event.
    if (!ready_.empty() || stopping_ || !flush_.empty() || !released_.empty()) {
        timeout = std::chrono::nanoseconds(0);
    } else if (!timers_.empty()) {
        // A cancelled timer at the front must not wake the loop up for nothing.
        while (!timers_.empty() && timers_.front().handle->cancelled) {
            std::pop_heap(timers_.begin(), timers_.end(), std::greater<>{});
            timers_.back().handle->timer_heap = nullptr;
            timers_.pop_back();
            --cancelled_timers_;
        }
    }
    if (!timeout && !timers_.empty()) {
        double dt = timers_.front().when - time();
        timeout = std::chrono::nanoseconds(dt <= 0 ? 0 : static_cast<std::int64_t>(dt * 1e9) + 1);
    }
    ring.submit_and_wait(timeout);
    ring.dispatch();
    drain_threadsafe();
    // Under load most iterations have neither timers nor ready callbacks: no call for them.
    if (!timers_.empty()) fire_timers();
    if (!ready_.empty()) run_ready();
    if (!released_.empty()) free_released();
    if (iteration_hook) [[unlikely]]
        iteration_hook();
}

void LoopCore::fire_timers() {
    const double now = time();
    while (!timers_.empty() && timers_.front().when <= now) {
        std::pop_heap(timers_.begin(), timers_.end(), std::greater<>{});
        auto h = std::move(timers_.back().handle);
        timers_.pop_back();
        h->timer_heap = nullptr;
        if (!h->cancelled)
            ready_.push_back(Item{Callback{}, std::move(h)});
        else
            --cancelled_timers_;
    }
}

void LoopCore::run_ready() {
    if (debug_) [[unlikely]]
        return run_ready_timed();
    running_items_.swap(ready_);
    for (Item& it : running_items_) {
        Callback& cb = it.handle ? (it.cb ? it.cb : it.handle->cb) : it.cb;
        if (it.handle && it.handle->cancelled) continue;
        try {
            cb();
        } catch (...) {
            report(*this, std::current_exception(), "Exception in callback");
        }
        if (it.handle) it.handle->cb.reset();
    }
    running_items_.clear();
}

void LoopCore::run_ready_timed() {
    running_items_.swap(ready_);
    for (Item& it : running_items_) {
        Callback& cb = it.handle ? (it.cb ? it.cb : it.handle->cb) : it.cb;
        if (it.handle && it.handle->cancelled) continue;
        // call_soon's handle, a timer, or the loop's own scheduling (post).
        const char* kind = it.handle ? (it.cb ? "callback" : "timer") : "internal callback";
        const std::type_info& type = cb.target_type();
        const auto start = std::chrono::steady_clock::now();
        try {
            cb();
        } catch (...) {
            report(*this, std::current_exception(), "Exception in callback");
        }
        check_slow(start, kind, type);
        if (it.handle) it.handle->cb.reset();
    }
    running_items_.clear();
}

void root_started(EventLoop& loop, std::coroutine_handle<> h) { loop.core().roots.push_back(h); }
void root_finished(EventLoop& loop, std::coroutine_handle<> h) {
    auto& r = loop.core().roots;
    auto it = std::find(r.begin(), r.end(), h);
    if (it != r.end()) {
        *it = r.back();
        r.pop_back();
    }
}
void schedule_root(EventLoop& loop, std::coroutine_handle<> h) {
    root_started(loop, h);
    loop.core().post([h] { h.resume(); });
}

}  // namespace detail

const char* to_string(LogLevel l) {
    switch (l) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warning:
            return "warning";
        case LogLevel::error:
            return "error";
    }
    return "?";
}

const char* to_string(RingMode m) {
    switch (m) {
        case RingMode::defer_taskrun:
            return "defer_taskrun";
        case RingMode::coop_taskrun:
            return "coop_taskrun";
        case RingMode::basic:
            return "basic";
    }
    return "?";
}

void Handle::cancel() {
    if (s_ && !s_->cancelled) {
        s_->cancelled = true;
        s_->cb.reset();
        if (s_->timer_heap) s_->timer_heap->timer_cancelled();
    }
}
bool Handle::cancelled() const { return s_ && s_->cancelled; }
double TimerHandle::when() const { return s_ ? s_->when : 0; }

EventLoop::EventLoop() : EventLoop(LoopOptions{}) {}
EventLoop::EventLoop(const LoopOptions& o) : core_(std::make_unique<detail::LoopCore>(*this, o)) {}
EventLoop::~EventLoop() = default;

bool EventLoop::incremental_buffers() const { return core_->stream_buffers.incremental(); }

const char* to_string(Backend b) { return uring::to_string(detail::to_uring(b)); }

Backend EventLoop::backend() const {
    return core_->ring.backend() == uring::Backend::epoll ? Backend::epoll : Backend::io_uring;
}

std::string EventLoop::backend_fallback_reason() const { return core_->ring.fallback_reason(); }

RingMode EventLoop::ring_mode() const {
    switch (core_->ring.mode()) {
        case uring::SetupMode::defer_taskrun:
            return RingMode::defer_taskrun;
        case uring::SetupMode::coop_taskrun:
            return RingMode::coop_taskrun;
        case uring::SetupMode::basic:
            return RingMode::basic;
    }
    return RingMode::basic;
}
double EventLoop::time() const { return core_->time(); }
Handle EventLoop::call_soon(Callback cb) { return core_->call_soon(std::move(cb)); }
TimerHandle EventLoop::call_later(double delay, Callback cb) {
    return core_->call_at(time() + delay, std::move(cb));
}
TimerHandle EventLoop::call_at(double when, Callback cb) {
    return core_->call_at(when, std::move(cb));
}
void EventLoop::call_soon_threadsafe(Callback cb) { core_->call_soon_threadsafe(std::move(cb)); }
void EventLoop::run_forever() { core_->run_forever(); }
void EventLoop::stop() { core_->stop(); }
std::function<void()> EventLoop::set_iteration_hook(std::function<void()> hook) {
    return std::exchange(core_->iteration_hook, std::move(hook));
}
void EventLoop::close() { core_->close(); }
bool EventLoop::is_running() const { return core_->is_running(); }
bool EventLoop::is_closed() const { return core_->is_closed(); }

void EventLoop::set_exception_handler(ExceptionHandler h) {
    core_->exception_handler = std::move(h);
}
const ExceptionHandler& EventLoop::get_exception_handler() const {
    return core_->exception_handler;
}
void EventLoop::call_exception_handler(const ExceptionContext& c) {
    core_->call_exception_handler(c);
}
void EventLoop::default_exception_handler(const ExceptionContext& c) {
    std::string line = c.message;
    if (c.exception) {
        try {
            std::rethrow_exception(c.exception);
        } catch (const std::exception& e) {
            line += fmt::format(": {}", e.what());
        } catch (...) {
            line += ": unknown exception";
        }
    }
    // asyncio's default handler names the transport; its peer is what tells connections apart.
    if (c.transport)
        if (std::string peer = detail::peer_of(*c.transport); !peer.empty())
            line += fmt::format(" (peer {})", peer);
    core_->log(LogLevel::error, line);
}

void EventLoop::set_log_handler(LogHandler h) { core_->log_handler = std::move(h); }
void EventLoop::log(LogLevel level, std::string_view message) { core_->log(level, message); }
bool EventLoop::get_debug() const { return core_->debug(); }
void EventLoop::set_debug(bool on) { core_->set_debug(on); }
double EventLoop::slow_callback_duration() const { return core_->slow_callback_duration; }
void EventLoop::set_slow_callback_duration(double s) {
    if (!(s >= 0)) throw std::invalid_argument("slow_callback_duration must be >= 0");
    core_->slow_callback_duration = s;
}

void EventLoop::add_signal_handler(int sig, Callback handler) {
    core_->check_thread();
    if (!core_->signals) core_->signals = std::make_unique<detail::SignalWatcher>(*core_);
    core_->signals->add(sig, std::move(handler));
}
bool EventLoop::remove_signal_handler(int sig) {
    return core_->signals && core_->signals->remove(sig);
}

Future<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port, int family,
                                                     int type, int protocol, int flags) {
    core_->check_thread();
    if (core_->is_closed()) throw LoopError("Event loop is closed");
    if (!core_->resolver) core_->resolver = std::make_unique<detail::Resolver>(*core_);
    return core_->resolver->resolve(std::move(host), std::move(port), family, type, protocol,
                                    flags);
}

}  // namespace aioring
