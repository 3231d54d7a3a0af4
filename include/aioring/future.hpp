// SPDX-License-Identifier: Apache-2.0
// Future<T>: asyncio's Future for one loop. Done callbacks run from the loop, never inline,
// and a coroutine awaiting it resumes from the loop too. Cancelling a task cancels the future
// it awaits.
#pragma once

#include <aioring/callback.hpp>
#include <aioring/error.hpp>

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace aioring {

class EventLoop;

namespace detail {

class FutureStateBase;

// Shared by a root task and every Task it awaits: the cancel request and the way to cancel
// what the innermost task is suspended on.
struct TaskContext {
    bool cancel_requested = false;
    Callback cancel_current;
    // The same for the common case, cheaper to set and clear on every suspension: a function
    // and its argument (a wait list's Waiter). At most one of the two is set.
    void (*cancel_fn)(void*) = nullptr;
    void* cancel_arg = nullptr;
    EventLoop* loop = nullptr;        // the loop the root task runs on
    FutureStateBase* task = nullptr;  // the root task's future (cancel count and message)
    // Takes the pending cancel request, if any (asyncio: one CancelledError per cancel()).
    bool take_cancel() { return std::exchange(cancel_requested, false); }
    // Marks the task cancelled and cancels what it is suspended on, if anything.
    void request_cancel() {
        cancel_requested = true;
        if (cancel_fn) {
            std::exchange(cancel_fn, nullptr)(cancel_arg);
        } else if (cancel_current) {
            Callback c = std::move(cancel_current);
            c();
        }
    }
    // The CancelledError to throw at the suspension point (with Future::cancel's message).
    CancelledError error() const;
};

// Base of our promise types, so that awaiters can find the task's context.
struct PromiseBase {
    TaskContext* ctx = nullptr;
};

template <class P>
TaskContext* context_of(std::coroutine_handle<P> h) {
    if constexpr (std::is_base_of_v<PromiseBase, P>)
        return h.promise().ctx;
    else
        return nullptr;
}

class FutureStateBase {
public:
    explicit FutureStateBase(EventLoop& loop) : loop_(&loop) {}
    ~FutureStateBase();
    FutureStateBase(const FutureStateBase&) = delete;
    FutureStateBase& operator=(const FutureStateBase&) = delete;

    enum class Status : unsigned char { pending, done, cancelled };
    bool done() const { return status_ != Status::pending; }
    bool cancelled() const { return status_ == Status::cancelled; }
    // Done with an exception (without marking it retrieved).
    bool has_exception() const { return error_ != nullptr; }
    EventLoop& loop() const { return *loop_; }

    // A task's future: counts the request (cancelling()), and the task finishes (cancelled)
    // once CancelledError has unwound it. Any other future finishes cancelled at once.
    bool cancel(const std::string& msg = std::string());
    // asyncio's Task.cancelling()/uncancel(): the pending cancel requests. Dropping the count
    // to 0 withdraws a request not yet delivered (Python 3.13).
    unsigned cancelling() const { return cancel_requests_; }
    unsigned uncancel();
    const std::string& cancel_message() const { return cancel_message_; }
    // A task's end by CancelledError.
    void set_cancelled(const std::string& msg);
    void set_exception(std::exception_ptr e);
    void add_done_callback(Callback cb);
    // Drops the done callbacks of a future that will never finish (its task was destroyed
    // with its loop), breaking the cycles of callbacks that hold their own future.
    void drop_callbacks();
    // Throws the stored exception or CancelledError; marks the exception retrieved.
    void rethrow_if_failed();
    std::exception_ptr exception();

    // A task's future, while the task runs: cancel() asks the task instead of finishing.
    TaskContext* task_context = nullptr;
    // Report an exception nobody retrieved to the loop's exception handler (tasks).
    bool report_unretrieved = false;

protected:
    void check_pending(const char* what) const;
    void finish(Status s);

private:
    EventLoop* loop_;
    std::vector<Callback> callbacks_;
    std::exception_ptr error_;
    std::string cancel_message_;
    unsigned cancel_requests_ = 0;
    Status status_ = Status::pending;
    bool retrieved_ = false;
};

inline CancelledError TaskContext::error() const {
    return task ? CancelledError(task->cancel_message()) : CancelledError();
}

template <class T>
class FutureState : public FutureStateBase {
public:
    using FutureStateBase::FutureStateBase;
    template <class U>
    void set_result(U&& v) {
        check_pending("set_result");
        value_.emplace(std::forward<U>(v));
        finish(Status::done);
    }
    T& value() {
        rethrow_if_failed();
        return *value_;
    }

private:
    std::optional<T> value_;
};

template <>
class FutureState<void> : public FutureStateBase {
public:
    using FutureStateBase::FutureStateBase;
    void set_result() {
        check_pending("set_result");
        finish(Status::done);
    }
    void value() { rethrow_if_failed(); }
};

}  // namespace detail

template <class T = void>
class Future {
public:
    using State = detail::FutureState<T>;
    Future() = default;
    explicit Future(EventLoop& loop) : s_(std::make_shared<State>(loop)) {}
    explicit Future(std::shared_ptr<State> s) : s_(std::move(s)) {}

    bool valid() const { return s_ != nullptr; }
    bool done() const { return s_->done(); }
    bool cancelled() const { return s_->cancelled(); }
    // Cancels a pending future (or asks its task to cancel); false if already done. The
    // message comes with the CancelledError (asyncio's cancel(msg)).
    bool cancel(const std::string& msg = std::string()) const { return s_->cancel(msg); }
    // A task's cancel requests not yet withdrawn (asyncio's Task.cancelling()/uncancel()).
    unsigned cancelling() const { return s_->cancelling(); }
    unsigned uncancel() const { return s_->uncancel(); }
    template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
    void set_result(U v) const {
        s_->set_result(std::move(v));
    }
    template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
    void set_result() const {
        s_->set_result();
    }
    void set_exception(std::exception_ptr e) const { s_->set_exception(std::move(e)); }
    // The value; throws the future's exception, CancelledError, or std::logic_error if pending.
    decltype(auto) result() const { return s_->value(); }
    std::exception_ptr exception() const { return s_->exception(); }
    // `cb` runs from the loop once the future is done (at once-scheduled if it already is).
    void add_done_callback(Callback cb) const { s_->add_done_callback(std::move(cb)); }
    EventLoop& get_loop() const { return s_->loop(); }
    const std::shared_ptr<State>& state() const { return s_; }

    struct Awaiter {
        std::shared_ptr<State> s;
        detail::TaskContext* ctx = nullptr;
        bool await_ready() const noexcept { return s->done(); }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            ctx = detail::context_of(h);
            s->add_done_callback([h]() mutable { h.resume(); });
            if (ctx) {
                ctx->cancel_current = [st = s] { st->cancel(); };
                if (ctx->cancel_requested) s->cancel();  // cancelled before it suspended
            }
        }
        decltype(auto) await_resume() {
            if (ctx) {
                ctx->cancel_current.reset();
                if (ctx->take_cancel()) throw ctx->error();
            }
            if constexpr (std::is_void_v<T>)
                s->value();
            else
                return std::move(s->value());
        }
    };
    Awaiter operator co_await() const { return Awaiter{s_}; }

private:
    std::shared_ptr<State> s_;
};

}  // namespace aioring
