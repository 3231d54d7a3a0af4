// SPDX-License-Identifier: Apache-2.0
// TaskGroup's bookkeeping (asyncio's taskgroups.py, step by step) and the timeout scope
// (asyncio's timeouts.py).
#include <aioring/task_group.hpp>

#include <algorithm>
#include <cassert>
#include <stdexcept>

#include "src/loop_core.hpp"

namespace aioring::detail {

struct GroupState {
    EventLoop* loop = nullptr;
    TaskContext* parent = nullptr;  // set on entry; null once the group is gone
    std::vector<std::shared_ptr<FutureStateBase>> tasks;  // children not done yet
    std::vector<std::exception_ptr> errors;
    std::exception_ptr body_error;
    std::coroutine_handle<> waiter;  // the parent, suspended at the end of the group
    bool entered = false;
    bool exiting = false;
    bool aborting = false;
    bool parent_cancel_requested = false;
    bool propagate_cancel = false;
    bool abandoned = false;
};

static void abort_group(GroupState& g) {
    g.aborting = true;
    // A cancel may finish a future (a task not started yet), which removes it from the list
    // only from the done callback, on the loop: iterating a copy is not needed.
    for (auto& t : g.tasks)
        if (!t->done()) t->cancel();
}

EventLoop& group_loop(GroupState& g) {
    if (g.abandoned || (g.exiting && g.tasks.empty()))
        throw std::logic_error("TaskGroup is finished");
    if (g.aborting) throw std::logic_error("TaskGroup is shutting down");
    if (g.loop == nullptr)
        throw std::logic_error(
            "TaskGroup has not been entered (construct it with the loop to create tasks first)");
    return *g.loop;
}

static void on_task_done(GroupState& g, FutureStateBase* t) {
    auto it =
        std::find_if(g.tasks.rbegin(), g.tasks.rend(), [t](const auto& p) { return p.get() == t; });
    assert(it != g.tasks.rend());
    std::shared_ptr<FutureStateBase> keep = std::move(*it);
    *it = std::move(g.tasks.back());
    g.tasks.pop_back();
    if (g.abandoned) return;  // nobody will see it: an error goes unretrieved (reported)
    if (!t->cancelled() && t->has_exception()) {
        g.errors.push_back(t->exception());
        if (!g.aborting && !g.parent_cancel_requested) {
            // Abort whatever the group runs: the children and the body (the parent is
            // cancelled, and uncancelled at the end).
            abort_group(g);
            if (g.parent && g.parent->task) {
                g.parent_cancel_requested = true;
                g.parent->task->cancel();
            }
        }
    }
    if (g.waiter && g.tasks.empty()) post_resume(*g.loop, std::exchange(g.waiter, {}));
}

void group_add(const std::shared_ptr<GroupState>& g, std::shared_ptr<FutureStateBase> task) {
    FutureStateBase* t = task.get();
    g->tasks.push_back(std::move(task));
    t->add_done_callback([g, t] { on_task_done(*g, t); });
}

void group_enter(GroupState& g, TaskContext& parent) {
    if (g.entered) throw std::logic_error("TaskGroup has already been entered");
    if (g.loop && g.loop != parent.loop)
        throw std::logic_error("TaskGroup entered from a task of another loop");
    g.entered = true;
    g.parent = &parent;
    g.loop = parent.loop;
}

void group_exit_begin(GroupState& g, std::exception_ptr body_error) {
    g.exiting = true;
    if (body_error) {
        try {
            std::rethrow_exception(body_error);
        } catch (const CancelledError&) {
            g.propagate_cancel = true;
        } catch (...) {
            g.body_error = body_error;
        }
        if (!g.aborting) abort_group(g);
    }
}

bool group_exit_ready(const GroupState& g) { return g.tasks.empty(); }

// The parent's cancel while it waits at the end: absorbed (asyncio catches the CancelledError
// of `await self._on_completed_fut` and loops), and it aborts the group if nothing did.
static void install_exit_cancel(GroupState& g) {
    g.parent->cancel_current = [gp = &g] {
        gp->parent->cancel_requested = false;
        if (!gp->aborting) {
            gp->propagate_cancel = true;
            abort_group(*gp);
        }
        if (gp->waiter) install_exit_cancel(*gp);
    };
}

void group_exit_suspend(GroupState& g, std::coroutine_handle<> h) {
    g.waiter = h;
    if (g.parent->cancel_requested) {
        g.parent->cancel_requested = false;
        if (!g.aborting) {
            g.propagate_cancel = true;
            abort_group(g);
        }
    }
    install_exit_cancel(g);
}

void group_exit_finish(GroupState& g) {
    g.waiter = {};
    g.parent->cancel_current.reset();
    assert(g.tasks.empty());
    bool propagate = g.propagate_cancel;
    FutureStateBase* task = g.parent->task;
    if (g.parent_cancel_requested && task && task->uncancel() == 0) propagate = false;
    if (propagate && g.errors.empty()) throw g.parent->error();
    if (g.body_error) g.errors.push_back(g.body_error);
    if (!g.errors.empty()) {
        // Cancelled from outside meanwhile: keep the request pending for the parent's next
        // await (asyncio uncancels and cancels again, which keeps the count).
        if (task && task->cancelling() > 0) g.parent->cancel_requested = true;
        throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(g.errors));
    }
}

void group_abandon(GroupState& g) {
    if (g.waiter) g.parent->cancel_current.reset();  // a frame destroyed while suspended
    g.abandoned = true;
    g.parent = nullptr;
    g.waiter = {};
    for (auto& t : g.tasks)
        if (!t->done()) t->cancel();
}

std::size_t group_size(const GroupState& g) { return g.tasks.size(); }

}  // namespace aioring::detail

namespace aioring {

TaskGroup::TaskGroup() : g_(std::make_shared<detail::GroupState>()) {}
TaskGroup::TaskGroup(EventLoop& loop) : TaskGroup() { g_->loop = &loop; }
TaskGroup::~TaskGroup() { detail::group_abandon(*g_); }

Task<void> TaskGroup::wait() {
    co_await detail::GroupEnterAwaiter(*g_);
    detail::group_exit_begin(*g_, nullptr);
    co_await detail::GroupExitAwaiter(*g_);
}

// ---- Timeout

void detail::enter_timeout(Timeout& t, detail::TaskContext& ctx) { t.enter(ctx); }

void Timeout::enter(detail::TaskContext& ctx) {
    if (state_ != State::created) throw std::logic_error("Timeout has already been entered");
    ctx_ = &ctx;
    state_ = State::entered;
    cancelling_ = ctx.task ? ctx.task->cancelling() : 0;
    if (relative_ && when_) when_ = ctx.loop->time() + *when_;
    arm();
}

void Timeout::reschedule(std::optional<double> when) {
    if (state_ == State::expiring || state_ == State::expired)
        throw std::logic_error("Cannot change state of expiring Timeout");
    if (state_ == State::exited) throw std::logic_error("Timeout has exited");
    when_ = when;
    relative_ = false;
    if (state_ == State::entered) arm();
}

void Timeout::arm() {
    timer_.cancel();
    timer_ = TimerHandle();
    if (!when_) return;
    EventLoop& loop = *ctx_->loop;
    if (*when_ <= loop.time())
        timer_ = TimerHandle(loop.call_at(loop.time(), [this] { on_timeout(); }));
    else
        timer_ = loop.call_at(*when_, [this] { on_timeout(); });
}

void Timeout::on_timeout() {
    state_ = State::expiring;
    if (ctx_->task)
        ctx_->task->cancel();
    else
        ctx_->request_cancel();
}

bool Timeout::exit(bool cancelled) {
    timer_.cancel();
    if (state_ == State::expiring) {
        state_ = State::expired;
        const unsigned left = ctx_->task ? ctx_->task->uncancel() : 0;
        return left <= cancelling_ && cancelled;
    }
    state_ = State::exited;
    return false;
}

}  // namespace aioring
