// SPDX-License-Identifier: Apache-2.0
// create_server / create_unix_server: listening sockets with a multishot accept each; every
// accepted socket becomes a SocketTransport with a fresh protocol.
#include <aioring/loop.hpp>
#include <aioring/server.hpp>

#include <fmt/core.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <limits>
#include <system_error>

#include "src/op_awaiter.hpp"
#include "src/socket_transport.hpp"
#include "src/socket_util.hpp"
#include "src/ssl_transport.hpp"

namespace aioring::detail {

namespace {

// asyncio pauses accepting for a moment when the process is out of fds or memory.
constexpr double accept_retry_delay = 0.25;
// While those errors last, the exception handler hears of them once per this many seconds, with
// the number of retries that failed in between (not 4 lines a second).
constexpr double accept_report_interval = 5.0;

class ServerImpl final : public Server,
                         public LoopResource,
                         public std::enable_shared_from_this<ServerImpl> {
public:
    ServerImpl(LoopCore& core, ProtocolFactory factory)
        : LoopResource(core), core_(core), factory_(std::move(factory)) {}
    // Only a server that never served can go without close() and the loop still open.
    ~ServerImpl() override {
        if (!detached_ && core_.debug()) [[unlikely]]
            if (std::string m = unclosed(); !m.empty()) core_.log(LogLevel::warning, m);
    }

    std::string unclosed() const override {
        if (closed_) return {};
        std::string where;
        for (auto& l : listeners_) where += (where.empty() ? "" : ", ") + l->address.to_string();
        return fmt::format("unclosed server (listening on {})", where);
    }

    // The loop closed first: its accepts were cancelled, so the fds can go, and so can the
    // loop's reference. Waiters are left pending (the loop cannot run them any more).
    void loop_closed() override {
        closed_ = true;
        serving_ = false;
        detached_ = true;
        for (auto& l : listeners_) {
            l->armed = false;
            l->maybe_close();
        }
        clients_ = nullptr;            // the transports are let go of in their own loop_closed()
        auto self = std::move(self_);  // may free this server on return
    }

    void add_listener(int fd, const std::string& unix_path = {}) {
        listeners_.push_back(std::make_unique<Listener>(*this, fd));
        struct stat st {};
        if (!unix_path.empty() && ::stat(unix_path.c_str(), &st) == 0) {
            listeners_.back()->unix_path = unix_path;
            listeners_.back()->unix_dev = st.st_dev;
            listeners_.back()->unix_ino = st.st_ino;
        }
    }

    void close() override {
        if (closed_ || detached_) return;
        closed_ = true;
        serving_ = false;
        for (auto& l : listeners_) {
            l->retry.cancel();
            l->cancel();
            l->maybe_close();
        }
        maybe_finish();
    }
    void close_clients() override {
        for_each_client([](Transport& t) { t.close(); });
    }
    void abort_clients() override {
        for_each_client([](Transport& t) { t.abort(); });
    }
    // As asyncio 3.12: done once the server is closed and every connection it accepted has
    // been lost.
    Future<void> wait_closed() override {
        if (detached_) throw LoopError("wait_closed() on a server whose loop is closed");
        Future<void> f(core_.loop);
        if (closed_ && open_listeners() == 0 && active_ == 0)
            f.set_result();
        else
            waiters_.push_back(f);
        return f;
    }
    bool is_serving() const override { return serving_; }
    void start_serving() override {
        if (serving_ || closed_ || detached_) return;
        serving_ = true;
        self_ = shared_from_this();
        for (auto& l : listeners_)
            if (!l->armed) l->arm();
    }
    Future<void> serve_forever() override {
        if (closed_ || detached_) throw std::logic_error("server is closed");
        start_serving();
        Future<void> f(core_.loop);
        // Cancelling serve_forever closes the server, as in asyncio.
        f.add_done_callback([self = shared_from_this()] { self->close(); });
        forever_.push_back(f);
        return f;
    }
    std::vector<int> sockets() const override {
        std::vector<int> out;
        for (auto& l : listeners_)
            if (!l->fd_closed) out.push_back(l->fd);
        return out;
    }
    std::vector<SocketAddress> addresses() const override {
        std::vector<SocketAddress> out;
        for (auto& l : listeners_) out.push_back(l->address);
        return out;
    }
    EventLoop& get_loop() const override { return core_.loop; }

private:
    struct Listener final : uring::Op {
        ServerImpl& server;
        int fd;
        SocketAddress address;
        bool armed = false;
        bool multishot = false;
        bool fd_closed = false;
        bool backing_off = false;  // a retry after an accept error is pending
        TimerHandle retry;
        Listener(ServerImpl& s, int f) : server(s), fd(f), address(sockname_of(f)) {}
        ~Listener() {
            if (!fd_closed) ::close(fd);
        }
        void arm() {
            io_uring_sqe* s = server.core_.ring.sqe();
            multishot = server.core_.ring.features().multishot_accept;
            if (multishot)
                io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
            else
                io_uring_prep_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
            io_uring_sqe_set_data(s, static_cast<uring::Op*>(this));
            armed = true;
        }
        void cancel() {
            if (!armed) return;
            server.core_.ring.cancel(*this);
        }
        void maybe_close() {
            if (armed || fd_closed) return;
            fd_closed = true;
            ::close(fd);
            // A Unix socket file goes with its server unless something else has replaced it
            // (asyncio 3.13's cleanup_socket).
            struct stat st {};
            if (!unix_path.empty() && ::stat(unix_path.c_str(), &st) == 0 &&
                st.st_dev == unix_dev && st.st_ino == unix_ino)
                ::unlink(unix_path.c_str());
        }
        std::string unix_path;  // a Unix socket file this listener created
        dev_t unix_dev = 0;
        ino_t unix_ino = 0;
        void complete(int res, unsigned flags) override {
            if (!(flags & IORING_CQE_F_MORE)) armed = false;
            if (res >= 0) {
                server.accepted(res);
            } else if (!server.closed_ && !transient(res)) {
                // Out of fds or memory (asyncio's case), or anything unexpected: keep the
                // server, report, and stop accepting for a moment rather than spin on it.
                const bool resources =
                    res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM;
                const double now = server.core_.time();
                if (now >= server.next_accept_report_) {
                    std::string more;
                    if (server.unreported_accept_errors_ != 0)
                        more = fmt::format(" ({} more since the last report)",
                                           server.unreported_accept_errors_);
                    server.core_.call_exception_handler(ExceptionContext{
                        fmt::format(
                            "accept() {} ({}); retrying every {} s, reported once per {} s{}",
                            resources ? "out of system resource" : "failed", std::strerror(-res),
                            accept_retry_delay, accept_report_interval, more),
                        nullptr, nullptr});
                    server.unreported_accept_errors_ = 0;
                    server.next_accept_report_ = now + accept_report_interval;
                } else {
                    ++server.unreported_accept_errors_;
                }
                if (armed) cancel();
                backing_off = true;
                retry.cancel();
                retry = server.core_.call_at(server.core_.time() + accept_retry_delay, [this] {
                    backing_off = false;
                    if (server.serving_ && !armed) arm();
                });
            }
            if (!armed) {
                if (server.closed_) {
                    maybe_close();
                    server.maybe_finish();
                } else if (server.serving_ && !backing_off) {
                    arm();
                }
            }
        }
        // Errors of one connection that came and went, or of our own cancel: accept again.
        static bool transient(int res) {
            return res == -ECONNABORTED || res == -EINTR || res == -EAGAIN || res == -EPROTO ||
                   res == -EPERM || res == -ECANCELED || res == -ENETDOWN || res == -ENETUNREACH ||
                   res == -EHOSTUNREACH || res == -EHOSTDOWN || res == -ENONET ||
                   res == -EOPNOTSUPP || res == -ETIMEDOUT;
        }
    };

    void accepted(int fd) {
        if (closed_) {
            ::close(fd);
            return;
        }
        std::unique_ptr<BaseProtocol> protocol;
        try {
            protocol = factory_();
            auto t = make_socket_transport(core_, fd, std::move(protocol));
            ++active_;
            link(t.get());
            t->set_lost_hook([w = weak_from_this(), tp = t.get()] {
                if (auto s = w.lock()) s->connection_finished(tp);
            });
        } catch (...) {
            ::close(fd);
            report(core_, std::current_exception(),
                   "protocol factory failed for an accepted socket");
        }
    }
    std::size_t open_listeners() const {
        std::size_t n = 0;
        for (auto& l : listeners_) n += !l->fd_closed;
        return n;
    }
    void connection_finished(SocketTransport* t) {
        unlink(t);
        --active_;
        maybe_finish();
    }
    // The live connections, newest first, linked through the transports themselves.
    void link(SocketTransport* t) {
        t->server_prev = nullptr;
        t->server_next = clients_;
        if (clients_) clients_->server_prev = t;
        clients_ = t;
    }
    void unlink(SocketTransport* t) {
        if (t->server_prev)
            t->server_prev->server_next = t->server_next;
        else
            clients_ = t->server_next;
        if (t->server_next) t->server_next->server_prev = t->server_prev;
        t->server_prev = t->server_next = nullptr;
    }
    template <class F>
    void for_each_client(F f) {
        if (detached_) return;
        for (SocketTransport* t = clients_; t != nullptr;) {
            SocketTransport* next = t->server_next;  // f may end t's connection
            // A TLS connection is closed at the TLS level (close_notify, then the socket).
            Transport* target = t;
            if (auto* p = dynamic_cast<SslLowerProtocol*>(t->get_protocol()); p && p->tls())
                target = p->tls().get();
            f(*target);
            t = next;
        }
    }
    void maybe_finish() {
        if (!closed_ || open_listeners() != 0) return;
        for (auto& f : std::exchange(forever_, {}))
            if (!f.done()) f.set_result();
        if (active_ != 0) return;  // self_ stays, so that wait_closed's waiters complete
        for (auto& f : std::exchange(waiters_, {}))
            if (!f.done()) f.set_result();
        if (self_) core_.post([self = std::move(self_)] {});
    }

    LoopCore& core_;
    ProtocolFactory factory_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::vector<Future<void>> waiters_;
    std::vector<Future<void>> forever_;
    std::shared_ptr<ServerImpl> self_;    // while listening ops may complete
    std::size_t active_ = 0;              // accepted connections not yet lost
    SocketTransport* clients_ = nullptr;  // those connections (intrusive list)
    double next_accept_report_ =
        -std::numeric_limits<double>::infinity();  // errors before: counted
    std::size_t unreported_accept_errors_ = 0;
    bool detached_ = false;  // the loop closed first
    bool serving_ = false;
    bool closed_ = false;
};

int listen_socket(const SocketAddress& addr, const ServerOptions& o) {
    FdGuard fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) throw std::system_error(errno, std::system_category(), "socket()");
    int one = 1;
    if (addr.family() != AF_UNIX) {
        if (o.reuse_address.value_or(true))
            setsockopt(fd.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (o.reuse_port && setsockopt(fd.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
            throw std::system_error(errno, std::system_category(), "SO_REUSEPORT");
        // Each family gets its own socket, so that an empty host serves IPv4 and IPv6 alike.
        if (addr.family() == AF_INET6)
            setsockopt(fd.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd.fd, addr.get(), addr.length) != 0)
        throw std::system_error(errno, std::system_category(),
                                "error while attempting to bind on address " + addr.to_string());
    if (::listen(fd.fd, o.backlog) != 0)
        throw std::system_error(errno, std::system_category(), "listen()");
    return fd.release();
}

Task<std::shared_ptr<Server>> server_task(EventLoop& loop, ProtocolFactory factory,
                                          std::vector<std::string> hosts, std::uint16_t port,
                                          ServerOptions options) {
    if (options.ssl) factory = ssl_server_factory(loop.core(), std::move(factory), options);
    auto server = std::make_shared<ServerImpl>(loop.core(), std::move(factory));
    // A server that fails to start is closed, not left for the debug mode to report.
    struct CloseUnlessStarted {
        ServerImpl* s;
        bool started = false;
        ~CloseUnlessStarted() {
            if (!started) s->close();
        }
    } guard{server.get()};
    if (hosts.empty()) hosts.push_back("");
    for (const std::string& host : hosts) {
        auto infos = co_await resolve(loop, host, port, options.family, SOCK_STREAM,
                                      options.flags | AI_PASSIVE);
        for (const AddrInfo& ai : infos) {
            if (ai.socktype != 0 && ai.socktype != SOCK_STREAM) continue;
            server->add_listener(listen_socket(ai.address, options));
        }
    }
    if (server->sockets().empty())
        throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                "no address to listen on");
    if (options.start_serving) server->start_serving();
    guard.started = true;
    co_return server;
}

}  // namespace

std::shared_ptr<Server> make_unix_server(LoopCore& core, ProtocolFactory factory,
                                         const std::string& path, const ServerOptions& options) {
    SocketAddress addr = SocketAddress::from_unix(path);
    // A stale socket file from an earlier run is replaced, as asyncio does.
    struct stat st {};
    if (path[0] != '\0' && path[0] != '@' && ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(path.c_str());
    if (options.ssl) factory = ssl_server_factory(core, std::move(factory), options);
    auto server = std::make_shared<ServerImpl>(core, std::move(factory));
    const bool on_disk = path[0] != '\0' && path[0] != '@';
    server->add_listener(listen_socket(addr, options), on_disk ? path : std::string());
    if (options.start_serving) server->start_serving();
    return server;
}

}  // namespace aioring::detail

namespace aioring {

Future<std::shared_ptr<Server>> EventLoop::create_server(ProtocolFactory factory, std::string host,
                                                         std::uint16_t port,
                                                         ServerOptions options) {
    return create_server(std::move(factory), std::vector<std::string>{std::move(host)}, port,
                         std::move(options));
}

Future<std::shared_ptr<Server>> EventLoop::create_server(ProtocolFactory factory,
                                                         std::vector<std::string> hosts,
                                                         std::uint16_t port,
                                                         ServerOptions options) {
    return create_task(
        detail::server_task(*this, std::move(factory), std::move(hosts), port, std::move(options)));
}

Future<std::shared_ptr<Server>> EventLoop::create_unix_server(ProtocolFactory factory,
                                                              std::string path,
                                                              ServerOptions options) {
    Future<std::shared_ptr<Server>> f(*this);
    try {
        f.set_result(detail::make_unix_server(*core_, std::move(factory), path, options));
    } catch (...) {
        f.set_exception(std::current_exception());
    }
    return f;
}

}  // namespace aioring
