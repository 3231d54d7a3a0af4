// SPDX-License-Identifier: Apache-2.0
// Servers: create_server on IPv4, IPv6 and every interface, the Server object's lifecycle
// (start_serving, is_serving, close, wait_closed, serve_forever) and fd exhaustion on accept.
#include "support.hpp"

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
    auto conn = run(loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                                 "::1", port));
    conn.transport->write("six");
    REQUIRE(run_until(loop, [&] { return ev.data == "six"; }));
    CHECK(conn.transport->extra<SocketAddress>("peername")->to_string() == "[::1]:" + std::to_string(port));
    conn.transport->close();
    REQUIRE(run_until(loop, [&] { return c.lost == 1; }));
    server->close();
    run(loop, server->wait_closed());
    CHECK(log.count == 0);
}

TEST_CASE("create_server with a list of hosts listens on each") {
    EventLoop loop;
    Counter c;
    auto server = run(loop, loop.create_server(counting(c), std::vector<std::string>{"127.0.0.1", "::1"}, 0));
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
    auto b = run(loop, loop.create_server(counting(c), "127.0.0.1", a->addresses()[0].port(), o));
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

TEST_CASE("serve_forever awaited in a task ends with CancelledError when the task is cancelled") {
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

TEST_CASE("a server out of fds (EMFILE on accept) keeps running and accepts again once fds are free") {
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
        for (int i = 0; i < 3; ++i) clients.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
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
        for (int fd : clients) REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
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
                                    if (std::exchange(fail, false)) throw std::runtime_error("factory");
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
