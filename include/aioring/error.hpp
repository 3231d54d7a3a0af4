// The exceptions of the coroutine layer, named as asyncio names them.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace aioring {

// Thrown at a task's suspension point when the task is cancelled.
class CancelledError : public std::runtime_error {
public:
    CancelledError() : std::runtime_error("operation cancelled") {}
};

// Thrown by wait_for when the deadline passes first.
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

// Thrown when the loop is misused: running a closed loop, run_forever on a running loop.
class LoopError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

}  // namespace aioring
