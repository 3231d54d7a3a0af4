// Future state: completion, cancellation and done callbacks scheduled on the loop.
#include <aioring/future.hpp>
#include <aioring/loop.hpp>

#include <stdexcept>

#include "src/loop_core.hpp"

namespace aioring::detail {

bool is_live_loop(const EventLoop* loop);

FutureStateBase::~FutureStateBase() {
    if (report_unretrieved && error_ && !retrieved_ && is_live_loop(loop_) &&
        !loop_->is_closed()) {
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
    on_cancel.reset();
    for (auto& cb : callbacks_) loop_->core().post(std::move(cb));
    callbacks_.clear();
}

bool FutureStateBase::cancel() {
    if (status_ != Status::pending) return false;
    if (on_cancel) {  // a task: it finishes (cancelled) once CancelledError has unwound it
        on_cancel();
        return true;
    }
    finish(Status::cancelled);
    return true;
}

void FutureStateBase::set_exception(std::exception_ptr e) {
    check_pending("set_exception");
    error_ = std::move(e);
    finish(Status::done);
}

void FutureStateBase::add_done_callback(Callback cb) {
    if (status_ != Status::pending) loop_->core().post(std::move(cb));
    else callbacks_.push_back(std::move(cb));
}

void FutureStateBase::rethrow_if_failed() {
    if (status_ == Status::pending) throw std::logic_error("invalid state: result is not set");
    if (status_ == Status::cancelled) throw CancelledError();
    if (error_) {
        retrieved_ = true;
        std::rethrow_exception(error_);
    }
}

std::exception_ptr FutureStateBase::exception() {
    if (status_ == Status::pending) throw std::logic_error("invalid state: exception is not set");
    if (status_ == Status::cancelled) throw CancelledError();
    retrieved_ = true;
    return error_;
}

}  // namespace aioring::detail
