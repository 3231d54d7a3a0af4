// SPDX-License-Identifier: Apache-2.0
// loop.sendfile: a regular file sent over a stream transport, in its write order. Plain sockets
// splice file -> pipe -> socket behind a write barrier; TLS (and a socket or file that refuses
// splice) read the file in bounded chunks and write them, waiting for each to be sent.
#include "src/sendfile.hpp"

#include <aioring/error.hpp>
#include <aioring/loop.hpp>

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "src/loop_core.hpp"
#include "src/socket_transport.hpp"
#include "src/ssl_transport.hpp"

namespace aioring {
namespace detail {
namespace {

// The pipe between file and socket: the bytes a splice sendfile has in flight (not counted in
// get_write_buffer_size). 1 MiB is Linux's default pipe-max-size for unprivileged processes.
constexpr int pipe_size = 1 << 20;
// A read-and-write chunk: asyncio's SENDFILE_FALLBACK_READBUFFER_SIZE, or less so that one chunk
// stays within the transport's high-water mark (the protocol is then not paused by it).
constexpr std::size_t copy_chunk_max = 256 * 1024;
constexpr std::size_t copy_chunk_min = 16 * 1024;

std::exception_ptr errno_error(int err, const char* what) {
    return std::make_exception_ptr(std::system_error(err, std::system_category(), what));
}

class FileSender final : public LoopResource,
                         private WriteBarrier,
                         public std::enable_shared_from_this<FileSender> {
public:
    enum class Kind : unsigned char { splice, copy_socket, copy_tls };

    FileSender(LoopCore& core, std::shared_ptr<BaseTransport> keep, SocketTransport* sock,
               SslTransport* tls, int file, std::uint64_t offset, std::uint64_t count,
               bool fallback)
        : LoopResource(core),
          core_(core),
          keep_(std::move(keep)),
          sock_(sock),
          tls_(tls),
          file_(file),
          offset_(offset),
          count_(count),
          pos_(offset),
          fallback_(fallback),
          fut_(core.loop),
          kind_(tls ? Kind::copy_tls : Kind::splice) {}

    ~FileSender() { close_pipe(); }

    Future<std::size_t> start() {
        self_ = shared_from_this();
        if (kind_ == Kind::splice && !open_pipe()) {
            if (!fallback_) {
                const int err = errno;
                self_.reset();
                throw std::system_error(err, std::system_category(), "sendfile: pipe");
            }
            to_copy();
        }
        // Cancelling the awaiting task stops the transfer after the operation in flight.
        fut_.add_done_callback([w = weak_from_this()] {
            if (auto s = w.lock(); s && s->fut_.cancelled()) s->stop(nullptr, false);
        });
        if (kind_ == Kind::copy_tls) {
            tls_->hold_writes();  // what is written from now on goes after the file
            core_.post([s = shared_from_this()] { s->next(); });
        } else {
            sock_->set_write_barrier(this);
        }
        return fut_;
    }

private:
    struct StepOp final : uring::Op {
        FileSender& s;
        explicit StepOp(FileSender& f) : s(f) {}
        void complete(int res, unsigned) override { s.on_step(res); }
    };
    enum class Step : unsigned char { none, splice_in, splice_out, read, send, poll };

    std::uint64_t sent_end() const { return offset_ + sent_; }
    // Bytes still to read from the file (count_ 0: to EOF).
    std::uint64_t to_read() const {
        if (count_ == 0) return UINT64_MAX;
        return offset_ + count_ - pos_;
    }

    bool open_pipe() {
        if (::pipe2(pipe_, O_CLOEXEC) != 0) {
            pipe_[0] = pipe_[1] = -1;
            return false;
        }
        ::fcntl(pipe_[1], F_SETPIPE_SZ, pipe_size);  // refused above pipe-max-size: keep 64 KiB
        const int cap = ::fcntl(pipe_[1], F_GETPIPE_SZ);
        pipe_cap_ = cap > 0 ? static_cast<std::size_t>(cap) : 64 * 1024;
        return true;
    }
    void close_pipe() {
        for (int& fd : pipe_)
            if (fd >= 0) ::close(std::exchange(fd, -1));
    }
    void to_copy() {
        // A splice refused before any byte went out: bytes already in the pipe are dropped and
        // read again from the file.
        close_pipe();
        kind_ = Kind::copy_socket;
        pos_ = sent_end();
        in_pipe_ = 0;
        chunk_ = copy_chunk_max;
        buf_ = std::make_unique<char[]>(chunk_);
    }
    std::size_t tls_chunk() const {
        const std::size_t high = tls_->get_write_buffer_limits().second;
        return std::clamp(high, copy_chunk_min, copy_chunk_max);
    }

    // WriteBarrier
    void writes_before_sent() override {
        if (kind_ == Kind::copy_tls) {  // a chunk's records have all been sent
            release_lower();
            next();
            return;
        }
        next();  // the writes made before the sendfile are out: the socket is ours
    }
    void transport_aborted(std::error_code ec) override {
        stop(std::make_exception_ptr(
                 ec ? std::system_error(ec, "sendfile: connection lost")
                    : std::system_error(std::make_error_code(std::errc::connection_aborted),
                                        "sendfile: the transport was aborted")),
             true);
    }

    // LoopResource: the loop closed (every operation has completed or been cancelled).
    void loop_closed() override {
        close_pipe();
        step_ = Step::none;
        done_ = true;
        auto self = std::move(self_);  // may free this on return
    }

    void submit(Step step, void (*prep)(io_uring_sqe*, FileSender&)) {
        io_uring_sqe* s = core_.ring.sqe();
        prep(s, *this);
        io_uring_sqe_set_data(s, static_cast<uring::Op*>(&op_));
        step_ = step;
    }

    // The next operation, or the end.
    void next() {
        if (done_) return;
        if (stopping_) return finish();
        switch (kind_) {
            case Kind::splice:
                if (no_splice_) return splice_refused(-EINVAL);
                if (in_pipe_ != 0) {
                    submit(Step::splice_out, [](io_uring_sqe* s, FileSender& f) {
                        io_uring_prep_splice(s, f.pipe_[0], -1, f.sock_fd(), -1,
                                             static_cast<unsigned>(f.in_pipe_), 0);
                    });
                } else if (to_read() == 0) {
                    finish();
                } else {
                    submit(Step::splice_in, [](io_uring_sqe* s, FileSender& f) {
                        const auto n = std::min<std::uint64_t>(f.to_read(), f.pipe_cap_);
                        io_uring_prep_splice(s, f.file_, static_cast<std::int64_t>(f.pos_),
                                             f.pipe_[1], -1, static_cast<unsigned>(n), 0);
                    });
                }
                return;
            case Kind::copy_socket:
                if (buf_off_ != buf_len_) {
                    submit(Step::send, [](io_uring_sqe* s, FileSender& f) {
                        io_uring_prep_send(s, f.sock_fd(), f.buf_.get() + f.buf_off_,
                                           f.buf_len_ - f.buf_off_, MSG_NOSIGNAL);
                    });
                    return;
                }
                [[fallthrough]];
            case Kind::copy_tls:
                if (to_read() == 0) return finish();
                if (kind_ == Kind::copy_tls && !buf_) {
                    chunk_ = tls_chunk();
                    buf_ = std::make_unique<char[]>(chunk_);
                }
                submit(Step::read, [](io_uring_sqe* s, FileSender& f) {
                    const auto n = std::min<std::uint64_t>(f.to_read(), f.chunk_);
                    io_uring_prep_read(s, f.file_, f.buf_.get(), static_cast<unsigned>(n), f.pos_);
                });
                return;
        }
    }

    int sock_fd() const {
        auto fd = sock_->extra<int>("socket");
        return fd ? *fd : -1;
    }

    // EAGAIN (a socket or pipe made non-blocking by its owner): wait for room, then go on.
    void poll_then(int fd, short events) {
        poll_fd_ = fd;
        poll_events_ = events;
        submit(Step::poll, [](io_uring_sqe* s, FileSender& f) {
            io_uring_prep_poll_add(s, f.poll_fd_, static_cast<unsigned>(f.poll_events_));
        });
    }

    void on_step(int res) {
        const Step step = std::exchange(step_, Step::none);
        if (done_) return;
        if (stopping_) {
            // A cancelled splice or send may still have sent part of its bytes.
            if ((step == Step::splice_out || step == Step::send) && res > 0)
                sent_ += static_cast<std::uint64_t>(res);
            return finish();
        }
        switch (step) {
            case Step::none:
                return;
            case Step::poll:
                if (res < 0 && res != -EINTR) return fail_file(-res, "sendfile: poll");
                return next();  // the state says which step again
            case Step::splice_in:
                if (res > 0) {
                    pos_ += static_cast<std::uint64_t>(res);
                    in_pipe_ = static_cast<std::size_t>(res);
                    return next();
                }
                if (res == 0) return finish();  // end of file
                if (res == -EINTR) return next();
                if (res == -EAGAIN) return poll_then(pipe_[1], POLLOUT);
                if (refused(res) && sent_ == 0) return splice_refused(res);
                return fail_file(-res, "sendfile: reading the file");
            case Step::splice_out:
                if (res > 0) {
                    sent_ += static_cast<std::uint64_t>(res);
                    in_pipe_ -= static_cast<std::size_t>(res);
                    return next();
                }
                if (res == -EINTR) return next();
                if (res == -EAGAIN) return poll_then(sock_fd(), POLLOUT);
                if (refused(res) && sent_ == 0) return splice_refused(res);
                return fail_connection(res == 0 ? EPIPE : -res);
            case Step::read:
                if (res > 0) return on_read(static_cast<std::size_t>(res));
                if (res == 0) return finish();
                if (res == -EINTR || res == -EAGAIN) return next();
                return fail_file(-res, "sendfile: reading the file");
            case Step::send:
                if (res > 0) {
                    buf_off_ += static_cast<std::size_t>(res);
                    sent_ += static_cast<std::uint64_t>(res);
                    return next();
                }
                if (res == -EINTR) return next();
                if (res == -EAGAIN) return poll_then(sock_fd(), POLLOUT);
                return fail_connection(res == 0 ? EPIPE : -res);
        }
    }

    static bool refused(int res) { return res == -EINVAL || res == -EOPNOTSUPP || res == -ENOSYS; }

    void splice_refused(int res) {
        if (!fallback_) {
            return finish(std::make_exception_ptr(SendfileNotAvailableError(fmt::format(
                "sendfile: the kernel refused to splice this file or socket ({}) and the "
                "fallback is disabled",
                std::system_category().message(-res)))));
        }
        to_copy();
        next();
    }

    void on_read(std::size_t n) {
        pos_ += n;
        if (kind_ == Kind::copy_socket) {
            buf_off_ = 0;
            buf_len_ = n;
            return next();
        }
        // TLS: through the transport's own write path, then wait until the records are sent.
        SocketTransport* low = tls_->lower();
        if (tls_->is_closing() || !low || low->is_closing()) {
            return finish(std::make_exception_ptr(
                std::system_error(std::make_error_code(std::errc::connection_aborted),
                                  "sendfile: the transport is closing")));
        }
        tls_->write_through(std::string_view(buf_.get(), n));
        sent_ += n;
        lower_ = low;
        lower_keep_ = low->shared_from_this();
        low->set_write_barrier(this);
    }

    void release_lower() {
        if (!lower_) return;
        lower_->release_write_barrier({});
        lower_ = nullptr;
        lower_keep_.reset();
    }

    void fail_file(int err, const char* what) { finish(errno_error(err, what)); }
    void fail_connection(int err) {
        conn_error_ = std::error_code(err, std::system_category());
        finish(std::make_exception_ptr(std::system_error(conn_error_, "sendfile")));
    }

    // Stop at the next completion (abort, connection lost, cancel): cancel what is in flight.
    void stop(std::exception_ptr e, bool shut) {
        if (done_ || stopping_) return;
        stopping_ = true;
        stop_error_ = std::move(e);
        if (step_ == Step::none) {
            if (kind_ == Kind::copy_tls) release_lower();
            // Waiting on the barrier: nothing in flight.
            core_.post([s = shared_from_this()] { s->finish(); });
            return;
        }
        // A splice or send blocked on a full socket: shut it for writing (abort's rule: no
        // byte the kernel has not accepted goes out after it) and cancel the op.
        if (shut && (step_ == Step::splice_out || step_ == Step::send))
            ::shutdown(sock_fd(), SHUT_WR);
        core_.ring.cancel(op_);
    }

    void finish(std::exception_ptr e = nullptr) {
        if (done_) return;
        if (step_ != Step::none) {  // wait for the op in flight (a cancel is on its way)
            stopping_ = true;
            if (!stop_error_) stop_error_ = e;
            return;
        }
        done_ = true;
        if (!e) e = stop_error_;
        close_pipe();
        buf_.reset();
        // asyncio: the file position is updated, even on error, to just past the bytes sent.
        ::lseek(file_, static_cast<off_t>(sent_end()), SEEK_SET);
        if (kind_ == Kind::copy_tls) {
            release_lower();
            tls_->release_writes();
        } else {
            sock_->release_write_barrier(conn_error_);
        }
        if (!fut_.done()) {
            if (e)
                fut_.set_exception(e);
            else
                fut_.set_result(static_cast<std::size_t>(sent_));
        }
        keep_.reset();
        core_.post([s = std::move(self_)] {});  // freed after this call returns
    }

    LoopCore& core_;
    std::shared_ptr<BaseTransport> keep_;
    std::shared_ptr<FileSender> self_;
    SocketTransport* sock_;  // plain: the transport; TLS: null
    SslTransport* tls_;
    SocketTransport* lower_ = nullptr;  // TLS: the transport below, while waiting on it
    std::shared_ptr<SocketTransport> lower_keep_;
    int file_;
    std::uint64_t offset_;
    std::uint64_t count_;
    std::uint64_t pos_;       // the next file offset to read
    std::uint64_t sent_ = 0;  // bytes the socket (or the TLS transport) took
    bool fallback_;
    // AIORING_SENDFILE_NO_SPLICE=1: behave as if the kernel refused splice (tests, benchmarks).
    bool no_splice_ = std::getenv("AIORING_SENDFILE_NO_SPLICE") != nullptr;
    Future<std::size_t> fut_;
    Kind kind_;
    StepOp op_{*this};
    Step step_ = Step::none;
    int poll_fd_ = -1;
    short poll_events_ = 0;
    int pipe_[2] = {-1, -1};
    std::size_t pipe_cap_ = 0;
    std::size_t in_pipe_ = 0;
    std::unique_ptr<char[]> buf_;
    std::size_t chunk_ = 0;
    std::size_t buf_off_ = 0;
    std::size_t buf_len_ = 0;
    bool stopping_ = false;
    bool done_ = false;
    std::exception_ptr stop_error_;
    std::error_code conn_error_;
};

}  // namespace

Future<std::size_t> start_sendfile(Transport& transport, int fd, std::int64_t offset,
                                   std::optional<std::int64_t> count, bool fallback) {
    if (offset < 0)
        throw std::invalid_argument(
            fmt::format("sendfile: offset must be a non-negative integer (got {})", offset));
    if (count && *count < 0)
        throw std::invalid_argument(
            fmt::format("sendfile: count must be a non-negative integer (got {})", *count));
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw std::system_error(errno, std::system_category(), "sendfile: the file");
    if (!S_ISREG(st.st_mode))
        throw std::invalid_argument("sendfile: the file must be a regular file");
    if ((::fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY)
        throw std::invalid_argument("sendfile: the file is not open for reading");
    if (transport.is_closing()) throw std::runtime_error("sendfile: the transport is closing");
    LoopCore& core = transport.get_loop().core();
    std::shared_ptr<BaseTransport> keep;
    SocketTransport* sock = nullptr;
    SslTransport* tls = nullptr;
    if (auto* s = dynamic_cast<SocketTransport*>(&transport); s && s->extra<int>("socket")) {
        if (s->has_write_barrier())
            throw std::runtime_error("sendfile: another sendfile is in progress on this transport");
        sock = s;
        keep = s->shared_from_this();
    } else if (auto* t = dynamic_cast<SslTransport*>(&transport); t && t->lower()) {
        if (t->writes_held())
            throw std::runtime_error("sendfile: another sendfile is in progress on this transport");
        if (!fallback)
            throw SendfileNotAvailableError(
                "sendfile: fallback is disabled and native sendfile is not supported for a TLS "
                "transport");
        tls = t;
        keep = t->shared_from_this();
    } else {
        throw std::runtime_error(
            "sendfile: not supported for this transport (a TCP, Unix stream or TLS one only)");
    }
    auto sender = std::make_shared<FileSender>(
        core, std::move(keep), sock, tls, fd, static_cast<std::uint64_t>(offset),
        static_cast<std::uint64_t>(count.value_or(0)), fallback);
    return sender->start();
}

}  // namespace detail

Future<std::size_t> EventLoop::sendfile(std::shared_ptr<Transport> transport, int fd,
                                        std::int64_t offset, std::optional<std::int64_t> count,
                                        bool fallback) {
    if (!transport) throw std::invalid_argument("sendfile: no transport");
    if (&transport->get_loop() != this)
        throw std::invalid_argument("sendfile: the transport belongs to another loop");
    return detail::start_sendfile(*transport, fd, offset, count, fallback);
}

}  // namespace aioring
