// The coroutine layer's tools, as asyncio names them: get_running_loop, sleep, wait_for, gather
// and aioring::run; and the wait list that Event, Lock, Queue and the streams suspend on.
// Every awaitable here must be awaited from a task (create_task, run_until_complete, run).
#pragma once

#include <aioring/error.hpp>
#include <aioring/future.hpp>
#include <aioring/loop.hpp>
#include <aioring/task.hpp>

#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace aioring {

namespace detail {

[[noreturn]] void not_in_task(const char* what);
// Resumes `h` from the loop's ready queue: in the same iteration when called while completions
// are dispatched, in the next one from a callback.
void post_resume(EventLoop& loop, std::coroutine_handle<> h);

template <class P>
TaskContext& require_context(std::coroutine_handle<P> h, const char* what) {
    TaskContext* c = context_of(h);
    if (c == nullptr || c->loop == nullptr) not_in_task(what);
    return *c;
}

class WaitList;

// A coroutine suspended on a WaitList. It lives in the awaiter (in the coroutine frame), so
// waiting allocates nothing. Cancelling the task unlinks it and resumes it.
struct Waiter {
    std::coroutine_handle<> h;
    TaskContext* ctx = nullptr;
    WaitList* list = nullptr;  // set while linked
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
    bool woken = false;  // resumed by a wake-up (not by a cancel)

    Waiter() = default;
    Waiter(const Waiter&) noexcept {}  // a copy is a fresh, unlinked waiter
    Waiter& operator=(const Waiter&) = delete;
    ~Waiter();
    void suspend(WaitList& l, std::coroutine_handle<> handle, TaskContext& context);
    // After resumption: true if the task was cancelled (CancelledError is due).
    bool resumed();
};

// FIFO of suspended coroutines; wake-ups resume them through the loop's ready queue.
class WaitList {
public:
    WaitList() = default;
    WaitList(const WaitList&) = delete;
    WaitList& operator=(const WaitList&) = delete;
    ~WaitList();
    bool empty() const { return head_ == nullptr; }
    // Wakes the first waiter; false if there was none.
    bool wake_one();
    void wake_all();

private:
    friend struct Waiter;
    void push(Waiter& w);
    void unlink(Waiter& w);
    Waiter* head_ = nullptr;
    Waiter* tail_ = nullptr;
};

struct WaitResult {
    bool woken = false;      // a wake-up reached this waiter (it may owe it to the next one)
    bool cancelled = false;  // the task was cancelled: the caller throws CancelledError
};

// Suspends on `list` until woken or cancelled.
struct WaitAwaiter {
    explicit WaitAwaiter(WaitList& l) : list(l) {}
    WaitList& list;
    Waiter w;
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        w.suspend(list, h, require_context(h, "a wait"));
    }
    WaitResult await_resume() {
        const bool cancelled = w.resumed();
        return WaitResult{w.woken, cancelled};
    }
};

// Waits until a future is done without taking its result; cancelling the awaiting task
// cancels the future (a task's future finishes once the task has unwound). Returns true if
// the awaiting task was cancelled.
struct DoneAwaiter {
    explicit DoneAwaiter(std::shared_ptr<FutureStateBase> st) : s(std::move(st)) {}
    std::shared_ptr<FutureStateBase> s;
    TaskContext* ctx = nullptr;
    bool await_ready() const noexcept { return s->done(); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        ctx = context_of(h);
        s->add_done_callback([h]() mutable { h.resume(); });
        if (ctx) {
            ctx->cancel_current = [st = s.get()] { st->cancel(); };
            if (ctx->cancel_requested) s->cancel();
        }
    }
    bool await_resume() {
        if (!ctx) return false;
        ctx->cancel_current.reset();
        return ctx->take_cancel();
    }
};

// gather's wait: until every child is done, or one failed (was cancelled or raised). A cancel
// of the gathering task cancels every child and waits for all of them.
struct GatherState {
    std::size_t remaining = 0;
    std::coroutine_handle<> h;
    bool waiting = false;
    bool cancelling = false;
    std::ptrdiff_t first_failed = -1;
};
struct GatherOutcome {
    bool cancelled = false;
    std::ptrdiff_t first_failed = -1;
};
class GatherAwaiter {
public:
    explicit GatherAwaiter(std::vector<std::shared_ptr<FutureStateBase>> children)
        : children_(std::move(children)), g_(std::make_shared<GatherState>()) {}
    bool await_ready();
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        ctx_ = context_of(h);
        suspend(h);
    }
    GatherOutcome await_resume();

private:
    void suspend(std::coroutine_handle<> h);
    std::vector<std::shared_ptr<FutureStateBase>> children_;
    std::shared_ptr<GatherState> g_;
    TaskContext* ctx_ = nullptr;
};

template <class T>
using gather_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
gather_value_t<T> take_result(Future<T>& f) {
    if constexpr (std::is_void_v<T>) {
        f.result();
        return {};
    } else {
        return std::move(f.result());
    }
}

template <class A>
using await_result_t = decltype(std::declval<A&>().await_resume());

// A Task running an awaiter (so that wait_for can run it as a task of its own).
template <class A, class R = await_result_t<A>>
Task<R> as_task(A aw) {
    if constexpr (std::is_void_v<R>) co_await std::move(aw);
    else co_return co_await std::move(aw);
}

}  // namespace detail

// `EventLoop& loop = co_await get_running_loop();` the loop the awaiting task runs on.
struct RunningLoopAwaiter {
    EventLoop* loop = nullptr;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        loop = detail::require_context(h, "get_running_loop()").loop;
        return false;
    }
    EventLoop& await_resume() const noexcept { return *loop; }
};
inline RunningLoopAwaiter get_running_loop() { return {}; }

// `co_await sleep(seconds)`: resumes after `seconds` (a timer on the loop); sleep(0) yields to
// the loop once. Cancelling the task cancels the timer and throws CancelledError.
class [[nodiscard]] SleepAwaiter {
public:
    explicit SleepAwaiter(double seconds) : delay_(seconds) {}
    SleepAwaiter(const SleepAwaiter& o) : delay_(o.delay_) {}
    SleepAwaiter& operator=(const SleepAwaiter&) = delete;
    ~SleepAwaiter() { timer_.cancel(); }
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        ctx_ = &detail::require_context(h, "sleep()");
        h_ = h;
        EventLoop& loop = *ctx_->loop;
        timer_ = delay_ > 0 ? Handle(loop.call_later(delay_, [h]() mutable { h.resume(); }))
                            : loop.call_soon([h]() mutable { h.resume(); });
        ctx_->cancel_current = [this] { cancel(); };
        if (ctx_->cancel_requested) cancel();
    }
    void await_resume() {
        ctx_->cancel_current.reset();
        if (ctx_->take_cancel()) throw CancelledError();
    }

private:
    void cancel() {
        if (timer_.cancelled()) return;
        timer_.cancel();  // the timer's resume is dropped; this one takes its place
        detail::post_resume(*ctx_->loop, h_);
    }
    double delay_;
    Handle timer_;
    std::coroutine_handle<> h_;
    detail::TaskContext* ctx_ = nullptr;
};
inline SleepAwaiter sleep(double seconds) { return SleepAwaiter(seconds); }
// An exact match for `sleep(1)`, which would otherwise be ambiguous with ::sleep(unsigned).
inline SleepAwaiter sleep(int seconds) { return SleepAwaiter(seconds); }

// wait_for(aw, timeout): the result of `aw` (a Future, a Task, or any awaitable of this
// library), or TimeoutError once `timeout` seconds have passed; the inner operation is then
// cancelled, and wait_for returns only after it has unwound, so nothing is left in flight.
// Cancelling the waiting task cancels the inner one too.
template <class T>
Task<T> wait_for(Future<T> f, double timeout) {
    EventLoop& loop = f.get_loop();
    bool timed_out = false;
    // The timer refers to this frame: the guard cancels it on every way out.
    TimerHandle timer = loop.call_later(timeout, [f, &timed_out] {
        timed_out = true;
        f.cancel();
    });
    struct Guard {
        TimerHandle& t;
        ~Guard() { t.cancel(); }
    } guard{timer};
    if (co_await detail::DoneAwaiter(f.state())) throw CancelledError();
    if (timed_out && f.cancelled()) throw TimeoutError();
    if constexpr (std::is_void_v<T>) f.result();
    else co_return std::move(f.result());
}

template <class T>
Task<T> wait_for(Task<T> t, double timeout) {
    EventLoop& loop = co_await get_running_loop();
    auto f = loop.create_task(std::move(t));
    if constexpr (std::is_void_v<T>) co_await wait_for(std::move(f), timeout);
    else co_return co_await wait_for(std::move(f), timeout);
}

template <class A, class R = detail::await_result_t<A>>
Task<R> wait_for(A aw, double timeout) {
    EventLoop& loop = co_await get_running_loop();
    auto f = loop.create_task(detail::as_task(std::move(aw)));
    if constexpr (std::is_void_v<R>) co_await wait_for(std::move(f), timeout);
    else co_return co_await wait_for(std::move(f), timeout);
}

// gather(tasks): runs the tasks concurrently (each as a task of its own) and returns their
// results in order. The first to fail (raise or be cancelled) makes gather raise that at once;
// the others keep running, as in asyncio. Cancelling gather cancels them all.
template <class T>
    requires(!std::is_void_v<T>)
Task<std::vector<T>> gather(std::vector<Task<T>> tasks) {
    EventLoop& loop = co_await get_running_loop();
    std::vector<Future<T>> futs;
    std::vector<std::shared_ptr<detail::FutureStateBase>> states;
    futs.reserve(tasks.size());
    for (auto& t : tasks) {
        futs.push_back(loop.create_task(std::move(t)));
        states.push_back(futs.back().state());
    }
    detail::GatherOutcome out = co_await detail::GatherAwaiter(std::move(states));
    if (out.cancelled) throw CancelledError();
    if (out.first_failed >= 0) futs[static_cast<std::size_t>(out.first_failed)].result();
    std::vector<T> results;
    results.reserve(futs.size());
    for (auto& f : futs) results.push_back(std::move(f.result()));
    co_return results;
}

Task<void> gather(std::vector<Task<void>> tasks);

// gather(t1, t2, ...): a tuple of the results; a Task<void> gives std::monostate.
template <class... T>
    requires(sizeof...(T) > 0)
Task<std::tuple<detail::gather_value_t<T>...>> gather(Task<T>... tasks) {
    EventLoop& loop = co_await get_running_loop();
    std::tuple<Future<T>...> futs{loop.create_task(std::move(tasks))...};
    std::vector<std::shared_ptr<detail::FutureStateBase>> states = std::apply(
        [](auto&... f) {
            return std::vector<std::shared_ptr<detail::FutureStateBase>>{f.state()...};
        },
        futs);
    detail::GatherOutcome out = co_await detail::GatherAwaiter(std::move(states));
    if (out.cancelled) throw CancelledError();
    if (out.first_failed >= 0) {
        std::size_t i = 0;
        std::apply(
            [&](auto&... f) {
                ((i++ == static_cast<std::size_t>(out.first_failed) ? (void)f.result() : void()),
                 ...);
            },
            futs);
    }
    co_return std::apply(
        [](auto&... f) {
            return std::tuple<detail::gather_value_t<T>...>{detail::take_result(f)...};
        },
        futs);
}

// aioring::run(main): asyncio.run. Makes a loop, runs `main` to completion, closes the loop and
// returns main's result (or rethrows its exception). `main` is a Task, or a callable taking the
// EventLoop& and returning one.
template <class T>
T run(Task<T> main) {
    EventLoop loop;
    struct Closer {
        EventLoop& l;
        ~Closer() { l.close(); }
    } closer{loop};
    return loop.run_until_complete(std::move(main));
}
template <class F>
    requires std::is_invocable_v<F, EventLoop&>
auto run(F&& main) {
    EventLoop loop;
    struct Closer {
        EventLoop& l;
        ~Closer() { l.close(); }
    } closer{loop};
    return loop.run_until_complete(std::invoke(std::forward<F>(main), loop));
}

}  // namespace aioring
