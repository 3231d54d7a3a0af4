// SPDX-License-Identifier: Apache-2.0
// The proactor: one io_uring per event loop. It hands out SQEs, submits and waits in one
// io_uring_enter, and dispatches each CQE to the Op whose address is its user_data.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "uring/op.hpp"

namespace aioring::uring {

// Strongest first; set-up falls back down this list until the kernel accepts one.
enum class SetupMode { defer_taskrun, coop_taskrun, basic };
const char* to_string(SetupMode);
// AIORING_RING_MODE=defer|coop|basic caps the mode (tests force every fallback this way).
std::optional<SetupMode> mode_from_env();

struct Features {
    bool ext_arg = false;           // submit-and-wait with a timeout in one enter (5.11)
    bool multishot_accept = false;  // 5.19
    bool multishot_recv = false;    // 6.0
    bool buf_ring = false;          // provided-buffer rings registered (5.19)
    bool cancel_fd = false;         // IORING_ASYNC_CANCEL_FD|ALL (5.19)
};

// Runs one completion in place of a plain Op::complete call (the loop's debug mode times it).
class CompletionRunner {
public:
    virtual void run(Op& op, int res, unsigned flags) = 0;

protected:
    ~CompletionRunner() = default;
};

class Ring {
public:
    // `strongest` is the best mode to try; the environment may cap it further.
    Ring(unsigned sq_entries, unsigned cq_entries, SetupMode strongest = SetupMode::defer_taskrun);
    ~Ring();
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    SetupMode mode() const { return mode_; }
    const Features& features() const { return features_; }
    io_uring* raw() { return &ring_; }

    // A free SQE. A full SQ is not an error: what is queued is submitted and an SQE taken again.
    io_uring_sqe* sqe() {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        if (s == nullptr) [[unlikely]] s = sqe_slow();
        ++inflight_;  // every SQE ends with exactly one CQE without IORING_CQE_F_MORE
        return s;
    }
    // Prepares a no-result SQE whose CQE is ignored (user_data 0): cancels, shutdowns.
    static void ignore_result(io_uring_sqe* s) { io_uring_sqe_set_data64(s, 0); }

    // Submits queued SQEs and waits for at least one CQE, or until `timeout` (nullopt: no
    // limit, zero: do not wait). One io_uring_enter.
    void submit_and_wait(std::optional<std::chrono::nanoseconds> timeout);
    // Runs Op::complete for every CQE ready now; returns how many.
    unsigned dispatch();
    // While set (not null), every completion goes through it.
    void set_runner(CompletionRunner* r) { runner_ = r; }

    std::uint64_t completions() const { return completions_; }
    std::uint64_t enters() const { return enters_; }
    // Operations whose final CQE has not been reaped yet.
    std::uint64_t inflight() const { return inflight_; }
    // Teardown: cancels every operation and reaps CQEs, without dispatching them, until each
    // has delivered its final one (or `limit` passes), so that no memory an operation points
    // into is freed while the kernel may still use it.
    void cancel_all(std::chrono::milliseconds limit);

private:
    io_uring_sqe* sqe_slow();
    void probe();

    io_uring ring_{};
    SetupMode mode_ = SetupMode::basic;
    Features features_;
    std::uint64_t completions_ = 0;
    std::uint64_t enters_ = 0;
    std::uint64_t inflight_ = 0;
    bool dispatching_ = false;
    CompletionRunner* runner_ = nullptr;
};

}  // namespace aioring::uring
