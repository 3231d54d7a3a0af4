// SPDX-License-Identifier: Apache-2.0
// The epoll backend's interpreter: each emulated SQE runs as the kernel would run it, first at
// submit without blocking, then again each time epoll reports its fd ready.
#include "uring/epoll_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace aioring::uring {

namespace {

// A multishot operation runs at most this many times per readiness report, so that one busy
// socket cannot starve the others (the fd stays registered: level-triggered epoll reports it
// again at the next wait).
constexpr int max_rounds = 8;
constexpr std::uint32_t epoll_mask =
    EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLERR | EPOLLHUP;
constexpr std::uint64_t no_offset = ~std::uint64_t{0};

// What an operation waits for; ops on one fd in one direction run in submission order.
std::uint32_t direction(const io_uring_sqe& s) {
    switch (s.opcode) {
        case IORING_OP_RECV:
        case IORING_OP_RECVMSG:
        case IORING_OP_READ:
        case IORING_OP_READV:
        case IORING_OP_ACCEPT:
            return EPOLLIN;
        case IORING_OP_SEND:
        case IORING_OP_SENDMSG:
        case IORING_OP_WRITE:
        case IORING_OP_WRITEV:
        case IORING_OP_CONNECT:
            return EPOLLOUT;
        default:
            return 0;
    }
}

// Sets O_NONBLOCK; returns the flags before, or -1 if they already had it (or on error).
int make_nonblocking(int fd) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK)) return -1;
    ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    return fl;
}

bool is_regular(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

struct EpollBackend::Task {
    std::uint32_t want = 0;  // the events it waits for
    int wait_fd = -1;
    bool queued = false;  // in wait_fd's list
    bool alive = false;
    bool started = false;  // connect issued, file kind looked up
    bool regular = false;  // a regular file or block device: never waits
    bool retry_connect = false;
    int saved_flags = -1;  // connect: the file flags to restore
    Task* prev = nullptr;  // wait_fd's list
    Task* next = nullptr;  // wait_fd's list; the free list
    Task* live_prev = nullptr;
    Task* live_next = nullptr;
    Task* link = nullptr;  // the rest of its IOSQE_IO_LINK chain, started once it succeeds
    Task* link_prev = nullptr;
    io_uring_sqe* sqe = nullptr;  // its copy of the SQE, in a chunk of its own (the SQE's
                                  // union ends in a zero-length array: no member of a struct)
};

struct EpollBackend::FdState {
    Task* head = nullptr;
    Task* tail = nullptr;
    std::uint32_t registered = 0;
    bool in_epoll = false;
    // Nothing waited since the last registration: the fd may have been closed and its number
    // reused meanwhile (epoll forgets a closed file), so the registration is renewed.
    bool idle = false;
};

EpollBackend::EpollBackend(unsigned sq_entries) : sq_(sq_entries == 0 ? 1 : sq_entries) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
    cq_.reserve(1024);
    delivering_.reserve(1024);
}

EpollBackend::~EpollBackend() {
    drop_all();
    ::close(epfd_);
}

// ---- tasks ----------------------------------------------------------------------------------

EpollBackend::Task* EpollBackend::new_task(const io_uring_sqe& s) {
    if (free_ == nullptr) [[unlikely]] {
        constexpr std::size_t chunk = 64;
        chunks_.push_back(std::make_unique<Task[]>(chunk));
        sqe_chunks_.push_back(std::make_unique<io_uring_sqe[]>(chunk));
        for (std::size_t i = 0; i < chunk; ++i) {
            chunks_.back()[i].sqe = &sqe_chunks_.back()[i];
            chunks_.back()[i].next = free_;
            free_ = &chunks_.back()[i];
        }
    }
    Task* t = free_;
    free_ = t->next;
    io_uring_sqe* copy = t->sqe;
    *t = Task{};
    t->sqe = copy;
    *copy = s;
    t->alive = true;
    t->live_next = live_;
    if (live_ != nullptr) live_->live_prev = t;
    live_ = t;
    return t;
}

void EpollBackend::free_task(Task* t) {
    if (t->live_prev != nullptr)
        t->live_prev->live_next = t->live_next;
    else
        live_ = t->live_next;
    if (t->live_next != nullptr) t->live_next->live_prev = t->live_prev;
    t->alive = false;
    t->next = free_;
    free_ = t;
}

EpollBackend::FdState& EpollBackend::fd_state(int fd) {
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 64);
    return fds_[static_cast<std::size_t>(fd)];
}

void EpollBackend::enqueue(Task* t) {
    FdState& f = fd_state(t->wait_fd);
    t->prev = f.tail;
    t->next = nullptr;
    if (f.tail != nullptr)
        f.tail->next = t;
    else
        f.head = t;
    f.tail = t;
    t->queued = true;
}

void EpollBackend::unlink_fd(Task* t) {
    FdState& f = fds_[static_cast<std::size_t>(t->wait_fd)];
    if (t->prev != nullptr)
        t->prev->next = t->next;
    else
        f.head = t->next;
    if (t->next != nullptr)
        t->next->prev = t->prev;
    else
        f.tail = t->prev;
    t->prev = t->next = nullptr;
    t->queued = false;
    if (f.head == nullptr) f.idle = true;
}

void EpollBackend::update_interest(int fd) {
    FdState& f = fds_[static_cast<std::size_t>(fd)];
    std::uint32_t want = 0;
    for (Task* t = f.head; t != nullptr; t = t->next) want |= t->want;
    want &= epoll_mask;
    // Nothing waits: the registration stays until an event comes for nobody (then it goes),
    // so that a receive re-armed right away costs one EPOLL_CTL_MOD, not a DEL and an ADD.
    if (f.head == nullptr) return;
    if (f.in_epoll && want == f.registered && !f.idle) return;
    f.idle = false;
    epoll_event e{};
    e.events = want;
    e.data.fd = fd;
    int r = -1;
    if (f.in_epoll) {
        r = ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &e);
        if (r < 0 && errno == ENOENT) f.in_epoll = false;  // closed and reopened meanwhile
    }
    if (!f.in_epoll) {
        r = ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &e);
        if (r < 0 && errno == EEXIST) r = ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &e);
    }
    if (r == 0) {
        f.in_epoll = true;
        f.registered = want;
        return;
    }
    // Not pollable (closed, or a file epoll refuses): the waiters end with the error.
    const int err = errno;
    f.in_epoll = false;
    f.registered = 0;
    while (Task* t = fds_[static_cast<std::size_t>(fd)].head) finish(*t, -err);
}

// ---- submission -----------------------------------------------------------------------------

void EpollBackend::submit() {
    // No Op runs in here (completions are only queued), so sq_ does not change under the loop.
    const std::size_t n = queued_;
    queued_ = 0;
    for (std::size_t i = 0; i < n; ++i) {
        Task* head = new_task(sq_[i]);
        Task* prev = head;
        while ((sq_[i].flags & IOSQE_IO_LINK) && i + 1 < n) {
            Task* t = new_task(sq_[++i]);
            prev->link = t;
            t->link_prev = prev;
            prev = t;
        }
        start(head);
    }
}

void EpollBackend::start(Task* t) {
    const io_uring_sqe& s = *t->sqe;
    const std::uint32_t dir = direction(s);
    // Behind an earlier operation that waits in the same direction: its turn comes after it.
    if (dir != 0 && s.fd >= 0 && static_cast<std::size_t>(s.fd) < fds_.size()) {
        for (Task* w = fds_[static_cast<std::size_t>(s.fd)].head; w != nullptr; w = w->next) {
            if (w->want & dir) {
                t->want = dir;
                t->wait_fd = s.fd;
                enqueue(t);
                return;
            }
        }
    }
    if (run(*t, 0)) return;
    enqueue(t);
    update_interest(t->wait_fd);
}

bool EpollBackend::finish(Task& t, int res, unsigned flags) {
    post(t.sqe->user_data, res, flags);
    if (t.queued) unlink_fd(&t);
    Task* next = t.link;
    free_task(&t);
    if (next == nullptr) return true;
    next->link_prev = nullptr;
    if (res >= 0) {
        start(next);
        return true;
    }
    while (next != nullptr) {  // a failed link cancels the rest of its chain
        Task* after = next->link;
        post(next->sqe->user_data, -ECANCELED, 0);
        free_task(next);
        next = after;
    }
    return true;
}

bool EpollBackend::wait(Task& t, int fd, std::uint32_t events) {
    t.want = events;
    t.wait_fd = fd;
    return false;
}

bool EpollBackend::io_result(Task& t, long r, std::uint32_t events) {
    if (r >= 0) return finish(t, static_cast<int>(r));
    if (would_block(errno)) return wait(t, t.sqe->fd, events);
    return finish(t, -errno);
}

// ---- operations -----------------------------------------------------------------------------

bool EpollBackend::run(Task& t, std::uint32_t ready) {
    const io_uring_sqe& s = *t.sqe;
    long r;
    switch (s.opcode) {
        case IORING_OP_NOP:
            return finish(t, 0);
        case IORING_OP_RECV:
        case IORING_OP_RECVMSG:
            return run_recv(t);
        case IORING_OP_SEND:
            do
                r = ::send(s.fd, reinterpret_cast<const void*>(s.addr), s.len,
                           static_cast<int>(s.msg_flags) | MSG_DONTWAIT);
            while (r < 0 && errno == EINTR);
            return io_result(t, r, EPOLLOUT);
        case IORING_OP_SENDMSG:
            do
                r = ::sendmsg(s.fd, reinterpret_cast<const msghdr*>(s.addr),
                              static_cast<int>(s.msg_flags) | MSG_DONTWAIT);
            while (r < 0 && errno == EINTR);
            return io_result(t, r, EPOLLOUT);
        case IORING_OP_READ:
        case IORING_OP_READV:
            return run_rw(t, false);
        case IORING_OP_WRITE:
        case IORING_OP_WRITEV:
            return run_rw(t, true);
        case IORING_OP_ACCEPT:
            return run_accept(t);
        case IORING_OP_CONNECT:
            return run_connect(t, ready);
        case IORING_OP_POLL_ADD: {
            const std::uint32_t want = s.poll32_events | EPOLLERR | EPOLLHUP;
            if (ready & want) return finish(t, static_cast<int>(ready & want));
            return wait(t, s.fd, s.poll32_events);  // level-triggered: a ready fd reports at once
        }
        case IORING_OP_ASYNC_CANCEL:
            run_cancel(t);
            return true;
        case IORING_OP_SHUTDOWN:
            return finish(t, ::shutdown(s.fd, static_cast<int>(s.len)) == 0 ? 0 : -errno);
        case IORING_OP_CLOSE:
            return finish(t, ::close(s.fd) == 0 ? 0 : -errno);
        case IORING_OP_SPLICE:
            return run_splice(t);
        default:
            return finish(t, -EINVAL);
    }
}

EpollBackend::Group* EpollBackend::group(std::uint16_t id) {
    if (id >= groups_.size() || groups_[id].br == nullptr) return nullptr;
    return &groups_[id];
}

bool EpollBackend::run_recv(Task& t) {
    const io_uring_sqe& s = *t.sqe;
    const bool multishot = (s.ioprio & IORING_RECV_MULTISHOT) != 0;
    const bool select = (s.flags & IOSQE_BUFFER_SELECT) != 0;
    const bool msg = s.opcode == IORING_OP_RECVMSG;
    const int flags = static_cast<int>(s.msg_flags) | MSG_DONTWAIT;
    for (int round = 0;; ++round) {
        if (round == max_rounds) return wait(t, s.fd, EPOLLIN);
        char* buf = reinterpret_cast<char*>(s.addr);
        std::size_t len = s.len;
        unsigned bflags = 0;
        Group* g = nullptr;
        if (select) {
            g = group(s.buf_group);
            if (g == nullptr || g->head == g->br->tail) return finish(t, -ENOBUFS);
            const io_uring_buf& b = g->br->bufs[g->head & g->mask];
            buf = reinterpret_cast<char*>(b.addr);
            len = b.len;
            if (!multishot && s.len != 0 && s.len < len) len = s.len;
            bflags =
                IORING_CQE_F_BUFFER | (static_cast<unsigned>(b.bid) << IORING_CQE_BUFFER_SHIFT);
        }
        long r;
        if (!msg) {
            do r = ::recv(s.fd, buf, len, flags);
            while (r < 0 && errno == EINTR);
        } else {
            auto* um = reinterpret_cast<msghdr*>(s.addr);
            if (!select) {
                do r = ::recvmsg(s.fd, um, flags);
                while (r < 0 && errno == EINTR);
            } else {
                // io_uring's layout: an io_uring_recvmsg_out, the name and control areas the
                // msghdr reserves (multishot only), then the payload.
                const std::size_t hdr =
                    multishot ? sizeof(io_uring_recvmsg_out) + um->msg_namelen + um->msg_controllen
                              : 0;
                if (len < hdr) return finish(t, -EFAULT);
                iovec iov{buf + hdr, len - hdr};
                msghdr m = *um;
                m.msg_iov = &iov;
                m.msg_iovlen = 1;
                if (multishot) {
                    m.msg_name =
                        um->msg_namelen != 0 ? buf + sizeof(io_uring_recvmsg_out) : nullptr;
                    m.msg_control = um->msg_controllen != 0
                                        ? buf + sizeof(io_uring_recvmsg_out) + um->msg_namelen
                                        : nullptr;
                }
                do r = ::recvmsg(s.fd, &m, flags);
                while (r < 0 && errno == EINTR);
                if (r >= 0 && multishot) {
                    auto* out = reinterpret_cast<io_uring_recvmsg_out*>(buf);
                    out->namelen = m.msg_namelen;
                    out->controllen = static_cast<unsigned>(m.msg_controllen);
                    out->payloadlen = static_cast<unsigned>(r);
                    out->flags = static_cast<unsigned>(m.msg_flags);
                    r += static_cast<long>(hdr);
                } else if (r >= 0) {
                    um->msg_namelen = m.msg_namelen;
                    um->msg_controllen = m.msg_controllen;
                    um->msg_flags = m.msg_flags;
                }
            }
        }
        if (r < 0) {
            if (would_block(errno)) return wait(t, s.fd, EPOLLIN);
            return finish(t, -errno);
        }
        const bool eof = r == 0 && !msg;
        if (select) {
            if (eof)
                bflags = 0;  // nothing was written: the buffer stays in the ring
            else
                ++g->head;
        }
        if (!multishot || eof) return finish(t, static_cast<int>(r), bflags);
        post(s.user_data, static_cast<int>(r), bflags | IORING_CQE_F_MORE);
        // A stream receive that did not fill its buffer drained the socket: epoll reports the
        // next bytes, with no recv spent on EAGAIN.
        if (!msg && static_cast<std::size_t>(r) < len) return wait(t, s.fd, EPOLLIN);
    }
}

bool EpollBackend::run_accept(Task& t) {
    const io_uring_sqe& s = *t.sqe;
    const bool multishot = (s.ioprio & IORING_ACCEPT_MULTISHOT) != 0;
    if (!t.started) {
        t.started = true;
        make_nonblocking(s.fd);  // a listening socket of the loop's: it stays non-blocking
    }
    for (int round = 0;; ++round) {
        if (round == 4 * max_rounds) return wait(t, s.fd, EPOLLIN);
        const int r =
            ::accept4(s.fd, reinterpret_cast<sockaddr*>(s.addr),
                      reinterpret_cast<socklen_t*>(s.addr2), static_cast<int>(s.accept_flags));
        if (r < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (would_block(errno)) return wait(t, s.fd, EPOLLIN);
            return finish(t, -errno);
        }
        if (!multishot) return finish(t, r);
        post(s.user_data, r, IORING_CQE_F_MORE);
    }
}

bool EpollBackend::run_connect(Task& t, std::uint32_t ready) {
    const io_uring_sqe& s = *t.sqe;
    int res;
    if (!t.started || t.retry_connect) {
        if (!t.started) t.saved_flags = make_nonblocking(s.fd);  // restored once connected
        t.started = true;
        t.retry_connect = false;
        int r;
        do
            r = ::connect(s.fd, reinterpret_cast<const sockaddr*>(s.addr),
                          static_cast<socklen_t>(s.off));
        while (r < 0 && errno == EINTR);
        if (r < 0 && (errno == EINPROGRESS || errno == EALREADY)) return wait(t, s.fd, EPOLLOUT);
        if (r < 0 && would_block(errno)) {  // a Unix socket's full backlog: try again later
            t.retry_connect = true;
            return wait(t, s.fd, EPOLLOUT);
        }
        res = r == 0 ? 0 : -errno;
    } else {
        (void)ready;
        int err = 0;
        socklen_t l = sizeof err;
        if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
        res = -err;
    }
    if (t.saved_flags >= 0) ::fcntl(s.fd, F_SETFL, t.saved_flags);
    return finish(t, res);
}

bool EpollBackend::run_rw(Task& t, bool write) {
    const io_uring_sqe& s = *t.sqe;
    if (!t.started) {
        t.started = true;
        t.regular = is_regular(s.fd);
        if (!t.regular) make_nonblocking(s.fd);
    }
    iovec one{reinterpret_cast<void*>(s.addr), s.len};
    const iovec* iov = &one;
    int n = 1;
    if (s.opcode == IORING_OP_READV || s.opcode == IORING_OP_WRITEV) {
        iov = reinterpret_cast<const iovec*>(s.addr);
        n = static_cast<int>(s.len);
    }
    // A regular file at an offset (-1: its position); anything else ignores the offset.
    const bool at = t.regular && s.off != no_offset;
    const auto off = static_cast<off_t>(s.off);
    long r;
    do {
        if (write)
            r = at ? ::pwritev(s.fd, iov, n, off) : ::writev(s.fd, iov, n);
        else
            r = at ? ::preadv(s.fd, iov, n, off) : ::readv(s.fd, iov, n);
    } while (r < 0 && errno == EINTR);
    return io_result(t, r, write ? EPOLLOUT : EPOLLIN);
}

bool EpollBackend::run_splice(Task& t) {
    const io_uring_sqe& s = *t.sqe;
    const int in = s.splice_fd_in;
    const int out = s.fd;
    if (!t.started) {
        t.started = true;
        if (!is_regular(in)) make_nonblocking(in);
        if (!is_regular(out)) make_nonblocking(out);
    }
    loff_t off_in = static_cast<loff_t>(s.splice_off_in);
    loff_t off_out = static_cast<loff_t>(s.off);
    // splice() into a socket whose peer is gone raises SIGPIPE (it has no MSG_NOSIGNAL), which
    // the kernel's io_uring splice does not: block it for the call and discard one it raised.
    sigset_t pipe_set;
    sigset_t old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    long r;
    do
        r = ::splice(in, s.splice_off_in == no_offset ? nullptr : &off_in, out,
                     s.off == no_offset ? nullptr : &off_out, s.len,
                     (s.splice_flags & ~SPLICE_F_FD_IN_FIXED) | SPLICE_F_NONBLOCK);
    while (r < 0 && errno == EINTR);
    const int err = errno;
    if (r < 0 && err == EPIPE && !sigismember(&old_set, SIGPIPE)) {
        const timespec zero{};
        while (::sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
    errno = err;
    if (r >= 0) return finish(t, static_cast<int>(r));
    if (!would_block(errno)) return finish(t, -errno);
    // Whichever side is not ready is the one to wait for.
    pollfd p[2] = {{in, POLLIN, 0}, {out, POLLOUT, 0}};
    ::poll(p, 2, 0);
    if (p[0].revents == 0) return wait(t, in, EPOLLIN);
    return wait(t, out, EPOLLOUT);
}

// ---- cancellation ---------------------------------------------------------------------------

void EpollBackend::run_cancel(Task& self) {
    const io_uring_sqe& s = *self.sqe;
    const unsigned cf = s.cancel_flags;
    const bool any = (cf & IORING_ASYNC_CANCEL_ANY) != 0;
    const bool by_fd = (cf & IORING_ASYNC_CANCEL_FD) != 0;
    const bool all = (cf & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY)) != 0;
    matches_.clear();
    for (Task* p = live_; p != nullptr; p = p->live_next) {
        if (p == &self) continue;
        if (!any && !(by_fd ? p->sqe->fd == s.fd : p->sqe->user_data == s.addr)) continue;
        matches_.push_back(p);
        if (!all) break;
    }
    // Cancelling one may end the rest of its chain, which may be further down the list.
    int n = 0;
    for (Task* p : matches_) {
        if (!p->alive) continue;
        cancel_task(p);
        ++n;
    }
    const int res = n == 0 ? -ENOENT : all ? n : 0;
    finish(self, res);
}

void EpollBackend::cancel_task(Task* t) {
    const int fd = t->queued ? t->wait_fd : -1;
    if (t->link_prev != nullptr) {
        t->link_prev->link = nullptr;
        t->link_prev = nullptr;
    }
    finish(*t, -ECANCELED);
    if (fd >= 0) update_interest(fd);
}

// ---- waiting --------------------------------------------------------------------------------

void EpollBackend::on_ready(int fd, std::uint32_t events) {
    if (fds_[static_cast<std::size_t>(fd)].head == nullptr) {  // registered for nobody now
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        fds_[static_cast<std::size_t>(fd)].in_epoll = false;
        fds_[static_cast<std::size_t>(fd)].registered = 0;
        return;
    }
    // The operations waiting now, in order; one that still has to wait holds back those behind
    // it in its direction. Those queued while this runs (a chain's next) wait for the next round.
    std::uint32_t blocked = 0;
    Task* const last = fds_[static_cast<std::size_t>(fd)].tail;
    Task* t = fds_[static_cast<std::size_t>(fd)].head;
    while (t != nullptr) {
        Task* next = t == last ? nullptr : t->next;
        const bool hit = (events & (EPOLLERR | EPOLLHUP)) || (t->want & events);
        if (hit && !(t->want & blocked) && !run(*t, events)) {
            blocked |= t->want;
            if (t->wait_fd != fd) {  // a splice now waiting on its other end
                const int other = t->wait_fd;
                t->wait_fd = fd;
                unlink_fd(t);
                t->wait_fd = other;
                enqueue(t);
                update_interest(other);
            }
        }
        t = next;
    }
    update_interest(fd);
}

void EpollBackend::poll_once(int timeout_ms) {
    constexpr int max_events = 256;
    epoll_event events[max_events];
    ++waits_;
    const int n = ::epoll_wait(epfd_, events, max_events, timeout_ms);
    for (int i = 0; i < n; ++i) on_ready(events[i].data.fd, events[i].events);
}

void EpollBackend::submit_and_wait(std::optional<std::chrono::nanoseconds> timeout) {
    submit();
    if (!cq_.empty() || (timeout && timeout->count() <= 0)) {
        poll_once(0);
        return;
    }
    using clock = std::chrono::steady_clock;
    const auto begin = timeout ? clock::now() : clock::time_point{};
    for (;;) {
        int ms = -1;
        if (timeout) {
            const auto left = *timeout - (clock::now() - begin);
            // Rounded up: a timer is never woken for before its time.
            ms = left.count() <= 0 ? 0 : static_cast<int>((left.count() + 999'999) / 1'000'000);
        }
        poll_once(ms);
        // Events for nobody (a stale registration going away) are not a wake-up.
        if (!cq_.empty() || ms == 0) return;
    }
}

const std::vector<Cqe>& EpollBackend::take_completions() {
    delivering_.clear();
    delivering_.swap(cq_);
    return delivering_;
}

// ---- provided buffers and teardown ----------------------------------------------------------

bool EpollBackend::register_buffers(const io_uring_buf_reg& reg) {
    if (reg.pad != 0) return false;  // incremental consumption (IOU_PBUF_RING_INC): not emulated
    if (reg.ring_entries == 0 || (reg.ring_entries & (reg.ring_entries - 1)) != 0) return false;
    if (reg.bgid >= groups_.size()) groups_.resize(reg.bgid + 1u);
    Group& g = groups_[reg.bgid];
    if (g.br != nullptr) return false;
    g.br = reinterpret_cast<io_uring_buf_ring*>(static_cast<std::uintptr_t>(reg.ring_addr));
    g.mask = reg.ring_entries - 1;
    g.head = 0;
    return true;
}

void EpollBackend::unregister_buffers(std::uint16_t group) {
    if (group < groups_.size()) groups_[group] = Group{};
}

void EpollBackend::drop_all() {
    while (live_ != nullptr) free_task(live_);
    for (FdState& f : fds_) f.head = f.tail = nullptr;
    queued_ = 0;
    cq_.clear();
    delivering_.clear();
}

}  // namespace aioring::uring
