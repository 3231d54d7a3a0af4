// SPDX-License-Identifier: Apache-2.0
// asyncio's synchronization primitives for tasks of one loop: Event, Lock, Semaphore,
// Condition, Barrier, and Queue, LifoQueue and PriorityQueue (maxsize, join). Waiters are
// served in FIFO order; a waiter whose task is cancelled gets CancelledError and passes on
// anything a wake-up had already handed it.
#pragma once

#include <aioring/coro.hpp>
#include <aioring/error.hpp>
#include <aioring/task.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <stdexcept>
#include <utility>
#include <vector>

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

namespace detail {
template <class T>
struct FifoStore {
    std::deque<T> items;
    void push(T v) { items.push_back(std::move(v)); }
    T pop() {
        T v = std::move(items.front());
        items.pop_front();
        return v;
    }
};
template <class T>
struct LifoStore {
    std::vector<T> items;
    void push(T v) { items.push_back(std::move(v)); }
    T pop() {
        T v = std::move(items.back());
        items.pop_back();
        return v;
    }
};
// A binary heap on `Compare`: pop() gives the smallest first (heapq's order).
template <class T, class Compare>
struct HeapStore {
    std::vector<T> items;
    struct Greater {
        bool operator()(const T& a, const T& b) const { return Compare{}(b, a); }
    };
    void push(T v) {
        items.push_back(std::move(v));
        std::push_heap(items.begin(), items.end(), Greater{});
    }
    T pop() {
        std::pop_heap(items.begin(), items.end(), Greater{});
        T v = std::move(items.back());
        items.pop_back();
        return v;
    }
};
}  // namespace detail

// BasicQueue: asyncio.Queue's logic over a store (FIFO, LIFO, priority); maxsize 0 is
// unbounded. put() suspends while full, get() while empty; task_done()/join() as in asyncio
// (join() returns once every item put has been marked done).
template <class T, class Store>
class BasicQueue {
public:
    explicit BasicQueue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
    std::size_t maxsize() const { return maxsize_; }
    std::size_t qsize() const { return store_.items.size(); }
    bool empty() const { return store_.items.empty(); }
    bool full() const { return maxsize_ != 0 && qsize() >= maxsize_; }

    void put_nowait(T item) {
        if (full()) throw QueueFull();
        store_.push(std::move(item));
        ++unfinished_;
        getters_.wake_one();
    }
    T get_nowait() {
        if (empty()) throw QueueEmpty();
        T v = store_.pop();
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
        while (empty()) {
            auto r = co_await detail::WaitAwaiter(getters_);
            if (r.cancelled) {
                if (r.woken && !empty()) getters_.wake_one();
                throw CancelledError();
            }
        }
        co_return get_nowait();
    }
    // std::logic_error when called more often than items were put.
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
    Store store_;
    std::size_t unfinished_ = 0;
    detail::WaitList getters_;
    detail::WaitList putters_;
    detail::WaitList finished_;
};

// asyncio.Queue: first in, first out.
template <class T>
class Queue : public BasicQueue<T, detail::FifoStore<T>> {
public:
    using BasicQueue<T, detail::FifoStore<T>>::BasicQueue;
};
// asyncio.LifoQueue: the last item put comes out first.
template <class T>
class LifoQueue : public BasicQueue<T, detail::LifoStore<T>> {
public:
    using BasicQueue<T, detail::LifoStore<T>>::BasicQueue;
};
// asyncio.PriorityQueue: the smallest item (by Compare) comes out first; items that compare
// equal come out in no particular order, as from heapq.
template <class T, class Compare = std::less<T>>
class PriorityQueue : public BasicQueue<T, detail::HeapStore<T, Compare>> {
public:
    using BasicQueue<T, detail::HeapStore<T, Compare>>::BasicQueue;
};

// Condition: asyncio.Condition over a Lock (its own, or one shared with other conditions).
// wait() needs the lock held: it releases it, suspends until notified, and takes the lock
// back before returning, also when cancelled (a notification it got then goes to the next
// waiter). notify()/notify_all() need the lock held too (std::logic_error otherwise).
class Condition {
public:
    Condition() : lock_(&own_) {}
    explicit Condition(Lock& lock) : lock_(&lock) {}
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;

    Task<void> acquire() { return lock_->acquire(); }
    void release() { lock_->release(); }
    bool locked() const { return lock_->locked(); }

    Task<void> wait() {
        if (!locked()) throw std::logic_error("cannot wait on un-acquired lock");
        release();
        auto r = co_await detail::WaitAwaiter(waiters_);
        bool cancelled = r.cancelled;
        // asyncio retries the acquire until it succeeds, and raises the cancel afterwards.
        for (;;) {
            try {
                co_await lock_->acquire();
                break;
            } catch (const CancelledError&) {
                cancelled = true;
            }
        }
        if (cancelled) {
            if (r.woken) notify(1);
            throw CancelledError();
        }
    }
    // Waits until pred() is true (checked first, then after each notification).
    template <class Pred>
    Task<bool> wait_for(Pred pred) {
        while (!pred()) co_await wait();
        co_return true;
    }
    void notify(std::size_t n = 1) {
        if (!locked()) throw std::logic_error("cannot notify on un-acquired lock");
        for (std::size_t i = 0; i < n && waiters_.wake_one(); ++i) {
        }
    }
    void notify_all() {
        if (!locked()) throw std::logic_error("cannot notify on un-acquired lock");
        waiters_.wake_all();
    }

private:
    Lock own_;
    Lock* lock_;
    detail::WaitList waiters_;
};

// Barrier: asyncio.Barrier (3.11). wait() suspends until `parties` tasks wait, then releases
// them all and returns each its arrival index (0 .. parties-1); the barrier then fills again.
// abort() breaks it: waiters and later wait() calls raise BrokenBarrierError. reset() wakes the
// current waiters with BrokenBarrierError and leaves the barrier usable. A waiter cancelled
// leaves without breaking it. reset() and abort() are not coroutines here: without threads
// they need no lock.
class Barrier {
public:
    explicit Barrier(std::size_t parties) : parties_(parties) {
        if (parties == 0) throw std::invalid_argument("parties must be at least 1");
    }
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    std::size_t parties() const { return parties_; }
    std::size_t n_waiting() const { return state_ == State::filling ? count_ : 0; }
    bool broken() const { return state_ == State::broken; }

    Task<std::size_t> wait() {
        // Tasks of the previous round still leaving (or a reset going on): wait for them.
        while (state_ == State::draining || state_ == State::resetting) {
            auto r = co_await detail::WaitAwaiter(changed_);
            if (r.cancelled) throw CancelledError();
        }
        if (state_ == State::broken) throw BrokenBarrierError();
        const std::size_t index = count_++;
        try {
            if (index + 1 == parties_) {
                state_ = State::draining;
                changed_.wake_all();
            } else {
                while (state_ == State::filling) {
                    auto r = co_await detail::WaitAwaiter(changed_);
                    if (r.cancelled) throw CancelledError();
                }
                if (state_ == State::broken || state_ == State::resetting)
                    throw BrokenBarrierError();
            }
        } catch (...) {
            leave();
            throw;
        }
        leave();
        co_return index;
    }
    void reset() {
        if (count_ > 0) {
            if (state_ != State::resetting) state_ = State::resetting;
        } else {
            state_ = State::filling;
        }
        changed_.wake_all();
    }
    void abort() {
        state_ = State::broken;
        changed_.wake_all();
    }

private:
    enum class State : unsigned char { filling, draining, resetting, broken };
    void leave() {
        if (--count_ == 0 && (state_ == State::resetting || state_ == State::draining)) {
            state_ = State::filling;
            changed_.wake_all();
        }
    }
    std::size_t parties_;
    std::size_t count_ = 0;
    State state_ = State::filling;
    detail::WaitList changed_;
};

}  // namespace aioring
