// SPDX-License-Identifier: Apache-2.0
// The coroutine layer's out-of-line parts: wait lists (resumption through the loop's ready
// queue, cancellation by unlinking) and gather's wait.
#include <aioring/coro.hpp>

#include <cassert>
#include <deque>
#include <stdexcept>
#include <string>

#include "src/loop_core.hpp"

namespace aioring::detail {

void not_in_task(const char* what) {
    throw std::logic_error(std::string(what) +
                           " must be awaited from a task (create_task, run_until_complete, run)");
}

void post_resume(EventLoop& loop, std::coroutine_handle<> h) {
    loop.core().post([h]() mutable { h.resume(); });
}

void Waiter::detach() {
    list->unlink(*this);
    if (ctx->cancel_arg == this) ctx->cancel_fn = nullptr;
}

void Waiter::cancel(void* p) {
    auto* w = static_cast<Waiter*>(p);
    if (w->list == nullptr) return;  // already woken: its resumption is on its way
    w->list->unlink(*w);
    post_resume(*w->ctx->loop, w->h);
}

WaitList::~WaitList() {
    while (head_) unlink(*head_);
}

bool WaitList::wake_one() {
    Waiter* w = take_one();
    if (w == nullptr) return false;
    post_resume(*w->ctx->loop, w->h);
    return true;
}

void WaitList::wake_all() {
    while (wake_one()) {
    }
}

static bool failed(const FutureStateBase& s) { return s.cancelled() || s.has_exception(); }

bool GatherAwaiter::await_ready() {
    for (std::size_t i = 0; i < children_.size(); ++i) {
        const auto& c = *children_[i];
        if (!c.done()) {
            ++g_->remaining;
        } else if (failed(c) && g_->first_failed < 0) {
            g_->first_failed = static_cast<std::ptrdiff_t>(i);
        }
    }
    return g_->remaining == 0 || g_->first_failed >= 0;
}

void GatherAwaiter::suspend(std::coroutine_handle<> h) {
    g_->h = h;
    g_->waiting = true;
    for (std::size_t i = 0; i < children_.size(); ++i) {
        FutureStateBase* c = children_[i].get();
        if (c->done()) continue;
        // `c` is only touched while gather still waits, when children_ keeps it alive.
        c->add_done_callback([g = g_, c, i] {
            if (!g->waiting) return;
            --g->remaining;
            const bool f = failed(*c);
            if (f && g->first_failed < 0 && !g->cancelling)
                g->first_failed = static_cast<std::ptrdiff_t>(i);
            if (g->remaining == 0 || (f && !g->cancelling)) {
                g->waiting = false;
                g->h.resume();
            }
        });
    }
    if (ctx_) {
        auto cancel = [this] {
            g_->cancelling = true;
            for (auto& c : children_)
                if (!c->done()) c->cancel();
        };
        if (ctx_->cancel_requested)
            cancel();
        else
            ctx_->cancel_current = cancel;
    }
}

GatherOutcome GatherAwaiter::await_resume() {
    g_->waiting = false;
    GatherOutcome out;
    out.first_failed = g_->first_failed;
    if (ctx_) {
        ctx_->cancel_current.reset();
        out.cancelled = ctx_->take_cancel();
    }
    return out;
}

// ---- wait()

struct WaitManyState {
    std::size_t remaining = 0;  // not done yet
    ReturnWhen when = ReturnWhen::all_completed;
    std::coroutine_handle<> h;
    TaskContext* ctx = nullptr;
    TimerHandle timer;
    bool waiting = false;
    bool cancelled = false;
    bool met = false;  // the return_when condition holds
};

static void wait_many_resume(WaitManyState& s) {
    s.waiting = false;
    s.timer.cancel();
    s.h.resume();
}

WaitManyAwaiter::WaitManyAwaiter(std::vector<std::shared_ptr<FutureStateBase>> fs, ReturnWhen when,
                                 std::optional<double> timeout)
    : s_(std::make_shared<WaitManyState>()) {
    s_->when = when;
    for (auto& f : fs) {
        if (!f->done()) {
            ++s_->remaining;
        } else if (when == ReturnWhen::first_completed ||
                   (when == ReturnWhen::first_exception && f->has_exception())) {
            s_->met = true;
        }
    }
    if (s_->remaining == 0) s_->met = true;
    if (s_->met) return;
    if (timeout && *timeout <= 0) {
        s_->met = true;  // asyncio: a timeout of 0 returns at once
        return;
    }
    for (auto& f : fs) {
        if (f->done()) continue;
        FutureStateBase* c = f.get();
        c->add_done_callback([s = s_, c] {
            if (!s->waiting) return;
            --s->remaining;
            if (s->remaining == 0 || s->when == ReturnWhen::first_completed ||
                (s->when == ReturnWhen::first_exception && !c->cancelled() && c->has_exception()))
                wait_many_resume(*s);
        });
    }
    timeout_ = timeout;  // the timer is armed at suspension, on the task's loop
}

bool WaitManyAwaiter::await_ready() const { return s_->met; }

void WaitManyAwaiter::suspend(std::coroutine_handle<> h, TaskContext& ctx) {
    s_->h = h;
    s_->ctx = &ctx;
    s_->waiting = true;
    if (timeout_)
        s_->timer = ctx.loop->call_later(*timeout_, [s = s_] {
            if (s->waiting) wait_many_resume(*s);
        });
    auto cancel = [s = s_] {
        if (!s->waiting) return;
        s->waiting = false;
        s->cancelled = true;
        s->timer.cancel();
        post_resume(*s->ctx->loop, s->h);
    };
    if (ctx.cancel_requested)
        cancel();
    else
        ctx.cancel_current = cancel;
}

bool WaitManyAwaiter::await_resume() {
    s_->waiting = false;
    if (!s_->ctx) return false;  // did not suspend
    s_->ctx->cancel_current.reset();
    return s_->ctx->take_cancel();
}

// ---- as_completed()

struct CompletionQueue {
    std::deque<std::size_t> ready;
    WaitList list;
    TimerHandle timer;
    std::optional<double> timeout;
    bool timer_armed = false;
    bool timed_out = false;
    ~CompletionQueue() { timer.cancel(); }
};

std::shared_ptr<CompletionQueue> completion_queue(
    const std::vector<std::shared_ptr<FutureStateBase>>& fs, std::optional<double> timeout) {
    auto q = std::make_shared<CompletionQueue>();
    q->timeout = timeout;
    for (std::size_t i = 0; i < fs.size(); ++i) {
        if (fs[i]->done()) {
            q->ready.push_back(i);
            continue;
        }
        std::weak_ptr<CompletionQueue> w = q;
        fs[i]->add_done_callback([w, i] {
            if (auto qq = w.lock()) {
                qq->ready.push_back(i);
                qq->list.wake_one();
            }
        });
    }
    if (timeout && !fs.empty()) {
        // The deadline counts from the call, as asyncio's.
        EventLoop& loop = fs.front()->loop();
        std::weak_ptr<CompletionQueue> w = q;
        q->timer = loop.call_later(*timeout, [w] {
            if (auto qq = w.lock()) {
                qq->timed_out = true;
                qq->list.wake_all();
            }
        });
    }
    return q;
}

Task<std::size_t> next_completed(std::shared_ptr<CompletionQueue> q) {
    while (q->ready.empty() && !q->timed_out) {
        auto r = co_await WaitAwaiter(q->list);
        if (r.cancelled) {
            if (r.woken && !q->ready.empty()) q->list.wake_one();
            throw CancelledError();
        }
    }
    if (q->ready.empty()) throw TimeoutError();
    const std::size_t i = q->ready.front();
    q->ready.pop_front();
    co_return i;
}

}  // namespace aioring::detail

namespace aioring {

Task<void> gather(std::vector<Task<void>> tasks) {
    EventLoop& loop = co_await get_running_loop();
    std::vector<Future<void>> futs;
    std::vector<std::shared_ptr<detail::FutureStateBase>> states;
    futs.reserve(tasks.size());
    for (auto& t : tasks) {
        futs.push_back(loop.create_task(std::move(t)));
        states.push_back(futs.back().state());
    }
    detail::GatherOutcome out = co_await detail::GatherAwaiter(std::move(states));
    if (out.cancelled) throw CancelledError();
    if (out.first_failed >= 0) futs[static_cast<std::size_t>(out.first_failed)].result();
    for (auto& f : futs) f.result();
}

}  // namespace aioring
