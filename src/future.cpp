// SPDX-License-Identifier: Apache-2.0
// Future state: completion, cancellation and done callbacks scheduled on the loop.
#include <aioring/future.hpp>
#include <aioring/loop.hpp>

#include <stdexcept>

#include "src/loop_core.hpp"

namespace aioring::detail {

bool is_live_loop(const EventLoop* loop);

FutureStateBase::~FutureStateBase() {
    if (report_unretrieved && error_ && !retrieved_ && is_live_loop(loop_) && !loop_->is_closed()) {
        loop_->call_exception_handler(
            ExceptionContext{"Task exception was never retrieved", error_, nullptr});
    }
}

void FutureStateBase::check_pending(const char* what) const {
    if (status_ != Status::pending)
        throw std::logic_error(std::string("invalid state: ") + what + " on a done future");
}

void FutureStateBase::finish(Status s) {
    status_ = s;
    task_context = nullptr;
    for (auto& cb : callbacks_) loop_->core().post(std::move(cb));
    callbacks_.clear();
}

bool FutureStateBase::cancel(const std::string& msg) {
    if (status_ != Status::pending) return false;
    cancel_message_ = msg;
    if (task_context) {  // a task: it finishes (cancelled) once CancelledError has unwound it
        ++cancel_requests_;
        task_context->request_cancel();
        return true;
    }
    finish(Status::cancelled);
    return true;
}

unsigned FutureStateBase::uncancel() {
    if (cancel_requests_ > 0 && --cancel_requests_ == 0 && task_context)
        task_context->cancel_requested = false;
    return cancel_requests_;
}

void FutureStateBase::set_cancelled(const std::string& msg) {
    check_pending("set_cancelled");
    cancel_message_ = msg;
    finish(Status::cancelled);
}

void FutureStateBase::set_exception(std::exception_ptr e) {
    check_pending("set_exception");
    error_ = std::move(e);
    finish(Status::done);
}

void FutureStateBase::drop_callbacks() {
    auto dropped = std::move(callbacks_);
    callbacks_.clear();
}

void FutureStateBase::add_done_callback(Callback cb) {
    if (status_ != Status::pending)
        loop_->core().post(std::move(cb));
    else
        callbacks_.push_back(std::move(cb));
}

void FutureStateBase::rethrow_if_failed() {
    if (status_ == Status::pending) throw std::logic_error("invalid state: result is not set");
    if (status_ == Status::cancelled) throw CancelledError(cancel_message_);
    if (error_) {
        retrieved_ = true;
        std::rethrow_exception(error_);
    }
}

std::exception_ptr FutureStateBase::exception() {
    if (status_ == Status::pending) throw std::logic_error("invalid state: exception is not set");
    if (status_ == Status::cancelled) throw CancelledError(cancel_message_);
    retrieved_ = true;
    return error_;
}

}  // namespace aioring::detail

namespace aioring {

static std::string group_message(const std::string& m, std::size_t n) {
    return m + " (" + std::to_string(n) + (n == 1 ? " sub-exception)" : " sub-exceptions)");
}

ExceptionGroup::ExceptionGroup(const std::string& message, std::vector<std::exception_ptr> e)
    : std::runtime_error(group_message(message, e.size())), exceptions_(std::move(e)) {}

}  // namespace aioring
