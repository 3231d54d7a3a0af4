// The coroutine layer's out-of-line parts: wait lists (resumption through the loop's ready
// queue, cancellation by unlinking) and gather's wait.
#include <aioring/coro.hpp>

#include <cassert>
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

Waiter::~Waiter() {
    // A frame destroyed while suspended (a loop closed with the task pending) must not stay
    // linked.
    if (list) list->unlink(*this);
}

void Waiter::suspend(WaitList& l, std::coroutine_handle<> handle, TaskContext& context) {
    h = handle;
    ctx = &context;
    woken = false;
    l.push(*this);
    auto cancel = [this] {
        if (list == nullptr) return;  // already woken: its resumption is on its way
        list->unlink(*this);
        post_resume(*ctx->loop, h);
    };
    if (context.cancel_requested) cancel();
    else context.cancel_current = cancel;
}

bool Waiter::resumed() {
    ctx->cancel_current.reset();
    return ctx->take_cancel();
}

WaitList::~WaitList() {
    while (head_) unlink(*head_);
}

void WaitList::push(Waiter& w) {
    assert(w.list == nullptr);
    w.list = this;
    w.prev = tail_;
    w.next = nullptr;
    if (tail_) tail_->next = &w;
    else head_ = &w;
    tail_ = &w;
}

void WaitList::unlink(Waiter& w) {
    assert(w.list == this);
    if (w.prev) w.prev->next = w.next;
    else head_ = w.next;
    if (w.next) w.next->prev = w.prev;
    else tail_ = w.prev;
    w.prev = w.next = nullptr;
    w.list = nullptr;
}

bool WaitList::wake_one() {
    Waiter* w = head_;
    if (w == nullptr) return false;
    unlink(*w);
    w->woken = true;
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
        if (ctx_->cancel_requested) cancel();
        else ctx_->cancel_current = cancel;
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
