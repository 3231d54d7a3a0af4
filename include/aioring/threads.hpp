// SPDX-License-Identifier: Apache-2.0
// Threads: run_in_executor/to_thread run blocking work on the loop's bounded worker pool, and
// run_coroutine_threadsafe hands a coroutine to a loop from another thread and returns a
// future that thread can block on (asyncio's concurrent.futures.Future).
#pragma once

#include <aioring/coro.hpp>
#include <aioring/error.hpp>
#include <aioring/future.hpp>
#include <aioring/loop.hpp>
#include <aioring/task.hpp>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace aioring {

namespace detail {
// Runs `job` on one of the loop's worker threads (started on demand, at most
// executor_workers(loop) of them; jobs queue behind them). Throws LoopError on a closed loop.
void executor_submit(EventLoop& loop, Callback job);
// Hands `cb` to the loop thread; false if the loop closed meanwhile.
bool post_threadsafe(EventLoop& loop, Callback cb);
}  // namespace detail

// The pool's bound: Python's ThreadPoolExecutor default, min(32, cores + 4), unless set.
unsigned executor_workers(EventLoop& loop);
void set_executor_workers(EventLoop& loop, unsigned n);  // n >= 1; affects threads not started

// loop.run_in_executor(None, f): `f()` on a worker thread; the future completes on the loop
// with its result or exception. Cancelling the future does not stop `f` (a thread cannot be
// interrupted), its result is then dropped. Closing the loop waits for running jobs and drops
// queued ones.
template <class F, class R = std::invoke_result_t<F&>>
Future<R> run_in_executor(EventLoop& loop, F f) {
    auto st = std::make_shared<detail::FutureState<R>>(loop);
    detail::executor_submit(loop, [f = std::move(f), st, &loop]() mutable {
        std::exception_ptr e;
        std::optional<detail::gather_value_t<R>> v;
        try {
            if constexpr (std::is_void_v<R>) {
                f();
                v.emplace();
            } else {
                v.emplace(f());
            }
        } catch (...) {
            e = std::current_exception();
        }
        // The state goes to the loop thread with the outcome, so that its last reference (and
        // the exception or value in it) is dropped there, never on this worker.
        detail::post_threadsafe(loop,
                                [st = std::move(st), e = std::move(e), v = std::move(v)]() mutable {
                                    if (st->done()) return;  // cancelled meanwhile
                                    if (e)
                                        st->set_exception(e);
                                    else if constexpr (std::is_void_v<R>)
                                        st->set_result();
                                    else
                                        st->set_result(std::move(*v));
                                });
    });
    return Future<R>(std::move(st));
}

// asyncio.to_thread(f): `co_await to_thread(f)` runs f() on the loop's pool.
template <class F, class R = std::invoke_result_t<F&>>
Task<R> to_thread(F f) {
    EventLoop& loop = co_await get_running_loop();
    Future<R> fut = run_in_executor(loop, std::move(f));
    if constexpr (std::is_void_v<R>)
        co_await fut;
    else
        co_return co_await fut;
}

// A future completed on a loop and read from any thread (concurrent.futures.Future).
template <class T>
class ConcurrentFuture {
public:
    struct State {
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
        bool cancelled = false;
        bool cancel_requested = false;
        std::optional<detail::gather_value_t<T>> value;
        std::exception_ptr error;
        std::weak_ptr<detail::FutureState<T>> task;  // loop thread only
        EventLoop* loop = nullptr;

        void finish(std::optional<detail::gather_value_t<T>> v, std::exception_ptr e, bool c) {
            {
                std::lock_guard lock(m);
                if (done) return;
                done = true;
                cancelled = c;
                value = std::move(v);
                error = std::move(e);
            }
            cv.notify_all();
        }
    };

    ConcurrentFuture() = default;
    explicit ConcurrentFuture(std::shared_ptr<State> s) : s_(std::move(s)) {}

    bool done() const {
        std::lock_guard lock(s_->m);
        return s_->done;
    }
    bool cancelled() const {
        std::lock_guard lock(s_->m);
        return s_->cancelled;
    }
    // Asks the loop to cancel the task; false once done. The future is cancelled once the
    // task has unwound (if it lets itself be cancelled).
    bool cancel() const {
        {
            std::lock_guard lock(s_->m);
            if (s_->done) return false;
            s_->cancel_requested = true;
        }
        detail::post_threadsafe(*s_->loop, [s = s_] {
            if (auto t = s->task.lock()) t->cancel();
        });
        return true;
    }
    // Blocks until done (at most `timeout` seconds, else TimeoutError); the result, the
    // coroutine's exception, or CancelledError. Never call it from the loop's own thread.
    decltype(auto) result(std::optional<double> timeout = std::nullopt) const {
        std::unique_lock lock(s_->m);
        auto is_done = [this] { return s_->done; };
        if (timeout) {
            if (!s_->cv.wait_for(lock, std::chrono::duration<double>(*timeout), is_done))
                throw TimeoutError();
        } else {
            s_->cv.wait(lock, is_done);
        }
        if (s_->cancelled) throw CancelledError();
        if (s_->error) std::rethrow_exception(s_->error);
        if constexpr (!std::is_void_v<T>) return (*s_->value);
    }

private:
    std::shared_ptr<State> s_;
};

namespace detail {
// Owned by the loop side; if the loop drops the coroutine unfinished (closed), the future
// fails with LoopError instead of blocking its reader forever.
template <class T>
struct ConcurrentOwner {
    std::shared_ptr<typename ConcurrentFuture<T>::State> s;
    explicit ConcurrentOwner(std::shared_ptr<typename ConcurrentFuture<T>::State> st)
        : s(std::move(st)) {}
    ConcurrentOwner(ConcurrentOwner&&) noexcept = default;
    ConcurrentOwner& operator=(ConcurrentOwner&&) = delete;
    ~ConcurrentOwner() {
        if (s)
            s->finish(std::nullopt,
                      std::make_exception_ptr(
                          LoopError("event loop closed before the coroutine finished")),
                      false);
    }
};
}  // namespace detail

// asyncio.run_coroutine_threadsafe(coro, loop): schedules `coro` on `loop` from any thread.
// LoopError if the loop is closed.
template <class T>
ConcurrentFuture<T> run_coroutine_threadsafe(Task<T> coro, EventLoop& loop) {
    using State = typename ConcurrentFuture<T>::State;
    auto cs = std::make_shared<State>();
    cs->loop = &loop;
    auto start = [owner = detail::ConcurrentOwner<T>(cs), t = std::move(coro), &loop]() mutable {
        auto s = owner.s;
        {
            std::lock_guard lock(s->m);
            if (s->cancel_requested) {
                owner.s.reset();
                s->done = true;
                s->cancelled = true;
                s->cv.notify_all();
                return;
            }
        }
        Future<T> f = loop.create_task(std::move(t));
        s->task = f.state();
        // The callback holds the task's future, which drops it if the loop closes first.
        f.add_done_callback([owner = std::move(owner), done = f]() mutable {
            auto s2 = std::exchange(owner.s, nullptr);
            if (done.cancelled()) {
                s2->finish(std::nullopt, nullptr, true);
            } else if (auto e = done.exception()) {
                s2->finish(std::nullopt, e, false);
            } else if constexpr (std::is_void_v<T>) {
                s2->finish(std::monostate{}, nullptr, false);
            } else {
                s2->finish(std::move(done.result()), nullptr, false);
            }
        });
    };
    if (!detail::post_threadsafe(loop, std::move(start))) throw LoopError("Event loop is closed");
    return ConcurrentFuture<T>(std::move(cs));
}

}  // namespace aioring
