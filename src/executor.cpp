// SPDX-License-Identifier: Apache-2.0
// The loop's bounded worker pool, and the thread-safe hand-over to the loop.
#include "src/executor.hpp"

#include <aioring/threads.hpp>

#include <signal.h>

#include <algorithm>
#include <stdexcept>

#include "src/loop_core.hpp"

namespace aioring::detail {

Executor::~Executor() {
    std::deque<Callback> dropped;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        dropped.swap(jobs_);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void Executor::submit(Callback job) {
    {
        std::lock_guard lock(mutex_);
        jobs_.push_back(std::move(job));
        if (idle_ == 0 && workers_.size() < max_workers_) {
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_BLOCK, &all, &old);
            workers_.emplace_back([this] { work(); });
            pthread_sigmask(SIG_SETMASK, &old, nullptr);
        }
    }
    cv_.notify_one();
}

void Executor::work() {
    for (;;) {
        Callback job;
        {
            std::unique_lock lock(mutex_);
            ++idle_;
            cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            --idle_;
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();
    }
}

static unsigned default_workers() {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    return std::min(32u, cores + 4);
}

static Executor& executor_of(EventLoop& loop) {
    LoopCore& core = loop.core();
    if (core.is_closed()) throw LoopError("Event loop is closed");
    if (!core.executor) core.executor = std::make_unique<Executor>(default_workers());
    return *core.executor;
}

void executor_submit(EventLoop& loop, Callback job) {
    loop.core().check_thread();
    executor_of(loop).submit(std::move(job));
}

bool post_threadsafe(EventLoop& loop, Callback cb) {
    try {
        loop.call_soon_threadsafe(std::move(cb));
        return true;
    } catch (const LoopError&) {
        return false;  // the loop closed meanwhile
    }
}

}  // namespace aioring::detail

namespace aioring {

unsigned executor_workers(EventLoop& loop) { return detail::executor_of(loop).max_workers(); }

void set_executor_workers(EventLoop& loop, unsigned n) {
    if (n == 0) throw std::invalid_argument("executor_workers must be at least 1");
    detail::executor_of(loop).set_max_workers(n);
}

}  // namespace aioring
