// SPDX-License-Identifier: Apache-2.0
// The proactor: one io_uring per event loop. It hands out SQEs, submits and waits in one
// io_uring_enter, and dispatches each CQE to the Op whose address is its user_data.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "uring/op.hpp"

namespace aioring::uring {

// Strongest first; set-up falls back down this list until the kernel accepts one.
enum class SetupMode { defer_taskrun, coop_taskrun, basic };
const char* to_string(SetupMode);
// AIORING_RING_MODE=defer|coop|basic caps the mode (tests force every fallback this way).
std::optional<SetupMode> mode_from_env();

// Where operations run: io_uring, or the epoll emulation of it (uring/epoll_backend.hpp) where
// io_uring cannot be set up (seccomp, kernel.io_uring_disabled, an old kernel). `automatic`
// tries io_uring and falls back.
enum class Backend { automatic, io_uring, epoll };
const char* to_string(Backend);
// AIORING_BACKEND=auto|io_uring|epoll, which overrides an `automatic` choice.
std::optional<Backend> backend_from_env();

class EpollBackend;

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
    Ring(unsigned sq_entries, unsigned cq_entries, SetupMode strongest = SetupMode::defer_taskrun,
         Backend backend = Backend::automatic);
    ~Ring();
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    SetupMode mode() const { return mode_; }
    const Features& features() const { return features_; }
    // The ring itself; only with backend() == io_uring.
    io_uring* raw() { return &ring_; }
    // io_uring or epoll, never automatic.
    Backend backend() const { return emu_ ? Backend::epoll : Backend::io_uring; }
    // Why io_uring was not used: empty when it is, or when epoll was asked for.
    const std::string& fallback_reason() const { return fallback_reason_; }

    // A free SQE. A full SQ is not an error: what is queued is submitted and an SQE taken again.
    io_uring_sqe* sqe() {
        if (emu_) [[unlikely]] {
            ++inflight_;
            return emulated_sqe();
        }
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        if (s == nullptr) [[unlikely]]
            s = sqe_slow();
        ++inflight_;  // every SQE ends with exactly one CQE without IORING_CQE_F_MORE
        return s;
    }
    // Prepares a no-result SQE whose CQE is ignored (user_data 0): cancels, shutdowns.
    static void ignore_result(io_uring_sqe* s) { io_uring_sqe_set_data64(s, 0); }
    // Asks the kernel to cancel `op` (matched by its user_data); the cancel's own CQE is ignored,
    // `op` still gets its final one (-ECANCELED, or its result if it won the race).
    void cancel(Op& op) {
        io_uring_sqe* s = sqe();
        io_uring_prep_cancel(s, &op, 0);
        ignore_result(s);
    }

    // SQEs free before sqe() has to submit.
    unsigned sq_space_left();
    // Submits queued SQEs now, without waiting; a refusal (EBUSY) leaves them to the next
    // submit_and_wait.
    void submit();
    // Registers a provided-buffer ring (IORING_REGISTER_PBUF_RING) or hands it to the
    // emulation; false if refused (the emulation refuses incremental consumption).
    bool register_buf_ring(io_uring_buf_reg& reg);
    void unregister_buf_ring(std::uint16_t group);

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
    io_uring_sqe* emulated_sqe();
    unsigned dispatch_emulated();
    void setup_io_uring(unsigned sq_entries, unsigned cq_entries, SetupMode strongest);
    void probe();

    io_uring ring_{};
    SetupMode mode_ = SetupMode::basic;
    Features features_;
    std::uint64_t completions_ = 0;
    std::uint64_t enters_ = 0;
    std::uint64_t inflight_ = 0;
    bool dispatching_ = false;
    std::unique_ptr<EpollBackend> emu_;  // set: the epoll backend runs, ring_ is unused
    std::string fallback_reason_;
    CompletionRunner* runner_ = nullptr;
};

}  // namespace aioring::uring
