// SPDX-License-Identifier: Apache-2.0
// The coroutine layer's tools, as asyncio names them: get_running_loop, sleep, wait_for, gather
// and aioring::run; and the wait list that Event, Lock, Queue and the streams suspend on.
// Every awaitable here must be awaited from a task (create_task, run_until_complete, run).
#pragma once

#include <aioring/error.hpp>
#include <aioring/future.hpp>
#include <aioring/loop.hpp>
#include <aioring/task.hpp>

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
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
    ~Waiter() {
        if (list) detach();
    }
    inline void suspend(WaitList& l, std::coroutine_handle<> handle, TaskContext& context);
    // After resumption: true if the task was cancelled (CancelledError is due).
    bool resumed() {
        ctx->cancel_fn = nullptr;
        return ctx->take_cancel();
    }
    // TaskContext::cancel_fn of a suspended waiter: unlinks it and resumes it.
    static void cancel(void* waiter);

private:
    // A frame destroyed while suspended (a loop closed with the task pending) must not stay
    // linked.
    void detach();
};

// FIFO of suspended coroutines; wake-ups resume them through the loop's ready queue.
class WaitList {
public:
    WaitList() = default;
    WaitList(const WaitList&) = delete;
    WaitList& operator=(const WaitList&) = delete;
    ~WaitList();
    bool empty() const { return head_ == nullptr; }
    // The waiter a wake_one() would wake; null if there is none.
    Waiter* front() const { return head_; }
    // Wakes the first waiter; false if there was none.
    bool wake_one();
    // Unlinks the first waiter and marks it woken, for a caller that resumes it itself (as a
    // wake-up would); null if there was none.
    Waiter* take_one() {
        Waiter* w = head_;
        if (w == nullptr) return nullptr;
        unlink(*w);
        w->woken = true;
        return w;
    }
    void wake_all();

private:
    friend struct Waiter;
    void push(Waiter& w) {
        assert(w.list == nullptr);
        w.list = this;
        w.prev = tail_;
        w.next = nullptr;
        if (tail_)
            tail_->next = &w;
        else
            head_ = &w;
        tail_ = &w;
    }
    void unlink(Waiter& w) {
        assert(w.list == this);
        if (w.prev)
            w.prev->next = w.next;
        else
            head_ = w.next;
        if (w.next)
            w.next->prev = w.prev;
        else
            tail_ = w.prev;
        w.prev = w.next = nullptr;
        w.list = nullptr;
    }
    Waiter* head_ = nullptr;
    Waiter* tail_ = nullptr;
};

// Inline: every wait suspends through it.
void Waiter::suspend(WaitList& l, std::coroutine_handle<> handle, TaskContext& context) {
    h = handle;
    ctx = &context;
    woken = false;
    l.push(*this);
    if (context.cancel_requested) {
        cancel(this);
    } else {
        context.cancel_fn = &Waiter::cancel;
        context.cancel_arg = this;
    }
}

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
    if constexpr (std::is_void_v<R>)
        co_await std::move(aw);
    else
        co_return co_await std::move(aw);
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
        if (ctx_->take_cancel()) throw ctx_->error();
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
    if constexpr (std::is_void_v<T>)
        f.result();
    else
        co_return std::move(f.result());
}

template <class T>
Task<T> wait_for(Task<T> t, double timeout) {
    EventLoop& loop = co_await get_running_loop();
    auto f = loop.create_task(std::move(t));
    if constexpr (std::is_void_v<T>)
        co_await wait_for(std::move(f), timeout);
    else
        co_return co_await wait_for(std::move(f), timeout);
}

template <class A, class R = detail::await_result_t<A>>
Task<R> wait_for(A aw, double timeout) {
    EventLoop& loop = co_await get_running_loop();
    auto f = loop.create_task(detail::as_task(std::move(aw)));
    if constexpr (std::is_void_v<R>)
        co_await wait_for(std::move(f), timeout);
    else
        co_return co_await wait_for(std::move(f), timeout);
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

// wait(futures, return_when, timeout): asyncio.wait. Returns once the condition holds or
// `timeout` seconds passed, with the futures split into done and pending (in their order);
// nothing is cancelled, not even on timeout. FIRST_EXCEPTION returns at the first future done
// with an exception (a cancelled one does not count), else when all are done. An empty list
// is std::invalid_argument. Cancelling the waiting task leaves the futures alone.
enum class ReturnWhen { first_completed, first_exception, all_completed };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::first_completed;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::first_exception;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::all_completed;

template <class T>
struct DoneAndPending {
    std::vector<Future<T>> done;
    std::vector<Future<T>> pending;
};

namespace detail {
struct WaitManyState;
class WaitManyAwaiter {
public:
    WaitManyAwaiter(std::vector<std::shared_ptr<FutureStateBase>> fs, ReturnWhen when,
                    std::optional<double> timeout);
    bool await_ready() const;
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        suspend(h, require_context(h, "wait()"));
    }
    bool await_resume();  // true: the waiting task was cancelled

private:
    void suspend(std::coroutine_handle<> h, TaskContext& ctx);
    std::shared_ptr<WaitManyState> s_;
    std::optional<double> timeout_;
};

// as_completed's queue: indices of the futures in the order they finished.
struct CompletionQueue;
std::shared_ptr<CompletionQueue> completion_queue(
    const std::vector<std::shared_ptr<FutureStateBase>>& fs, std::optional<double> timeout);
Task<std::size_t> next_completed(std::shared_ptr<CompletionQueue> q);
}  // namespace detail

template <class T>
Task<DoneAndPending<T>> wait(std::vector<Future<T>> fs, ReturnWhen when = ALL_COMPLETED,
                             std::optional<double> timeout = std::nullopt) {
    if (fs.empty()) throw std::invalid_argument("wait() needs at least one future");
    std::vector<std::shared_ptr<detail::FutureStateBase>> states;
    states.reserve(fs.size());
    for (auto& f : fs) states.push_back(f.state());
    if (co_await detail::WaitManyAwaiter(std::move(states), when, timeout)) throw CancelledError();
    DoneAndPending<T> r;
    for (auto& f : fs) (f.done() ? r.done : r.pending).push_back(std::move(f));
    co_return r;
}

// as_completed(futures, timeout): asyncio.as_completed. `co_await ac.next()` gives the result
// of the next future to finish (or throws its exception), in the order they finish; once
// `timeout` seconds have passed, next() throws TimeoutError. has_next(): not all yielded yet.
// Keep it named while iterating (next() refers to it).
template <class T>
class AsCompleted {
public:
    explicit AsCompleted(std::vector<Future<T>> fs, std::optional<double> timeout = std::nullopt)
        : fs_(std::move(fs)) {
        std::vector<std::shared_ptr<detail::FutureStateBase>> states;
        states.reserve(fs_.size());
        for (auto& f : fs_) states.push_back(f.state());
        q_ = detail::completion_queue(states, timeout);
    }
    bool has_next() const { return yielded_ < fs_.size(); }
    Task<T> next() {
        if (!has_next()) throw std::logic_error("as_completed: no future left");
        const std::size_t i = co_await detail::next_completed(q_);
        ++yielded_;
        if constexpr (std::is_void_v<T>)
            fs_[i].result();
        else
            co_return std::move(fs_[i].result());
    }

private:
    std::vector<Future<T>> fs_;
    std::shared_ptr<detail::CompletionQueue> q_;
    std::size_t yielded_ = 0;
};
template <class T>
AsCompleted<T> as_completed(std::vector<Future<T>> fs,
                            std::optional<double> timeout = std::nullopt) {
    return AsCompleted<T>(std::move(fs), timeout);
}

// shield(f): asyncio.shield. A future that follows `f`; cancelling it (or the task awaiting
// it) leaves `f` running. `co_await shield(f)` in a cancelled task raises CancelledError while
// `f` goes on.
template <class T>
Future<T> shield(Future<T> inner) {
    if (inner.done()) return inner;
    Future<T> outer(inner.get_loop());
    // The callback holds `inner`: a task's future drops its callbacks if its loop closes
    // under it, so this is no lasting cycle.
    inner.add_done_callback([in = inner, outer] {
        if (outer.done()) {
            if (!in.cancelled()) (void)in.exception();  // asyncio: marked retrieved
            return;
        }
        if (in.cancelled()) {
            outer.cancel();
        } else if (auto e = in.exception()) {
            outer.set_exception(std::move(e));
        } else if constexpr (std::is_void_v<T>) {
            outer.set_result();
        } else if constexpr (std::is_copy_constructible_v<T>) {
            outer.set_result(in.result());
        } else {
            outer.set_result(std::move(in.result()));
        }
    });
    return outer;
}
template <class T>
Future<T> shield(EventLoop& loop, Task<T> t) {
    return shield(loop.create_task(std::move(t)));
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
