// SPDX-License-Identifier: Apache-2.0
// Ring set-up with the DEFER_TASKRUN -> COOP_TASKRUN -> basic fallback chain, feature probing,
// the single submit-and-wait per loop iteration and batched CQE dispatch.
#include "uring/ring.hpp"

#include "uring/kernel_check.hpp"

#include <sys/utsname.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

// liburing maps the rings with raw syscalls, which ThreadSanitizer does not see: when a loop's
// ring is unmapped and a later loop's ring is mapped at the same address on another thread, TSan
// takes the new ring's first SQE writes for a race with the old ring's last ones. The kernel
// orders the munmap before that mmap; this says so, with a release before each ring goes and an
// acquire once each is mapped.
#if defined(__SANITIZE_THREAD__)
#define AIORING_RING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AIORING_RING_TSAN 1
#endif
#endif
#ifdef AIORING_RING_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
namespace {
char ring_mappings;
void ring_mapped() { __tsan_acquire(&ring_mappings); }
void ring_unmapping() { __tsan_release(&ring_mappings); }
}  // namespace
#else
namespace {
void ring_mapped() {}
void ring_unmapping() {}
}  // namespace
#endif

namespace aioring::uring {

const char* to_string(SetupMode m) {
    switch (m) {
        case SetupMode::defer_taskrun: return "defer_taskrun";
        case SetupMode::coop_taskrun: return "coop_taskrun";
        case SetupMode::basic: return "basic";
    }
    return "?";
}

std::optional<SetupMode> mode_from_env() {
    const char* v = std::getenv("AIORING_RING_MODE");
    if (v == nullptr || *v == '\0') return std::nullopt;
    std::string s(v);
    if (s == "defer" || s == "defer_taskrun") return SetupMode::defer_taskrun;
    if (s == "coop" || s == "coop_taskrun") return SetupMode::coop_taskrun;
    if (s == "basic" || s == "none") return SetupMode::basic;
    throw std::invalid_argument("AIORING_RING_MODE must be defer, coop or basic, not '" + s + "'");
}

static unsigned flags_for(SetupMode m) {
    switch (m) {
        case SetupMode::defer_taskrun:
            return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
        case SetupMode::coop_taskrun:
            return IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
        case SetupMode::basic: return 0;
    }
    return 0;
}

Ring::Ring(unsigned sq_entries, unsigned cq_entries, SetupMode strongest) {
    check_kernel();
    if (auto cap = mode_from_env(); cap && *cap > strongest) strongest = *cap;
    int err = 0;
    for (int m = static_cast<int>(strongest); m <= static_cast<int>(SetupMode::basic); ++m) {
        io_uring_params p{};
        p.flags = flags_for(static_cast<SetupMode>(m)) | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        err = io_uring_queue_init_params(sq_entries, &ring_, &p);
        if (err == 0) {
            ring_mapped();
            mode_ = static_cast<SetupMode>(m);
            features_.ext_arg = (p.features & IORING_FEAT_EXT_ARG) != 0;
            probe();
            return;
        }
    }
    std::string what = "io_uring_queue_init failed: ";
    what += std::strerror(-err);
    if (err == -EPERM || err == -ENOSYS)
        what += " (io_uring is disabled here: check kernel.io_uring_disabled or the seccomp profile)";
    else if (err == -ENOMEM)
        what += " (raise RLIMIT_MEMLOCK on kernels before 5.11)";
    throw std::system_error(-err, std::system_category(), what);
}

Ring::~Ring() {
    ring_unmapping();
    io_uring_queue_exit(&ring_);
}

void Ring::probe() {
    // Multishot accept/recv and cancel-by-fd have no opcode of their own, so the probe goes by
    // the kernel release; buf_ring is proven by registering one (BufferRing records it).
    utsname u{};
    int major = 0, minor = 0;
    if (uname(&u) == 0) std::sscanf(u.release, "%d.%d", &major, &minor);
    const int v = major * 100 + minor;
    features_.multishot_accept = v >= 519;
    features_.cancel_fd = v >= 519;
    features_.multishot_recv = v >= 600;
    if (const char* off = std::getenv("AIORING_NO_MULTISHOT"); off && *off == '1') {
        features_.multishot_accept = false;
        features_.multishot_recv = false;
    }
}

io_uring_sqe* Ring::sqe_slow() {
    for (;;) {
        int r = io_uring_submit(&ring_);
        ++enters_;
        if (r < 0 && r != -EBUSY && r != -EAGAIN && r != -EINTR)
            throw std::system_error(-r, std::system_category(), "io_uring_submit");
        // EBUSY: the CQ backlog must be reaped first. Inside dispatch() the batch being run was
        // already consumed from the CQ, so the next enter can flush the overflow by itself.
        if ((r == -EBUSY || r == -EAGAIN) && !dispatching_) dispatch();
        if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) return s;
    }
}

void Ring::submit_and_wait(std::optional<std::chrono::nanoseconds> timeout) {
    ++enters_;
    int r;
    if (timeout && timeout->count() <= 0) {
        r = io_uring_submit_and_get_events(&ring_);
    } else if (timeout) {
        __kernel_timespec ts{};
        ts.tv_sec = timeout->count() / 1'000'000'000;
        ts.tv_nsec = timeout->count() % 1'000'000'000;
        io_uring_cqe* cqe = nullptr;
        r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    } else {
        r = io_uring_submit_and_wait(&ring_, 1);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN) [[unlikely]]
        throw std::system_error(-r, std::system_category(), "io_uring_enter");
}

unsigned Ring::dispatch() {
    // CQEs are copied out and consumed before any Op runs, so an Op that submits (and so may
    // reap on a full CQ) never sees an entry twice, and ordering per Op is kept.
    struct Entry {
        std::uint64_t user_data;
        int res;
        unsigned flags;
    };
    constexpr unsigned batch = 128;
    io_uring_cqe* cqes[batch];
    Entry entries[batch];
    unsigned total = 0;
    dispatching_ = true;
    for (;;) {
        const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, batch);
        if (n == 0) break;
        for (unsigned i = 0; i < n; ++i) entries[i] = {cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
        io_uring_cq_advance(&ring_, n);
        for (unsigned i = 0; i < n; ++i) {
            const std::uint64_t ud = entries[i].user_data;
            if (ud == LIBURING_UDATA_TIMEOUT) [[unlikely]] continue;  // liburing's own wait timeout
            if (!(entries[i].flags & IORING_CQE_F_MORE)) --inflight_;
            if (ud == 0) [[unlikely]] continue;
            reinterpret_cast<Op*>(static_cast<std::uintptr_t>(ud))->complete(entries[i].res, entries[i].flags);
        }
        total += n;
        if (n < batch) break;
    }
    dispatching_ = false;
    completions_ += total;
    return total;
}

void Ring::cancel_all(std::chrono::milliseconds limit) {
    if (inflight_ == 0) return;
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    ignore_result(s);
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + limit;
    while (inflight_ != 0) {
        const auto left = deadline - clock::now();
        if (left <= clock::duration::zero()) break;
        try {
            submit_and_wait(std::chrono::duration_cast<std::chrono::nanoseconds>(left));
        } catch (const std::system_error&) {
            break;
        }
        io_uring_cqe* cqe = nullptr;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            ++n;
            if (cqe->user_data != LIBURING_UDATA_TIMEOUT && !(cqe->flags & IORING_CQE_F_MORE))
                --inflight_;
        }
        io_uring_cq_advance(&ring_, n);
    }
}

}  // namespace aioring::uring
