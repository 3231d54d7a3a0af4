// SPDX-License-Identifier: Apache-2.0
// Happy eyeballs (RFC 8305) in create_connection and open_connection, as asyncio 3.8+ has it:
// address interleaving by family, staggered attempts, the first connection wins, the others are
// cancelled and closed, every failure named. Real sockets on loopback: an address that never
// answers is a listening socket whose accept queue is full (the kernel drops the SYNs).
#include "support.hpp"
#include "tls_certs.hpp"

#include "../src/connect.hpp"

#include <dirent.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

using namespace testing;

namespace {

int fd_count() {
    int n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n - 1;  // the directory's own fd
}

const char* loopback(int family) { return family == AF_INET ? "127.0.0.1" : "::1"; }
int other(int family) { return family == AF_INET ? AF_INET6 : AF_INET; }

AddrInfo addr(int family, std::uint16_t port) {
    SocketAddress a = SocketAddress::from_ip(loopback(family), port);
    return AddrInfo{family, SOCK_STREAM, 0, "", a};
}

// A TCP socket bound to the loopback address of `family`; listening with `backlog` unless -1.
struct Sock {
    int fd = -1;
    std::uint16_t port = 0;
    int family;
    Sock(int fam, int backlog, std::uint16_t want_port = 0) : family(fam) {
        fd = ::socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        SocketAddress a = SocketAddress::from_ip(loopback(fam), want_port);
        if (::bind(fd, a.get(), a.length) != 0) {
            ::close(std::exchange(fd, -1));
            return;
        }
        if (backlog >= 0) REQUIRE(::listen(fd, backlog) == 0);
        port = sockname_of(fd).port();
    }
    ~Sock() {
        if (fd >= 0) ::close(fd);
    }
    bool ok() const { return fd >= 0; }
    AddrInfo info() const { return addr(family, port); }
    // Connections completed and waiting in the accept queue.
    unsigned queued() const {
        tcp_info ti{};
        socklen_t len = sizeof ti;
        REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
        return ti.tcpi_unacked;  // a listener reports its accept queue length here
    }
};

// Never answers: listen(fd, 0) takes one connection into the accept queue and, once that one
// is there (never accepted), the kernel drops every further SYN — with or without syncookies.
struct Unanswering : Sock {
    int filler = -1;
    explicit Unanswering(int fam, std::uint16_t want_port = 0) : Sock(fam, 0, want_port) {
        if (!ok()) return;
        filler = tcp_connect(port, fam);
        REQUIRE(filler >= 0);
        REQUIRE(queued() == 1);
    }
    ~Unanswering() {
        if (filler >= 0) ::close(filler);
    }
};

// Refuses: bound, not listening (the SYN gets a RST).
struct Refusing : Sock {
    explicit Refusing(int fam) : Sock(fam, -1) {}
};

// Sockets of this network namespace in SYN_SENT towards `port` (from /proc/net/tcp{,6}).
int syn_sent_to(std::uint16_t port) {
    int n = 0;
    for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(path);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string slot, local, remote, state;
            ls >> slot >> local >> remote >> state;
            const auto colon = remote.rfind(':');
            if (colon == std::string::npos) continue;
            const auto rport =
                static_cast<std::uint16_t>(std::stoul(remote.substr(colon + 1), nullptr, 16));
            if (rport == port && state == "02") ++n;
        }
    }
    return n;
}

struct Counting : Protocol {
    int* made;
    explicit Counting(int* m) : made(m) {}
    void connection_made(Transport&) override { ++*made; }
};

ProtocolFactory counting(int& made, int& created) {
    return [&made, &created] {
        ++created;
        return std::make_unique<Counting>(&made);
    };
}

ConnectOptions eyeballs(double delay) {
    ConnectOptions o;
    o.happy_eyeballs_delay = delay;
    return o;
}

std::string failure_of(EventLoop& loop, Future<Connection<>> f, std::error_code* ec = nullptr) {
    REQUIRE(run_until(loop, [&] { return f.done(); }));
    try {
        f.result();
    } catch (const std::system_error& e) {
        if (ec) *ec = e.code();
        return e.what();
    }
    FAIL("the connection did not fail");
    return "";
}

std::uint16_t peer_port(const Connection<>& c) {
    return c.transport->extra<SocketAddress>("peername").value_or(SocketAddress{}).port();
}
int peer_family(const Connection<>& c) {
    return c.transport->extra<SocketAddress>("peername").value_or(SocketAddress{}).family();
}

void close_and_wait(EventLoop& loop, const Connection<>& c) {
    c.transport->close();
    REQUIRE(run_until(loop, [&] { return c.transport->is_closing(); }));
}

// Runs `body` in a child process whose own mount namespace has `hosts` as /etc/hosts, so that
// a name resolves to both loopback addresses through the real getaddrinfo. The child's exit
// status (77: the namespace could not be made); `message` gets what the child wrote.
int with_hosts_file(const std::string& hosts, const std::function<std::string()>& body,
                    std::string& message) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(out[0]);
        auto say = [&](const std::string& m) { (void)!::write(out[1], m.data(), m.size()); };
        const std::string file = "/tmp/aioring-hosts-" + std::to_string(::getpid());
        if (::unshare(CLONE_NEWNS) != 0 ||
            ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
            say(std::string("no mount namespace: ") + std::strerror(errno));
            ::_exit(77);
        }
        {
            std::ofstream f(file);
            f << hosts;
        }
        const bool mounted = ::mount(file.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) == 0;
        const int err = errno;
        ::unlink(file.c_str());
        if (!mounted) {
            say(std::string("cannot bind-mount /etc/hosts: ") + std::strerror(err));
            ::_exit(77);
        }
        std::string failure;
        try {
            failure = body();
        } catch (const std::exception& e) {
            failure = std::string("exception: ") + e.what();
        }
        say(failure);
        ::_exit(failure.empty() ? 0 : 1);
    }
    ::close(out[1]);
    // The pipe closes when the child exits; the deadline only exists to fail the test.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    char buf[512];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{out[0], POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            ::kill(pid, SIGKILL);
            message += "(child timed out)";
            break;
        }
        const ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n <= 0) break;
        message.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `f` on `loop` for at most `timeout` seconds (no doctest in a forked child).
template <class T>
T run_child(EventLoop& loop, Future<T> f, double timeout = 10) {
    auto t = loop.call_later(timeout, [&loop] { loop.stop(); });
    return loop.run_until_complete(f);
}

}  // namespace

TEST_SUITE("happy eyeballs") {
    TEST_CASE("interleave alternates families, the first family's count going first") {
        auto ports = [](const std::vector<AddrInfo>& v) {
            std::vector<int> p;
            for (const auto& a : v)
                p.push_back(a.family == AF_INET6 ? 600 + a.address.port() : 400 + a.address.port());
            return p;
        };
        const std::vector<AddrInfo> in{addr(AF_INET6, 1), addr(AF_INET6, 2), addr(AF_INET6, 3),
                                       addr(AF_INET, 1), addr(AF_INET, 2)};
        CHECK(ports(detail::interleave_addrinfos(in, 0)) ==
              std::vector<int>{601, 602, 603, 401, 402});
        CHECK(ports(detail::interleave_addrinfos(in, 1)) ==
              std::vector<int>{601, 401, 602, 402, 603});
        CHECK(ports(detail::interleave_addrinfos(in, 2)) ==
              std::vector<int>{601, 602, 401, 603, 402});
        CHECK(ports(detail::interleave_addrinfos(in, 9)) ==
              std::vector<int>{601, 602, 603, 401, 402});
        // The family that comes first in getaddrinfo's answer leads.
        const std::vector<AddrInfo> v4_first{addr(AF_INET, 1), addr(AF_INET, 2), addr(AF_INET6, 1)};
        CHECK(ports(detail::interleave_addrinfos(v4_first, 1)) == std::vector<int>{401, 601, 402});
        const std::vector<AddrInfo> one_family{addr(AF_INET, 3), addr(AF_INET, 1)};
        CHECK(ports(detail::interleave_addrinfos(one_family, 1)) == std::vector<int>{403, 401});
        CHECK(detail::interleave_addrinfos({}, 1).empty());
    }

    TEST_CASE("bad delay or interleave throws std::invalid_argument at the call") {
        EventLoop loop;
        int made = 0, created = 0;
        ConnectOptions o = eyeballs(-0.25);
        CHECK_THROWS_AS(loop.create_connection(counting(made, created), "127.0.0.1", 1, o),
                        std::invalid_argument);
        o.happy_eyeballs_delay = std::nan("");
        CHECK_THROWS_AS(loop.create_connection(counting(made, created), "127.0.0.1", 1, o),
                        std::invalid_argument);
        o.happy_eyeballs_delay = 0.25;
        o.interleave = -1;
        CHECK_THROWS_AS(loop.create_connection(counting(made, created), "127.0.0.1", 1, o),
                        std::invalid_argument);
    }

    TEST_CASE("the other family's address wins after the delay while the first never answers") {
        for (int first : {AF_INET6, AF_INET}) {
            CAPTURE(first);
            EventLoop loop;
            ExceptionLog log(loop);
            Unanswering hang(first);
            Sock good(other(first), 16);
            const int base = fd_count();
            int made = 0, created = 0;
            auto f = detail::connect_to_addresses(loop, counting(made, created),
                                                  {hang.info(), good.info()}, "", eyeballs(0.05));
            auto conn = run(loop, f);
            CHECK(peer_port(conn) == good.port);
            CHECK(peer_family(conn) == other(first));
            CHECK(made == 1);
            CHECK(created == 1);
            // The attempt that never got an answer was cancelled and its socket closed: the
            // connection's own socket is the only new fd, and no SYN is pending to that port.
            CHECK(fd_count() == base + 1);
            CHECK(syn_sent_to(hang.port) == 0);
            CHECK(good.queued() == 1);
            close_and_wait(loop, conn);
            CHECK(log.count == 0);
        }
    }

    TEST_CASE(
        "interleave = 1 tries the other family second, before the first family's next address") {
        EventLoop loop;
        ExceptionLog log(loop);
        Unanswering hang1(AF_INET6), hang2(AF_INET6);
        Sock good(AF_INET, 16);
        const int base = fd_count();
        int made = 0, created = 0;
        // getaddrinfo's order: [::1] twice, then 127.0.0.1. The second attempt, on loopback,
        // connects well within the delay: the third never starts.
        auto f = detail::connect_to_addresses(loop, counting(made, created),
                                              {hang1.info(), hang2.info(), good.info()}, "",
                                              eyeballs(0.25));
        bool second_v6_tried = false;
        REQUIRE(run_until_polling(loop, [&] {
            if (syn_sent_to(hang2.port) != 0) second_v6_tried = true;
            return f.done();
        }));
        auto conn = f.result();
        CHECK(peer_port(conn) == good.port);
        CHECK(!second_v6_tried);
        CHECK(fd_count() == base + 1);
        CHECK(syn_sent_to(hang1.port) == 0);
        CHECK(syn_sent_to(hang2.port) == 0);
        close_and_wait(loop, conn);
        CHECK(log.count == 0);
    }

    TEST_CASE("a new attempt starts every delay while the earlier ones are still pending") {
        EventLoop loop;
        ExceptionLog log(loop);
        Unanswering hang1(AF_INET6), hang2(AF_INET), hang3(AF_INET6);
        const int base = fd_count();
        int made = 0, created = 0;
        ConnectOptions o = eyeballs(0.02);
        o.interleave = 0;  // as given
        auto f = detail::connect_to_addresses(loop, counting(made, created),
                                              {hang1.info(), hang2.info(), hang3.info()}, "", o);
        // All three attempts are in flight at the same time.
        REQUIRE(run_until_polling(loop, [&] {
            return syn_sent_to(hang1.port) == 1 && syn_sent_to(hang2.port) == 1 &&
                   syn_sent_to(hang3.port) == 1;
        }));
        CHECK(fd_count() == base + 3);
        // Room in the middle one's accept queue: its retransmitted SYN gets through, and it wins
        // over the attempts started before and after it.
        const int filler = ::accept4(hang2.fd, nullptr, nullptr, SOCK_CLOEXEC);
        REQUIRE(filler >= 0);
        ::close(filler);
        auto conn = run(loop, f);
        CHECK(peer_port(conn) == hang2.port);
        CHECK(fd_count() == base + 1);
        CHECK(syn_sent_to(hang1.port) + syn_sent_to(hang3.port) == 0);
        close_and_wait(loop, conn);
        CHECK(made == 1);
        CHECK(log.count == 0);
    }

    TEST_CASE("a refused attempt starts the next one at once, without waiting for the delay") {
        // An hour's delay: waiting for it would run into the test's deadline.
        for (bool with_delay : {true, false}) {
            CAPTURE(with_delay);
            EventLoop loop;
            ExceptionLog log(loop);
            Refusing refused(AF_INET6);
            Sock good(AF_INET, 16);
            int made = 0, created = 0;
            ConnectOptions o = with_delay ? eyeballs(3600) : ConnectOptions{};
            auto f = detail::connect_to_addresses(loop, counting(made, created),
                                                  {refused.info(), good.info()}, "", o);
            auto conn = run(loop, f);
            CHECK(peer_port(conn) == good.port);
            CHECK(made == 1);
            close_and_wait(loop, conn);
            CHECK(log.count == 0);
        }
    }

    TEST_CASE("every attempt failing gives one error naming each address and its cause") {
        // With a delay interleave defaults to 1; without, to 0; it applies without a delay too.
        struct Config {
            std::optional<double> delay;
            std::optional<int> interleave;
            bool interleaved;
        };
        for (const Config& c : {Config{0.05, {}, true}, Config{{}, {}, false}, Config{{}, 1, true},
                                Config{0.05, 0, false}}) {
            CAPTURE(c.delay.has_value());
            CAPTURE(c.interleave.value_or(-1));
            EventLoop loop;
            ExceptionLog log(loop);
            Refusing r6(AF_INET6), r4(AF_INET), r6b(AF_INET6);
            const int base = fd_count();
            int made = 0, created = 0;
            ConnectOptions o;
            o.happy_eyeballs_delay = c.delay;
            o.interleave = c.interleave;
            std::error_code ec;
            const std::string what =
                failure_of(loop,
                           detail::connect_to_addresses(loop, counting(made, created),
                                                        {r6.info(), r6b.info(), r4.info()}, "", o),
                           &ec);
            CHECK(ec == std::errc::connection_refused);
            const std::string refused =
                ": " + std::make_error_code(std::errc::connection_refused).message();
            CHECK(what.rfind("Multiple exceptions: ", 0) == 0);
            CHECK(what.find("[::1]:" + std::to_string(r6.port) + refused) != std::string::npos);
            CHECK(what.find("127.0.0.1:" + std::to_string(r4.port) + refused) != std::string::npos);
            CHECK(what.find("[::1]:" + std::to_string(r6b.port) + refused) != std::string::npos);
            // In the order tried.
            const auto p6 = what.find("[::1]:" + std::to_string(r6.port) + ":");
            const auto p6b = what.find("[::1]:" + std::to_string(r6b.port) + ":");
            const auto p4 = what.find("127.0.0.1:" + std::to_string(r4.port) + ":");
            if (c.interleaved)
                CHECK((p6 < p4 && p4 < p6b));
            else
                CHECK((p6 < p6b && p6b < p4));
            CHECK(made == 0);
            CHECK(created == 0);
            CHECK(fd_count() == base);
            CHECK(log.count == 0);
        }
    }

    TEST_CASE("one address failing keeps its own error") {
        EventLoop loop;
        Refusing r(AF_INET);
        int made = 0, created = 0;
        std::error_code ec;
        const std::string what = failure_of(
            loop,
            loop.create_connection(counting(made, created), "127.0.0.1", r.port, eyeballs(0.25)),
            &ec);
        CHECK(ec == std::errc::connection_refused);
        CHECK(what.find("connect to 127.0.0.1:" + std::to_string(r.port) + " failed") == 0);
    }

    TEST_CASE("cancelling create_connection cancels every attempt and closes their sockets") {
        EventLoop loop;
        ExceptionLog log(loop);
        Unanswering hang6(AF_INET6), hang4(AF_INET);
        const int base = fd_count();
        int made = 0, created = 0;
        auto f = detail::connect_to_addresses(loop, counting(made, created),
                                              {hang6.info(), hang4.info()}, "", eyeballs(0.01));
        REQUIRE(run_until_polling(
            loop, [&] { return syn_sent_to(hang6.port) == 1 && syn_sent_to(hang4.port) == 1; }));
        CHECK(fd_count() == base + 2);
        f.cancel();
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK(f.cancelled());
        // Done means every attempt has ended: nothing is left open, nothing is still connecting.
        CHECK(fd_count() == base);
        CHECK(syn_sent_to(hang6.port) + syn_sent_to(hang4.port) == 0);
        run_until(
            loop, [] { return false; }, 0.1);
        CHECK(created == 0);
        CHECK(made == 0);
        CHECK(log.count == 0);
    }

    TEST_CASE("a loop closed during the attempts closes their sockets") {
        Unanswering hang6(AF_INET6), hang4(AF_INET);
        const int base = fd_count();
        {
            EventLoop loop;
            ExceptionLog log(loop);
            int made = 0, created = 0;
            auto f = detail::connect_to_addresses(loop, counting(made, created),
                                                  {hang6.info(), hang4.info()}, "", eyeballs(0.01));
            REQUIRE(run_until_polling(loop, [&] {
                return syn_sent_to(hang6.port) == 1 && syn_sent_to(hang4.port) == 1;
            }));
            loop.close();
            CHECK(!f.done());
            CHECK(created == 0);
            CHECK(log.count == 0);
        }
        CHECK(fd_count() == base);
        CHECK(syn_sent_to(hang6.port) + syn_sent_to(hang4.port) == 0);
    }

    TEST_CASE("cancelling open_connection during the attempts leaves no socket behind") {
        EventLoop loop;
        ExceptionLog log(loop);
        Unanswering hang(AF_INET);
        const int base = fd_count();
        ConnectOptions o = eyeballs(0.01);
        auto f = loop.create_task(open_connection("127.0.0.1", hang.port, default_stream_limit, o));
        REQUIRE(run_until_polling(loop, [&] { return syn_sent_to(hang.port) == 1; }));
        f.cancel();
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK(f.cancelled());
        CHECK(fd_count() == base);
        CHECK(syn_sent_to(hang.port) == 0);
        CHECK(log.count == 0);
    }

    TEST_CASE("without a delay the attempts stay one at a time") {
        EventLoop loop;
        ExceptionLog log(loop);
        Unanswering hang(AF_INET6);
        Sock good(AF_INET, 16);
        const int base = fd_count();
        int made = 0, created = 0;
        auto f = detail::connect_to_addresses(loop, counting(made, created),
                                              {hang.info(), good.info()}, "", {});
        REQUIRE(run_until_polling(loop, [&] { return syn_sent_to(hang.port) == 1; }));
        // Long past where a 0.05 s delay would have started the second attempt.
        run_until(
            loop, [] { return false; }, 0.3);
        CHECK(!f.done());
        CHECK(good.queued() == 0);
        CHECK(fd_count() == base + 1);
        f.cancel();
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK(fd_count() == base);
        CHECK(good.queued() == 0);
        CHECK(log.count == 0);
    }

    TEST_CASE("local_addr binds each attempt to the local address of its family") {
        EventLoop loop;
        ExceptionLog log(loop);
        Sock good4(AF_INET, 16);
        Sock good6(AF_INET6, 16);
        int made = 0, created = 0;
        ConnectOptions o = eyeballs(3600);
        o.local_addr = std::make_pair(std::string("::1"), std::uint16_t{0});
        // The IPv4 attempt has no local address of its family: it fails at once, the IPv6 one
        // follows without waiting and is bound to ::1.
        auto conn = run(loop, detail::connect_to_addresses(loop, counting(made, created),
                                                           {good4.info(), good6.info()}, "", o));
        CHECK(peer_port(conn) == good6.port);
        CHECK(conn.transport->extra<SocketAddress>("sockname").value_or(SocketAddress{}).host() ==
              "::1");
        close_and_wait(loop, conn);
        // With only the IPv4 address, its error says why.
        std::error_code ec;
        const std::string what = failure_of(
            loop,
            detail::connect_to_addresses(loop, counting(made, created), {good4.info()}, "", o),
            &ec);
        CHECK(ec == std::errc::address_not_available);
        CHECK(what.find("no local_addr of the same family") != std::string::npos);
        CHECK(good4.queued() == 0);
        CHECK(log.count == 0);
    }

    TEST_CASE("TLS does its handshake on the winning connection") {
        EventLoop loop;
        ExceptionLog log(loop);
        ServerOptions so;
        so.ssl = server_ctx();
        int smade = 0, screated = 0;
        auto server = run(loop, loop.create_server(counting(smade, screated), "127.0.0.1", 0, so));
        const std::uint16_t port = server->addresses()[0].port();
        Unanswering hang(AF_INET6);
        int made = 0, created = 0;
        ConnectOptions o = eyeballs(0.05);
        o.ssl = client_ctx();
        o.server_hostname = "localhost";
        auto conn =
            run(loop, detail::connect_to_addresses(loop, counting(made, created),
                                                   {hang.info(), addr(AF_INET, port)}, "", o));
        CHECK(made == 1);
        CHECK(conn.transport->get_extra_info("cipher").has_value());
        CHECK(peer_port(conn) == port);
        CHECK(syn_sent_to(hang.port) == 0);
        REQUIRE(run_until(loop, [&] { return smade == 1; }));
        close_and_wait(loop, conn);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }
}

TEST_CASE("create_connection and open_connection race the IPv6 and IPv4 addresses of a name") {
    const char* name = "aioring-eyeballs.test";
    for (int hang_family : {AF_INET6, AF_INET}) {
        CAPTURE(hang_family);
        // The same port on both families: one never answers, the other accepts.
        std::unique_ptr<Sock> good;
        std::unique_ptr<Unanswering> hang;
        for (int tries = 0; tries < 50 && !(hang && hang->ok()); ++tries) {
            good = std::make_unique<Sock>(other(hang_family), 16);
            hang = std::make_unique<Unanswering>(hang_family, good->port);
        }
        REQUIRE(hang->ok());
        const std::uint16_t port = good->port;
        std::string message;
        const int rc = with_hosts_file(
            std::string("::1 ") + name + "\n127.0.0.1 " + name + "\n",
            [&]() -> std::string {
                EventLoop loop;
                int made = 0, created = 0;
                ConnectOptions o = eyeballs(0.05);
                auto conn =
                    run_child(loop, loop.create_connection(counting(made, created), name, port, o));
                if (peer_family(conn) != other(hang_family) || peer_port(conn) != port)
                    return "create_connection reached the wrong address";
                conn.transport->close();
                auto pair = run_child(
                    loop, loop.create_task(open_connection(name, port, default_stream_limit, o)));
                const auto peer =
                    pair.writer.extra<SocketAddress>("peername").value_or(SocketAddress{});
                if (peer.family() != other(hang_family) || peer.port() != port)
                    return "open_connection reached the wrong address";
                pair.writer.close();
                if (syn_sent_to(hang->port) != 0) return "an attempt is still connecting";
                return "";
            },
            message);
        if (rc == 77) {
            MESSAGE("skipped: " << message);
            return;
        }
        INFO(message);
        CHECK(rc == 0);
        CHECK(good->queued() == 2);
    }
}
