// SPDX-License-Identifier: Apache-2.0
// Task<T>: a lazy, move-only coroutine. Awaiting it runs it (symmetric transfer) and yields its
// value or rethrows its exception. EventLoop::create_task schedules one on the loop and returns
// a Future<T> whose cancel() throws CancelledError at the task's suspension point.
#pragma once

#include <aioring/future.hpp>

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

namespace aioring {

template <class T = void>
class [[nodiscard]] Task;

namespace detail {

template <class T>
struct TaskPromiseBase : PromiseBase {
    std::coroutine_handle<> continuation;
    std::exception_ptr error;

    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            auto c = h.promise().continuation;
            return c ? c : std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct TaskPromise : TaskPromiseBase<T> {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <class U>
    void return_value(U&& v) {
        value.emplace(std::forward<U>(v));
    }
    T take() {
        if (this->error) std::rethrow_exception(this->error);
        return std::move(*value);
    }
};

template <>
struct TaskPromise<void> : TaskPromiseBase<void> {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void take() {
        if (this->error) std::rethrow_exception(this->error);
    }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
public:
    using promise_type = detail::TaskPromise<T>;
    using value_type = T;
    using handle_type = std::coroutine_handle<promise_type>;

    Task() = default;
    explicit Task(handle_type h) : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            if (h_) h_.destroy();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    ~Task() {
        if (h_) h_.destroy();
    }
    bool valid() const { return static_cast<bool>(h_); }
    handle_type handle() const { return h_; }

    struct Awaiter {
        handle_type h;
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
            h.promise().continuation = parent;
            h.promise().ctx = detail::context_of(parent);
            return h;
        }
        T await_resume() { return h.promise().take(); }
    };
    Awaiter operator co_await() && { return Awaiter{h_}; }

    handle_type release() { return std::exchange(h_, {}); }

private:
    handle_type h_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
    return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
    return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

// The coroutine a root task runs in: owns the TaskContext, stores the result in a future and
// destroys itself at the end. The loop tracks it so a loop closed with tasks pending frees them.
struct RootPromise;
struct RootCoroutine {
    using promise_type = RootPromise;
    std::coroutine_handle<RootPromise> h;
};
void root_started(EventLoop& loop, std::coroutine_handle<> h);
void root_finished(EventLoop& loop, std::coroutine_handle<> h);
struct RootPromise : PromiseBase {
    TaskContext context;
    EventLoop* loop = nullptr;
    RootPromise() { ctx = &context; }
    // A root destroyed while pending (its loop closed) leaves no pointer to it in its future.
    ~RootPromise() {
        if (context.task && context.task->task_context == &context) {
            context.task->task_context = nullptr;
            context.task->drop_callbacks();
        }
    }
    RootCoroutine get_return_object() noexcept {
        return {std::coroutine_handle<RootPromise>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept {
        root_finished(*loop, std::coroutine_handle<RootPromise>::from_promise(*this));
        return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // root bodies catch everything
};

// Reads the awaiting coroutine's context without suspending.
struct ContextAwaiter {
    ContextAwaiter() = default;
    TaskContext* ctx = nullptr;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
        ctx = context_of(h);
        return false;
    }
    TaskContext* await_resume() const noexcept { return ctx; }
};

template <class T>
RootCoroutine run_root(Task<T> task, std::shared_ptr<FutureState<T>> fs) {
    try {
        // A task cancelled before it started never runs its body (asyncio).
        if (TaskContext* c = co_await ContextAwaiter(); c->take_cancel()) throw c->error();
        if constexpr (std::is_void_v<T>) {
            co_await std::move(task);
            if (!fs->done()) fs->set_result();
        } else {
            auto v = co_await std::move(task);
            if (!fs->done()) fs->set_result(std::move(v));
        }
    } catch (const CancelledError& e) {
        if (!fs->done()) fs->set_cancelled(e.message());
    } catch (...) {
        if (!fs->done()) fs->set_exception(std::current_exception());
    }
}

// Schedules `task` on `loop` and returns the future of its result.
void schedule_root(EventLoop& loop, std::coroutine_handle<> h);
template <class T>
Future<T> spawn(EventLoop& loop, Task<T> task) {
    auto fs = std::make_shared<FutureState<T>>(loop);
    fs->report_unretrieved = true;
    RootCoroutine root = run_root<T>(std::move(task), fs);
    root.h.promise().loop = &loop;
    TaskContext* ctx = &root.h.promise().context;
    ctx->loop = &loop;
    ctx->task = fs.get();
    fs->task_context = ctx;
    schedule_root(loop, root.h);
    return Future<T>(std::move(fs));
}

}  // namespace detail
}  // namespace aioring
