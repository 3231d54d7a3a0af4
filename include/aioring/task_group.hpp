// SPDX-License-Identifier: Apache-2.0
// Structured concurrency, as asyncio 3.11+ has it: TaskGroup (children awaited at the end of
// the group, the first failure cancels the rest) and timeout scopes (timeout/timeout_at around
// several awaits). C++ has no `async with`: the block is a Task that the group or the scope
// runs, `co_await tg.run(body(tg))`, `co_await timeout(5.0, body())`.
#pragma once

#include <aioring/coro.hpp>
#include <aioring/error.hpp>
#include <aioring/future.hpp>
#include <aioring/task.hpp>

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace aioring {

namespace detail {

struct GroupState;
// The group's parts out of line (src/task_group.cpp).
EventLoop& group_loop(GroupState& g);  // throws std::logic_error when it cannot take tasks
void group_add(const std::shared_ptr<GroupState>& g, std::shared_ptr<FutureStateBase> task);
void group_enter(GroupState& g, TaskContext& parent);
void group_exit_begin(GroupState& g, std::exception_ptr body_error);
bool group_exit_ready(const GroupState& g);
void group_exit_suspend(GroupState& g, std::coroutine_handle<> h);
void group_exit_finish(GroupState& g);  // throws what the group raises
void group_abandon(GroupState& g);
std::size_t group_size(const GroupState& g);

struct GroupEnterAwaiter {
    explicit GroupEnterAwaiter(GroupState& s) : g(s) {}
    GroupState& g;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        group_enter(g, require_context(h, "TaskGroup"));
        return false;
    }
    void await_resume() const noexcept {}
};

// Waits until every child is done. The parent's cancellation is absorbed here: it aborts the
// group (once), and the group decides at the end whether CancelledError propagates.
struct GroupExitAwaiter {
    explicit GroupExitAwaiter(GroupState& s) : g(s) {}
    GroupState& g;
    bool await_ready() const { return group_exit_ready(g); }
    void await_suspend(std::coroutine_handle<> h) { group_exit_suspend(g, h); }
    void await_resume() const { group_exit_finish(g); }
};

}  // namespace detail

// TaskGroup: asyncio.TaskGroup. `co_await tg.run(body)` is `async with TaskGroup() as tg:`
// around `body`, a Task (usually a coroutine taking `TaskGroup&`) that creates children with
// create_task. run() returns once the body and every child are done:
// - the first child to fail (raise anything but CancelledError) cancels the other children and
//   the body (the parent task is cancelled, then uncancelled at the end);
// - the group then raises ExceptionGroup with every error the children and the body raised;
// - cancelling the parent cancels the children, waits for them, and raises CancelledError
//   (unless some child failed: errors take priority, as in Python 3.13).
// wait() is run() with an empty body, for tasks created beforehand (give the constructor the
// loop then). A group is entered once. Destroying a group whose children still run (its
// frame destroyed, or the body never awaited) cancels them without waiting: C++ has no async
// destructor.
class TaskGroup {
public:
    TaskGroup();
    explicit TaskGroup(EventLoop& loop);
    ~TaskGroup();
    TaskGroup(const TaskGroup&) = delete;
    TaskGroup& operator=(const TaskGroup&) = delete;

    // Starts `t` as a task of the group. std::logic_error when the group has no loop yet, is
    // shutting down (aborting) or has finished.
    template <class T>
    Future<T> create_task(Task<T> t) {
        EventLoop& loop = detail::group_loop(*g_);
        Future<T> f = loop.create_task(std::move(t));
        detail::group_add(g_, f.state());
        return f;
    }
    // Children not done yet.
    std::size_t size() const { return detail::group_size(*g_); }

    template <class T>
    Task<T> run(Task<T> body) {
        co_await detail::GroupEnterAwaiter(*g_);
        std::exception_ptr error;
        std::optional<detail::gather_value_t<T>> value;
        try {
            if constexpr (std::is_void_v<T>) {
                co_await std::move(body);
                value.emplace();
            } else {
                value.emplace(co_await std::move(body));
            }
        } catch (...) {
            error = std::current_exception();
        }
        detail::group_exit_begin(*g_, error);
        co_await detail::GroupExitAwaiter(*g_);
        if constexpr (!std::is_void_v<T>) co_return std::move(*value);
    }
    Task<void> wait();

private:
    std::shared_ptr<detail::GroupState> g_;
};

class Timeout;
namespace detail {
void enter_timeout(Timeout& t, TaskContext& ctx);
struct TimeoutEnterAwaiter {
    explicit TimeoutEnterAwaiter(Timeout& t) : scope(t) {}
    Timeout& scope;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        enter_timeout(scope, require_context(h, "a timeout scope"));
        return false;
    }
    void await_resume() const noexcept {}
};
}  // namespace detail

// Timeout: asyncio.Timeout, the scope of `async with asyncio.timeout(delay)`. run(body) awaits
// `body` in the current task; when the deadline passes first the task is cancelled, and the
// CancelledError that comes out of the body becomes TimeoutError. Only the scope's own
// cancellation turns into TimeoutError: a cancel from elsewhere (counted by the task's
// cancelling()) stays CancelledError, and of nested scopes that expire together only the
// outermost raises TimeoutError. A deadline at or before now fires on the next loop turn;
// nullopt never fires. Make one with timeout(delay) (counted from entry into run(); asyncio
// counts from the call) or timeout_at(when), and keep it named: `Timeout cm = timeout(5.0);
// co_await cm.run(body(cm));` lets the body reschedule it. A scope is entered once.
class Timeout {
public:
    Timeout(const Timeout&) = delete;
    Timeout& operator=(const Timeout&) = delete;
    ~Timeout() { timer_.cancel(); }

    // The deadline (loop time); before entry, timeout_at's, or nullopt.
    std::optional<double> when() const { return when_; }
    // Moves the deadline to a loop time (nullopt: never). std::logic_error once the scope
    // expired or exited.
    void reschedule(std::optional<double> when);
    // The deadline passed (the scope cancelled its task).
    bool expired() const { return state_ == State::expiring || state_ == State::expired; }

    template <class T>
    Task<T> run(Task<T> body) {
        co_await detail::TimeoutEnterAwaiter(*this);
        bool cancelled = false;
        std::exception_ptr error;
        std::optional<detail::gather_value_t<T>> value;
        try {
            if constexpr (std::is_void_v<T>) {
                co_await std::move(body);
                value.emplace();
            } else {
                value.emplace(co_await std::move(body));
            }
        } catch (const CancelledError&) {
            cancelled = true;
            error = std::current_exception();
        } catch (...) {
            error = std::current_exception();
        }
        if (exit(cancelled)) throw TimeoutError();
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<T>) co_return std::move(*value);
    }

private:
    friend Timeout timeout(std::optional<double> delay);
    friend Timeout timeout_at(std::optional<double> when);
    friend void detail::enter_timeout(Timeout& t, detail::TaskContext& ctx);
    enum class State : unsigned char { created, entered, expiring, expired, exited };
    Timeout(std::optional<double> t, bool relative) : when_(t), relative_(relative) {}
    void enter(detail::TaskContext& ctx);
    bool exit(bool cancelled);  // true: raise TimeoutError
    void arm();
    void on_timeout();

    std::optional<double> when_;
    bool relative_;
    State state_ = State::created;
    unsigned cancelling_ = 0;
    TimerHandle timer_;
    detail::TaskContext* ctx_ = nullptr;
};

// A scope whose deadline is `delay` seconds after its entry (nullopt: none until rescheduled).
inline Timeout timeout(std::optional<double> delay) { return Timeout(delay, delay.has_value()); }
// A scope whose deadline is the loop time `when` (nullopt: none).
inline Timeout timeout_at(std::optional<double> when) { return Timeout(when, false); }

// `co_await timeout(delay, body())`: `body` under a scope of its own; TimeoutError if it
// expires first.
template <class T>
Task<T> timeout(std::optional<double> delay, Task<T> body) {
    Timeout scope = timeout(delay);
    if constexpr (std::is_void_v<T>)
        co_await scope.run(std::move(body));
    else
        co_return co_await scope.run(std::move(body));
}
// `co_await timeout_at(when, body())`: the same with a deadline in loop time.
template <class T>
Task<T> timeout_at(std::optional<double> when, Task<T> body) {
    Timeout scope = timeout_at(when);
    if constexpr (std::is_void_v<T>)
        co_await scope.run(std::move(body));
    else
        co_return co_await scope.run(std::move(body));
}

}  // namespace aioring
