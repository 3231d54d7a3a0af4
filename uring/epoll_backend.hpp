// SPDX-License-Identifier: Apache-2.0
// The epoll backend: io_uring's submission and completion queues emulated in user space, for
// kernels and sandboxes where io_uring_setup is refused. Ring hands out SQEs from an array
// here; at submit each SQE's opcode is run with a non-blocking syscall, and where that would
// block the operation waits on epoll (level-triggered, one registration per fd) and runs
// again once the fd is ready. Every operation ends with one CQE without IORING_CQE_F_MORE, as
// the kernel's do, so the transports cannot tell the difference.
//
// Emulated: NOP, RECV and RECVMSG (multishot, provided buffers: the BufferRing's ring is read
// up to its tail, a head kept here; -ENOBUFS when it is empty), SEND, SENDMSG, READ, READV,
// WRITE, WRITEV (regular files by pread/pwrite, everything else non-blocking), ACCEPT
// (multishot), CONNECT, POLL_ADD, ASYNC_CANCEL (by user_data, IORING_ASYNC_CANCEL_FD, _ALL,
// _ANY), SHUTDOWN, CLOSE, SPLICE, and IOSQE_IO_LINK chains (a failure cancels the rest). Any
// other opcode completes with -EINVAL. Provided buffers are consumed whole: incremental
// consumption (IOU_PBUF_RING_INC) is refused, so streams use the whole-buffer ring.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace aioring::uring {

// A completion as the kernel would post it.
struct Cqe {
    std::uint64_t user_data;
    int res;
    unsigned flags;
};

class EpollBackend {
public:
    explicit EpollBackend(unsigned sq_entries);
    ~EpollBackend();
    EpollBackend(const EpollBackend&) = delete;
    EpollBackend& operator=(const EpollBackend&) = delete;

    // A zeroed SQE, or nullptr when the SQ is full (submit, then ask again).
    io_uring_sqe* sqe() {
        if (queued_ == sq_.size()) [[unlikely]]
            return nullptr;
        io_uring_sqe* s = &sq_[queued_++];
        *s = io_uring_sqe{};
        return s;
    }
    unsigned sq_space_left() const { return static_cast<unsigned>(sq_.size() - queued_); }

    // Runs the queued SQEs: each completes now or waits for readiness.
    void submit();
    // submit(), then waits until at least one CQE is ready or `timeout` passes (nullopt: no
    // limit, zero: do not wait), running operations whose fds became ready.
    void submit_and_wait(std::optional<std::chrono::nanoseconds> timeout);
    // The CQEs ready now, taken out of the queue (valid until the next call).
    const std::vector<Cqe>& take_completions();

    bool register_buffers(const io_uring_buf_reg& reg);
    void unregister_buffers(std::uint16_t group);

    // Teardown: every operation ends, nothing is delivered.
    void drop_all();

    std::uint64_t waits() const { return waits_; }

private:
    struct Task;
    struct FdState;
    struct Group {
        io_uring_buf_ring* br = nullptr;
        unsigned mask = 0;
        std::uint16_t head = 0;
    };

    void post(std::uint64_t user_data, int res, unsigned flags) {
        cq_.push_back(Cqe{user_data, res, flags});
    }
    Task* new_task(const io_uring_sqe& s);
    void free_task(Task* t);
    void start(Task* t);
    bool run(Task& t, std::uint32_t ready);
    bool finish(Task& t, int res, unsigned flags = 0);
    bool wait(Task& t, int fd, std::uint32_t events);
    bool io_result(Task& t, long r, std::uint32_t events);
    bool run_recv(Task& t);
    bool run_accept(Task& t);
    bool run_connect(Task& t, std::uint32_t ready);
    bool run_rw(Task& t, bool write);
    bool run_splice(Task& t);
    void run_cancel(Task& self);
    void cancel_task(Task* t);
    FdState& fd_state(int fd);
    void enqueue(Task* t);
    void unlink_fd(Task* t);
    void update_interest(int fd);
    void on_ready(int fd, std::uint32_t events);
    void poll_once(int timeout_ms);
    Group* group(std::uint16_t id);

    int epfd_ = -1;
    std::vector<io_uring_sqe> sq_;
    std::size_t queued_ = 0;
    std::vector<Cqe> cq_;
    std::vector<Cqe> delivering_;
    std::vector<FdState> fds_;
    std::vector<Group> groups_;
    Task* live_ = nullptr;  // every operation not yet ended (cancel searches it)
    Task* free_ = nullptr;
    std::vector<std::unique_ptr<Task[]>> chunks_;
    std::vector<std::unique_ptr<io_uring_sqe[]>> sqe_chunks_;
    std::vector<Task*> matches_;
    std::uint64_t waits_ = 0;
};

}  // namespace aioring::uring
