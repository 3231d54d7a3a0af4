// asyncio's synchronization primitives for tasks of one loop: Event, Lock, Semaphore and
// Queue<T> (with maxsize). Waiters are served in FIFO order; a waiter whose task is cancelled
// gets CancelledError and passes on anything a wake-up had already handed it.
#pragma once

#include <aioring/coro.hpp>
#include <aioring/error.hpp>
#include <aioring/task.hpp>

#include <cstddef>
#include <deque>
#include <stdexcept>
#include <utility>

namespace aioring {

// Event: wait() suspends until set(); set() wakes every waiter; clear() resets the flag.
class Event {
public:
    bool is_set() const { return set_; }
    void set() {
        if (set_) return;
        set_ = true;
        waiters_.wake_all();
    }
    void clear() { set_ = false; }
    Task<void> wait() {
        if (set_) co_return;
        auto r = co_await detail::WaitAwaiter(waiters_);
        if (r.cancelled) throw CancelledError();
    }

private:
    bool set_ = false;
    detail::WaitList waiters_;
};

// Lock: acquire() suspends while another task holds it; release() hands it to the first
// waiter. Releasing a lock that is not held throws std::logic_error.
class Lock {
public:
    bool locked() const { return locked_; }
    Task<void> acquire() {
        if (!locked_ && waiters_.empty()) {
            locked_ = true;
            co_return;
        }
        auto r = co_await detail::WaitAwaiter(waiters_);
        if (r.cancelled) {
            if (r.woken) release();  // the lock was handed over: pass it on
            throw CancelledError();
        }
        // Woken: release() left locked_ set and handed the lock to this task.
    }
    void release() {
        if (!locked_) throw std::logic_error("Lock is not acquired");
        if (!waiters_.wake_one()) locked_ = false;
    }

private:
    bool locked_ = false;
    detail::WaitList waiters_;
};

// Semaphore: acquire() takes one unit, suspending while there is none; release() gives one
// back (to the first waiter if there is one).
class Semaphore {
public:
    explicit Semaphore(std::size_t value = 1) : value_(value) {}
    bool locked() const { return value_ == 0; }
    std::size_t value() const { return value_; }
    Task<void> acquire() {
        if (value_ > 0 && waiters_.empty()) {
            --value_;
            co_return;
        }
        auto r = co_await detail::WaitAwaiter(waiters_);
        if (r.cancelled) {
            if (r.woken) release();
            throw CancelledError();
        }
    }
    void release() {
        if (!waiters_.wake_one()) ++value_;
    }

private:
    std::size_t value_;
    detail::WaitList waiters_;
};

// Queue<T>: FIFO; maxsize 0 is unbounded. put() suspends while full, get() while empty.
// task_done()/join() as in asyncio.
template <class T>
class Queue {
public:
    explicit Queue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
    std::size_t maxsize() const { return maxsize_; }
    std::size_t qsize() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    bool full() const { return maxsize_ != 0 && items_.size() >= maxsize_; }

    void put_nowait(T item) {
        if (full()) throw QueueFull();
        items_.push_back(std::move(item));
        ++unfinished_;
        getters_.wake_one();
    }
    T get_nowait() {
        if (items_.empty()) throw QueueEmpty();
        T v = std::move(items_.front());
        items_.pop_front();
        putters_.wake_one();
        return v;
    }
    Task<void> put(T item) {
        while (full()) {
            auto r = co_await detail::WaitAwaiter(putters_);
            if (r.cancelled) {
                if (r.woken && !full()) putters_.wake_one();  // pass the wake-up on
                throw CancelledError();
            }
        }
        put_nowait(std::move(item));
    }
    Task<T> get() {
        while (items_.empty()) {
            auto r = co_await detail::WaitAwaiter(getters_);
            if (r.cancelled) {
                if (r.woken && !items_.empty()) getters_.wake_one();
                throw CancelledError();
            }
        }
        co_return get_nowait();
    }
    void task_done() {
        if (unfinished_ == 0) throw std::logic_error("task_done() called too many times");
        if (--unfinished_ == 0) finished_.wake_all();
    }
    Task<void> join() {
        while (unfinished_ != 0) {
            auto r = co_await detail::WaitAwaiter(finished_);
            if (r.cancelled) throw CancelledError();
        }
    }

private:
    std::size_t maxsize_;
    std::deque<T> items_;
    std::size_t unfinished_ = 0;
    detail::WaitList getters_;
    detail::WaitList putters_;
    detail::WaitList finished_;
};

}  // namespace aioring
