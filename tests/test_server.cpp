// SPDX-License-Identifier: Apache-2.0
// Servers: create_server on IPv4, IPv6 and every interface, the Server object's lifecycle
// (start_serving, is_serving, close, wait_closed, serve_forever), fd exhaustion on accept, and
// close_clients/abort_clients.
#include "support.hpp"
#include "tls_certs.hpp"

#include <dirent.h>
#include <sys/resource.h>

using namespace testing;

namespace {

struct Counter {
    int made = 0, lost = 0;
};

class Counting : public EchoProtocol {
public:
    explicit Counting(Counter& c) : c_(c) {}
    void connection_made(Transport& t) override {
        EchoProtocol::connection_made(t);
        ++c_.made;
    }
    void connection_lost(std::error_code) override { ++c_.lost; }

private:
    Counter& c_;
};

ProtocolFactory counting(Counter& c) {
    return [&c] { return std::make_unique<Counting>(c); };
}

bool has_family(const std::vector<SocketAddress>& v, int family) {
    for (auto& a : v)
        if (a.family() == family) return true;
    return false;
}

// Lowers the soft fd limit for one scope.
struct FdLimit {
    rlimit old{};
    explicit FdLimit(rlim_t soft) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
        rlimit l = old;
        l.rlim_cur = std::min<rlim_t>(soft, old.rlim_cur);
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &l) == 0);
    }
    ~FdLimit() { ::setrlimit(RLIMIT_NOFILE, &old); }
};

int highest_open_fd() {
    int high = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (dirent* e = ::readdir(d)) high = std::max(high, std::atoi(e->d_name));
        ::closedir(d);
    }
    return high;
}

}  // namespace

TEST_SUITE("server") {
    TEST_CASE("create_server with an empty host listens on IPv4 and IPv6") {
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        auto server = run(loop, loop.create_server(counting(c), "", 0));
        const auto addrs = server->addresses();
        CHECK(has_family(addrs, AF_INET));
        CHECK(has_family(addrs, AF_INET6));
        CHECK(server->sockets().size() == addrs.size());
        int expected = 0;
        std::vector<int> clients;
        for (auto& a : addrs) {
            int fd = tcp_connect(a.port(), a.family());
            REQUIRE(fd >= 0);
            clients.push_back(fd);
            ++expected;
            REQUIRE(run_until(loop, [&] { return c.made == expected; }));
            REQUIRE(::write(fd, "hi", 2) == 2);
            CHECK(peer_read(loop, fd, 2) == "hi");
        }
        for (int fd : clients) ::close(fd);
        REQUIRE(run_until(loop, [&] { return c.lost == expected; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("::1 works for servers and clients, and peername prints as [HOST]:PORT") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        auto server = run(loop, loop.create_server(counting(c), "::1", 0));
        REQUIRE(server->addresses().size() == 1);
        CHECK(server->addresses()[0].family() == AF_INET6);
        const auto port = server->addresses()[0].port();
        auto conn =
            run(loop, loop.create_connection(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, "::1", port));
        conn.transport->write("six");
        REQUIRE(run_until(loop, [&] { return ev.data == "six"; }));
        CHECK(conn.transport->extra<SocketAddress>("peername")->to_string() ==
              "[::1]:" + std::to_string(port));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("create_server with a list of hosts listens on each") {
        EventLoop loop;
        Counter c;
        auto server = run(
            loop, loop.create_server(counting(c), std::vector<std::string>{"127.0.0.1", "::1"}, 0));
        CHECK(server->addresses().size() == 2);
        CHECK(has_family(server->addresses(), AF_INET));
        CHECK(has_family(server->addresses(), AF_INET6));
        server->close();
        run(loop, server->wait_closed());
    }

    TEST_CASE("a taken port fails create_server with address_in_use; reuse_port shares it") {
        EventLoop loop;
        Counter c;
        auto first = run(loop, loop.create_server(counting(c), "127.0.0.1", 0));
        const auto port = first->addresses()[0].port();
        auto f = loop.create_server(counting(c), "127.0.0.1", port);
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        try {
            f.result();
            FAIL("bound a port that is in use");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::address_in_use);
        }
        first->close();
        run(loop, first->wait_closed());

        ServerOptions o;
        o.reuse_port = true;
        auto a = run(loop, loop.create_server(counting(c), "127.0.0.1", 0, o));
        auto b =
            run(loop, loop.create_server(counting(c), "127.0.0.1", a->addresses()[0].port(), o));
        CHECK(b->addresses()[0].port() == a->addresses()[0].port());
        a->close();
        b->close();
        run(loop, a->wait_closed());
        run(loop, b->wait_closed());
    }

    TEST_CASE("start_serving=false: nothing is accepted until start_serving()") {
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        ServerOptions o;
        o.start_serving = false;
        auto server = run(loop, loop.create_server(counting(c), "127.0.0.1", 0, o));
        CHECK(!server->is_serving());
        int fd = tcp_connect(server->addresses()[0].port());  // completes from the backlog
        REQUIRE(fd >= 0);
        bool waited = false;
        loop.call_later(0.02, [&] { waited = true; });
        REQUIRE(run_until(loop, [&] { return waited; }));
        CHECK(c.made == 0);
        server->start_serving();
        server->start_serving();  // idempotent
        CHECK(server->is_serving());
        REQUIRE(run_until(loop, [&] { return c.made == 1; }));
        ::close(fd);
        REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("close() stops listening; wait_closed waits for the open connections too") {
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        auto server = run(loop, loop.create_server(counting(c), "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        int fd = tcp_connect(port);
        REQUIRE(fd >= 0);
        REQUIRE(run_until(loop, [&] { return c.made == 1; }));
        server->close();
        server->close();  // idempotent
        CHECK(!server->is_serving());
        auto closed = server->wait_closed();
        REQUIRE(run_until(loop, [&] { return server->sockets().empty(); }));
        CHECK(tcp_connect(port) < 0);  // refused: nobody listens
        // The accepted connection is still open and working.
        REQUIRE(::write(fd, "still", 5) == 5);
        CHECK(peer_read(loop, fd, 5) == "still");
        CHECK(!closed.done());
        ::close(fd);
        REQUIRE(run_until(loop, [&] { return closed.done(); }));
        CHECK(c.lost == 1);
        CHECK(server->wait_closed().valid());
        run(loop, server->wait_closed());  // done at once now
        server->start_serving();           // no effect on a closed server
        CHECK(!server->is_serving());
        CHECK(log.count == 0);
    }

    TEST_CASE("serve_forever serves until cancelled, and cancelling it closes the server") {
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        ServerOptions o;
        o.start_serving = false;
        auto server = run(loop, loop.create_server(counting(c), "127.0.0.1", 0, o));
        auto forever = server->serve_forever();
        CHECK(server->is_serving());
        int fd = tcp_connect(server->addresses()[0].port());
        REQUIRE(run_until(loop, [&] { return c.made == 1; }));
        CHECK(!forever.done());
        ::close(fd);
        REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
        forever.cancel();
        REQUIRE(run_until(loop, [&] { return forever.done() && !server->is_serving(); }));
        CHECK(forever.cancelled());
        run(loop, server->wait_closed());
        CHECK(server->sockets().empty());
        CHECK_THROWS_AS(server->serve_forever(), std::logic_error);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "serve_forever awaited in a task ends with CancelledError when the task is cancelled") {
        EventLoop loop;
        Counter c;
        auto server = run(loop, loop.create_server(counting(c), "127.0.0.1", 0));
        auto body = [](std::shared_ptr<Server> s) -> Task<> { co_await s->serve_forever(); };
        auto task = loop.create_task(body(server));
        bool tick = false;
        loop.call_later(0.01, [&] { tick = true; });
        REQUIRE(run_until(loop, [&] { return tick; }));
        task.cancel();
        REQUIRE(run_until(loop, [&] { return task.done(); }));
        CHECK(task.cancelled());
        run(loop, server->wait_closed());
        CHECK(!server->is_serving());
    }

    TEST_CASE(
        "a server out of fds (EMFILE on accept) keeps running and accepts again once fds are "
        "free") {
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        std::vector<int> clients;
        {
            // The kernel reads the fd limit when an accept is prepared, so the server starts
            // under the lowered limit.
            FdLimit limit(static_cast<rlim_t>(highest_open_fd() + 64));
            auto server = run(loop, loop.create_server(counting(c), "127.0.0.1", 0));
            const auto port = server->addresses()[0].port();
            // The clients' sockets exist before the fd table is filled; connect needs no new fd.
            for (int i = 0; i < 3; ++i)
                clients.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            std::vector<int> filler;
            for (int i = 0; i < 100000; ++i) {
                int fd = ::dup(clients[0]);
                if (fd < 0) {
                    CHECK(errno == EMFILE);
                    break;
                }
                filler.push_back(fd);
            }
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(port);
            for (int fd : clients)
                REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
            REQUIRE(run_until(loop, [&] { return log.count >= 1; }));
            CHECK(c.made == 0);
            CHECK(server->is_serving());
            for (int fd : filler) ::close(fd);
            REQUIRE(run_until(loop, [&] { return c.made == 3; }));
            REQUIRE(!log.messages.empty());
            CHECK(log.messages[0].find("accept") != std::string::npos);
            // Every accepted connection works.
            for (int fd : clients) {
                REQUIRE(::write(fd, "ok", 2) == 2);
                CHECK(peer_read(loop, fd, 2) == "ok");
                ::close(fd);
            }
            REQUIRE(run_until(loop, [&] { return c.lost == 3; }));
            server->close();
            run(loop, server->wait_closed());
        }
    }

    TEST_CASE("a protocol factory that throws is reported and the server goes on") {
        EventLoop loop;
        ExceptionLog log(loop);
        Counter c;
        bool fail = true;
        auto server = run(loop, loop.create_server(
                                    [&]() -> std::unique_ptr<BaseProtocol> {
                                        if (std::exchange(fail, false))
                                            throw std::runtime_error("factory");
                                        return std::make_unique<Counting>(c);
                                    },
                                    "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        int a = tcp_connect(port);
        REQUIRE(run_until(loop, [&] { return log.count == 1; }));
        CHECK(peer_read_to_eof(loop, a).empty());  // that connection was closed
        int b = tcp_connect(port);
        REQUIRE(run_until(loop, [&] { return c.made == 1; }));
        ::close(a);
        ::close(b);
        REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
    }
}

namespace {
// Writes `n` bytes on connection_made and records its own connection_lost.
class Writer : public Protocol {
public:
    Writer(Counter& c, std::size_t n, std::vector<Transport*>& ts) : c_(c), n_(n), ts_(ts) {}
    void connection_made(Transport& t) override {
        ++c_.made;
        t_ = &t;
        ts_.push_back(&t);
        if (n_ != 0) t.write(std::string(n_, 'w'));
    }
    void connection_lost(std::error_code ec) override {
        ++c_.lost;
        if (ec) ++errors;
        std::erase(ts_, t_);
    }
    static inline int errors = 0;

private:
    Counter& c_;
    std::size_t n_;
    std::vector<Transport*>& ts_;
    Transport* t_ = nullptr;
};

int small_rcvbuf_connect(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}
}  // namespace

TEST_SUITE("close_clients and abort_clients") {
    TEST_CASE(
        "close_clients flushes and closes every accepted connection; new ones are not touched") {
        Counter c;
        std::vector<Transport*> ts;
        EventLoop loop;
        ExceptionLog log(loop);
        constexpr std::size_t n = 256 * 1024;
        auto server = run(
            loop,
            loop.create_server([&] { return std::make_unique<Writer>(c, n, ts); }, "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        int a = tcp_connect(port), b = tcp_connect(port);
        REQUIRE(run_until(loop, [&] { return c.made == 2; }));
        server->close();  // first, as asyncio advises: no new client slips in
        server->close_clients();
        // Each client gets everything that was buffered, then EOF.
        CHECK(peer_read_to_eof(loop, a) == std::string(n, 'w'));
        CHECK(peer_read_to_eof(loop, b) == std::string(n, 'w'));
        REQUIRE(run_until(loop, [&] { return c.lost == 2; }));
        CHECK(Writer::errors == 0);
        run(loop, server->wait_closed());
        server->close_clients();  // nothing left: no effect
        ::close(a);
        ::close(b);
        CHECK(log.count == 0);
    }

    TEST_CASE("close_clients leaves the server listening, and later clients are served") {
        Counter c;
        std::vector<Transport*> ts;
        EventLoop loop;
        ExceptionLog log(loop);
        auto server = run(
            loop,
            loop.create_server([&] { return std::make_unique<Writer>(c, 0, ts); }, "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        int a = tcp_connect(port);
        REQUIRE(run_until(loop, [&] { return c.made == 1; }));
        server->close_clients();
        CHECK(peer_read_to_eof(loop, a).empty());
        REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
        CHECK(server->is_serving());
        int b = tcp_connect(port);
        REQUIRE(run_until(loop, [&] { return c.made == 2; }));
        REQUIRE(::write(b, "x", 1) == 1);
        CHECK(c.lost == 1);  // the new one is open
        server->close();
        server->abort_clients();
        REQUIRE(run_until(loop, [&] { return c.lost == 2; }));
        run(loop, server->wait_closed());
        ::close(a);
        ::close(b);
        CHECK(log.count == 0);
    }

    TEST_CASE("abort_clients drops what is buffered and calls connection_lost at once") {
        Counter c;
        std::vector<Transport*> ts;
        EventLoop loop;
        ExceptionLog log(loop);
        constexpr std::size_t n = 32 * 1024 * 1024;  // far more than the kernel buffers hold
        auto server = run(
            loop,
            loop.create_server([&] { return std::make_unique<Writer>(c, n, ts); }, "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        int a = small_rcvbuf_connect(port);
        REQUIRE(run_until(loop, [&] { return c.made == 1; }));
        run_iterations(loop, 4);  // the first sends go out and fill the socket buffers
        REQUIRE(ts.size() == 1);
        const WriteTransport* t = dynamic_cast<WriteTransport*>(ts[0]);
        REQUIRE(t->get_write_buffer_size() > 0);
        server->abort_clients();
        REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
        std::string got;
        bool eof = false;
        CHECK(read_while_running(
            loop, a, got, [&](const std::string&) { return eof; }, &eof));
        CHECK(got.size() < n);  // the rest was dropped
        CHECK(got == std::string(got.size(), 'w'));
        server->close();
        run(loop, server->wait_closed());
        ::close(a);
        CHECK(log.count == 0);
    }

    TEST_CASE("close_clients on a start_server server: handlers read EOF, clients too") {
        EventLoop loop;
        ExceptionLog log(loop);
        int started = 0, eofs = 0;
        auto cb = [&started, &eofs](StreamReader r, StreamWriter w) -> Task<void> {
            ++started;
            w.write("hello\n");
            std::string got = co_await r.read(100);  // the clients never send anything
            if (got.empty() && r.at_eof()) ++eofs;
        };
        auto server = run(loop, start_server(cb, "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        int c1 = tcp_connect(port), c2 = tcp_connect(port);
        CHECK(peer_read(loop, c1, 6) == "hello\n");
        CHECK(peer_read(loop, c2, 6) == "hello\n");
        server->close_clients();
        REQUIRE(run_until(loop, [&] { return eofs == 2; }));
        CHECK(started == 2);
        CHECK(peer_read_to_eof(loop, c1) == "");
        CHECK(peer_read_to_eof(loop, c2) == "");
        server->close();
        run(loop, server->wait_closed());
        ::close(c1);
        ::close(c2);
        CHECK(log.count == 0);
    }

    TEST_CASE("close_clients on a TLS server closes at the TLS level: clients see EOF, no error") {
        Counter c;
        std::vector<Transport*> ts;
        Events client;
        EventLoop loop;
        ExceptionLog log(loop);
        ServerOptions so;
        so.ssl = server_ctx();
        auto server =
            run(loop, loop.create_server([&] { return std::make_unique<Writer>(c, 5, ts); },
                                         "127.0.0.1", 0, so));
        ConnectOptions co;
        co.ssl = client_ctx();
        co.server_hostname = "localhost";
        auto conn = run(loop, loop.create_connection(
                                  [&] { return std::make_unique<RecordingProtocol>(client); },
                                  "127.0.0.1", server->addresses()[0].port(), co));
        REQUIRE(run_until(loop, [&] { return client.data == "wwwww"; }));
        server->close_clients();
        REQUIRE(run_until(loop, [&] { return client.lost == 1 && c.lost == 1; }));
        CHECK(client.eof == 1);  // close_notify came first
        CHECK(!client.lost_error);
        CHECK(client.order_ok);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("close_clients and abort_clients after the loop closed do nothing") {
        Counter c;
        std::vector<Transport*> ts;
        std::shared_ptr<Server> server;
        int a;
        {
            EventLoop loop;
            server =
                run(loop, loop.create_server([&] { return std::make_unique<Writer>(c, 0, ts); },
                                             "127.0.0.1", 0));
            a = tcp_connect(server->addresses()[0].port());
            REQUIRE(run_until(loop, [&] { return c.made == 1; }));
            loop.close();
            CHECK_NOTHROW(server->close_clients());
            CHECK_NOTHROW(server->abort_clients());
        }
        CHECK_NOTHROW(server->close_clients());
        ::close(a);
    }

}  // TEST_SUITE
