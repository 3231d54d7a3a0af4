// SPDX-License-Identifier: Apache-2.0
// Ring set-up with the DEFER_TASKRUN -> COOP_TASKRUN -> basic fallback chain, feature probing,
// the single submit-and-wait per loop iteration and batched CQE dispatch.
#include "uring/ring.hpp"

#include "uring/epoll_backend.hpp"
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
        case SetupMode::defer_taskrun:
            return "defer_taskrun";
        case SetupMode::coop_taskrun:
            return "coop_taskrun";
        case SetupMode::basic:
            return "basic";
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
            return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                   IORING_SETUP_SUBMIT_ALL;
        case SetupMode::coop_taskrun:
            return IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
        case SetupMode::basic:
            return 0;
    }
    return 0;
}

const char* to_string(Backend b) {
    switch (b) {
        case Backend::automatic:
            return "automatic";
        case Backend::io_uring:
            return "io_uring";
        case Backend::epoll:
            return "epoll";
    }
    return "?";
}

std::optional<Backend> backend_from_env() {
    const char* v = std::getenv("AIORING_BACKEND");
    if (v == nullptr || *v == '\0') return std::nullopt;
    std::string s(v);
    if (s == "auto" || s == "automatic") return Backend::automatic;
    if (s == "io_uring" || s == "uring") return Backend::io_uring;
    if (s == "epoll") return Backend::epoll;
    throw std::invalid_argument("AIORING_BACKEND must be auto, io_uring or epoll, not '" + s + "'");
}

Ring::Ring(unsigned sq_entries, unsigned cq_entries, SetupMode strongest, Backend backend) {
    if (backend == Backend::automatic)
        if (auto b = backend_from_env()) backend = *b;
    (void)mode_from_env();  // a malformed AIORING_RING_MODE is an error with either backend
    if (backend != Backend::epoll) {
        try {
            setup_io_uring(sq_entries, cq_entries, strongest);
            return;
        } catch (const std::runtime_error& e) {  // not a malformed setting (invalid_argument)
            if (backend == Backend::io_uring) throw;
            fallback_reason_ = e.what();
        }
    }
    emu_ = std::make_unique<EpollBackend>(sq_entries);
    mode_ = SetupMode::basic;
    features_.ext_arg = true;
    features_.multishot_accept = true;
    features_.multishot_recv = true;
    features_.cancel_fd = true;
    if (const char* off = std::getenv("AIORING_NO_MULTISHOT"); off && *off == '1') {
        features_.multishot_accept = false;
        features_.multishot_recv = false;
    }
}

void Ring::setup_io_uring(unsigned sq_entries, unsigned cq_entries, SetupMode strongest) {
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
        what +=
            " (io_uring is disabled here: check kernel.io_uring_disabled or the seccomp profile)";
    else if (err == -ENOMEM)
        what += " (raise RLIMIT_MEMLOCK on kernels before 5.11)";
    throw std::system_error(-err, std::system_category(), what);
}

Ring::~Ring() {
    if (!emu_) {
        ring_unmapping();
        io_uring_queue_exit(&ring_);
    }
}

io_uring_sqe* Ring::emulated_sqe() {
    if (io_uring_sqe* s = emu_->sqe()) [[likely]]
        return s;
    emu_->submit();  // a full SQ runs what it holds, as io_uring_submit would
    return emu_->sqe();
}

unsigned Ring::sq_space_left() {
    return emu_ ? emu_->sq_space_left() : io_uring_sq_space_left(&ring_);
}

void Ring::submit() {
    if (emu_) {
        emu_->submit();
        return;
    }
    io_uring_submit(&ring_);  // an error (EBUSY): the next iteration submits it
}

bool Ring::register_buf_ring(io_uring_buf_reg& reg) {
    if (emu_) return emu_->register_buffers(reg);
    return io_uring_register_buf_ring(&ring_, &reg, 0) == 0;
}

void Ring::unregister_buf_ring(std::uint16_t group) {
    if (emu_)
        emu_->unregister_buffers(group);
    else
        io_uring_unregister_buf_ring(&ring_, group);
}

unsigned Ring::dispatch_emulated() {
    // The emulation's CQEs, delivered as dispatch() delivers the kernel's: the batch is taken
    // before any Op runs, and what those Ops cause comes in the next batch.
    const std::vector<Cqe>& batch = emu_->take_completions();
    dispatching_ = true;
    for (const Cqe& c : batch) {
        if (!(c.flags & IORING_CQE_F_MORE)) --inflight_;
        if (c.user_data == 0) [[unlikely]]
            continue;
        Op* op = reinterpret_cast<Op*>(static_cast<std::uintptr_t>(c.user_data));
        if (runner_) [[unlikely]]
            runner_->run(*op, c.res, c.flags);
        else
            op->complete(c.res, c.flags);
    }
    dispatching_ = false;
    completions_ += batch.size();
    return static_cast<unsigned>(batch.size());
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
    if (emu_) return emulated_sqe();
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
    if (emu_) {
        emu_->submit_and_wait(timeout);
        return;
    }
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
    if (emu_) [[unlikely]]
        return dispatch_emulated();
    // The CQ is walked in place. Each entry is read and consumed (the head moved past it)
    // before its Op runs, so an Op that submits, and so may reap on a full CQ, never sees an
    // entry twice, and the kernel can post into the slot at once; order per Op is kept.
    // The ring's pointers and mask are fixed once it is mapped: held in locals, they are not
    // reloaded after each Op's call (io_uring_for_each_cqe re-reads them through ring_ each
    // time). The tail is read once per batch, and again once the batch is done. No CQE32
    // entries: the ring is never set up with IORING_SETUP_CQE32.
    unsigned* const khead = ring_.cq.khead;
    const unsigned* const ktail = ring_.cq.ktail;
    const io_uring_cqe* const cqes = ring_.cq.cqes;
    const unsigned mask = ring_.cq.ring_mask;
    unsigned head = *khead;
    const unsigned first = head;
    dispatching_ = true;
    for (unsigned tail; head != (tail = io_uring_smp_load_acquire(ktail));) {
        do {
            const io_uring_cqe& cqe = cqes[head & mask];
            const std::uint64_t ud = cqe.user_data;
            const int res = cqe.res;
            const unsigned flags = cqe.flags;
            io_uring_smp_store_release(khead, ++head);
            if (ud == LIBURING_UDATA_TIMEOUT) [[unlikely]]
                continue;  // liburing's own wait timeout
            if (!(flags & IORING_CQE_F_MORE)) --inflight_;
            if (ud == 0) [[unlikely]]
                continue;
            Op* op = reinterpret_cast<Op*>(static_cast<std::uintptr_t>(ud));
            if (runner_) [[unlikely]]
                runner_->run(*op, res, flags);
            else
                op->complete(res, flags);
        } while (head != tail);
    }
    dispatching_ = false;
    const unsigned total = head - first;
    completions_ += total;
    return total;
}

void Ring::cancel_all(std::chrono::milliseconds limit) {
    if (inflight_ == 0) return;
    if (emu_) {  // no kernel holds the memory: every operation ends at once, undelivered
        emu_->drop_all();
        inflight_ = 0;
        return;
    }
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
