// SPDX-License-Identifier: Apache-2.0
// Awaiting one io_uring operation from a coroutine: the op lives in the awaiter (in the
// coroutine frame), the coroutine resumes from the completion, and cancelling the task submits
// an async cancel for the op.
#pragma once

#include <aioring/future.hpp>

#include <coroutine>

#include "src/loop_core.hpp"

namespace aioring::detail {

template <class Prep>
class OpAwaiter final : public uring::Op {
public:
    OpAwaiter(LoopCore& core, Prep prep) : core_(core), prep_(std::move(prep)) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        h_ = h;
        ctx_ = context_of(h);
        io_uring_sqe* s = core_.ring.sqe();
        prep_(s);
        io_uring_sqe_set_data(s, static_cast<uring::Op*>(this));
        if (ctx_) {
            ctx_->cancel_current = [this] { cancel(); };
            if (ctx_->cancel_requested) cancel();
        }
    }
    // The kernel's result; throws CancelledError if the task was cancelled meanwhile.
    int await_resume() {
        if (ctx_) {
            ctx_->cancel_current.reset();
            if (ctx_->take_cancel()) throw CancelledError();
        }
        return res_;
    }
    void complete(int res, unsigned) override {
        res_ = res;
        h_.resume();
    }

private:
    void cancel() {
        io_uring_sqe* s = core_.ring.sqe();
        io_uring_prep_cancel(s, static_cast<uring::Op*>(this), 0);
        uring::Ring::ignore_result(s);
    }
    LoopCore& core_;
    Prep prep_;
    std::coroutine_handle<> h_;
    TaskContext* ctx_ = nullptr;
    int res_ = 0;
};

template <class Prep>
OpAwaiter<Prep> await_op(LoopCore& core, Prep prep) {
    return OpAwaiter<Prep>(core, std::move(prep));
}

// Closes an fd unless released.
struct FdGuard {
    int fd = -1;
    explicit FdGuard(int f) : fd(f) {}
    FdGuard(const FdGuard&) = delete;
    FdGuard& operator=(const FdGuard&) = delete;
    ~FdGuard();
    int release() { return std::exchange(fd, -1); }
};

}  // namespace aioring::detail
