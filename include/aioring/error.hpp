// SPDX-License-Identifier: Apache-2.0
// The exceptions of the coroutine layer, named as asyncio names them.
#pragma once

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace aioring {

// Thrown at a task's suspension point when the task is cancelled. message() is the one given
// to Future::cancel(msg) (asyncio's CancelledError(msg)); what() says "operation cancelled"
// when there is none.
class CancelledError : public std::runtime_error {
public:
    CancelledError() : std::runtime_error("operation cancelled") {}
    explicit CancelledError(const std::string& msg)
        : std::runtime_error(msg.empty() ? "operation cancelled" : msg), message_(msg) {}
    const std::string& message() const { return message_; }

private:
    std::string message_;
};

// Python's ExceptionGroup, for TaskGroup: every error its tasks (and its body) raised, in the
// order they were raised. what() is "unhandled errors in a TaskGroup (N sub-exceptions)".
class ExceptionGroup : public std::runtime_error {
public:
    ExceptionGroup(const std::string& message, std::vector<std::exception_ptr> exceptions);
    const std::vector<std::exception_ptr>& exceptions() const { return exceptions_; }
    // The first sub-exception of type E, searching nested groups (as except* does).
    template <class E>
    const E* find() const {
        for (const auto& e : exceptions_) {
            try {
                std::rethrow_exception(e);
            } catch (const ExceptionGroup& g) {
                if constexpr (std::is_same_v<E, ExceptionGroup>)
                    return &g;
                else if (const E* x = g.find<E>())
                    return x;
            } catch (...) {
                if constexpr (!std::is_same_v<E, ExceptionGroup>) {
                    try {
                        throw;
                    } catch (const E& x) {
                        return &x;
                    } catch (...) {
                    }
                }
            }
        }
        return nullptr;
    }

private:
    std::vector<std::exception_ptr> exceptions_;
};

// Barrier::wait on a barrier that was aborted, or reset while tasks waited.
class BrokenBarrierError : public std::runtime_error {
public:
    BrokenBarrierError() : std::runtime_error("barrier is broken") {}
};

// Thrown by wait_for and a timeout scope when the deadline passes first.
class TimeoutError : public std::runtime_error {
public:
    TimeoutError() : std::runtime_error("operation timed out") {}
};

// Thrown by readexactly/readuntil at EOF; `partial` holds what was read before it.
class IncompleteReadError : public std::runtime_error {
public:
    IncompleteReadError(std::string partial_, std::size_t expected_)
        : std::runtime_error(std::to_string(partial_.size()) + " bytes read on a total of " +
                             (expected_ ? std::to_string(expected_) : std::string("undefined")) +
                             " expected bytes"),
          partial(std::move(partial_)),
          expected(expected_) {}
    std::string partial;
    std::size_t expected;  // 0: undefined (readuntil)
};

// Thrown by readuntil/readline when the separator is not found within the limit.
class LimitOverrunError : public std::runtime_error {
public:
    LimitOverrunError(const std::string& what, std::size_t consumed_)
        : std::runtime_error(what), consumed(consumed_) {}
    std::size_t consumed;
};

// Queue::put_nowait on a full queue, Queue::get_nowait on an empty one.
class QueueFull : public std::runtime_error {
public:
    QueueFull() : std::runtime_error("queue is full") {}
};
class QueueEmpty : public std::runtime_error {
public:
    QueueEmpty() : std::runtime_error("queue is empty") {}
};

// asyncio's SendfileNotAvailableError: sendfile cannot send this file over this transport
// natively and the fallback was disabled.
class SendfileNotAvailableError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Thrown when the loop is misused: running a closed loop, run_forever on a running loop.
class LoopError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

}  // namespace aioring
