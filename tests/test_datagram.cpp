// SPDX-License-Identifier: Apache-2.0
// Datagram transports on real sockets (UDP on 127.0.0.1 and ::1, Unix datagram paths):
// asyncio's DatagramTransport/DatagramProtocol contract, multishot bursts, flow control, close
// and abort, errors that keep the endpoint open, and the udp_echo examples.
#include "alloc_counter.hpp"
#include "process.hpp"
#include "support.hpp"

#include <poll.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <thread>

using namespace testing;

namespace {

struct DEvents {
    int made = 0, lost = 0, pauses = 0, resumes = 0, destroyed = 0;
    std::vector<std::pair<std::string, SocketAddress>> got;
    std::vector<std::error_code> errors;
    std::error_code lost_error;
    bool order_ok = true;
    DatagramTransport* transport = nullptr;
};

// Records every callback and checks connection_made -> (datagram | error)* -> connection_lost
// and the strict alternation of pause_writing/resume_writing.
class DRecorder : public DatagramProtocol {
public:
    explicit DRecorder(DEvents& e) : e_(e) {}
    ~DRecorder() override { ++e_.destroyed; }
    void connection_made(DatagramTransport& t) override {
        if (e_.made || e_.lost) e_.order_ok = false;
        ++e_.made;
        e_.transport = &t;
    }
    void datagram_received(std::string_view d, const SocketAddress& a) override {
        if (!e_.made || e_.lost) e_.order_ok = false;
        e_.got.emplace_back(std::string(d), a);
        if (on_data) on_data(d, a);
    }
    void error_received(std::error_code ec) override {
        if (!e_.made || e_.lost) e_.order_ok = false;
        e_.errors.push_back(ec);
    }
    void connection_lost(std::error_code ec) override {
        if (!e_.made || e_.lost) e_.order_ok = false;
        ++e_.lost;
        e_.lost_error = ec;
    }
    void pause_writing() override {
        if (e_.pauses != e_.resumes || e_.lost) e_.order_ok = false;
        ++e_.pauses;
    }
    void resume_writing() override {
        if (e_.pauses != e_.resumes + 1 || e_.lost) e_.order_ok = false;
        ++e_.resumes;
    }
    std::function<void(std::string_view, const SocketAddress&)> on_data;

private:
    DEvents& e_;
};

ProtocolFactory recorder(DEvents& e) {
    return [&e] { return std::make_unique<DRecorder>(e); };
}

// A plain blocking datagram socket as the independent peer.
struct Peer {
    int fd = -1;
    SocketAddress addr;
    explicit Peer(int family = AF_INET, int rcvbuf = 0) {
        fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        if (rcvbuf) {
            // SO_RCVBUFFORCE passes rmem_max when permitted; SO_RCVBUF is the fallback.
            if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
                ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        }
        SocketAddress local = SocketAddress::from_ip(family == AF_INET ? "127.0.0.1" : "::1", 0);
        REQUIRE(::bind(fd, local.get(), local.length) == 0);
        addr = sockname_of(fd);
    }
    explicit Peer(const std::string& path) {
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        SocketAddress local = SocketAddress::from_unix(path);
        REQUIRE(::bind(fd, local.get(), local.length) == 0);
        addr = sockname_of(fd);
    }
    ~Peer() {
        if (fd >= 0) ::close(fd);
    }
    void send_to(const SocketAddress& to, std::string_view d) const {
        REQUIRE(::sendto(fd, d.data(), d.size(), 0, to.get(), to.length) ==
                static_cast<ssize_t>(d.size()));
    }
    // One datagram, or nullopt if none comes within `timeout` seconds (a deadline only).
    std::optional<std::string> recv(double timeout = 10, SocketAddress* from = nullptr) const {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout * 1000)) != 1) return std::nullopt;
        std::string buf(70000, '\0');
        SocketAddress a;
        a.length = sizeof a.storage;
        ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, a.get(), &a.length);
        if (n < 0) return std::nullopt;
        if (from) *from = a;
        buf.resize(static_cast<std::size_t>(n));
        return buf;
    }
};

DatagramEndpointOptions local(std::string host = "127.0.0.1", std::uint16_t port = 0) {
    DatagramEndpointOptions o;
    o.local_addr = {std::move(host), port};
    return o;
}

DatagramEndpointOptions remote(const SocketAddress& to) {
    DatagramEndpointOptions o;
    o.remote_addr = {to.host(), to.port()};
    return o;
}

bool have_ipv6() {
    int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) return false;
    SocketAddress a = SocketAddress::from_ip("::1", 0);
    bool ok = ::bind(fd, a.get(), a.length) == 0;
    ::close(fd);
    return ok;
}

// A fresh temporary directory, removed with its contents.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/aioring-dgram-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// Runs the loop until every queued datagram has been sent.
void drain(EventLoop& loop, DatagramConnection<>& c) {
    REQUIRE(run_until(loop, [&] { return c.transport->get_write_buffer_size() == 0; }));
}

// Closes and runs the loop until the loop has let go of the transport (connection_lost has
// run and its operations are done); the last handle then frees it and its protocol.
void finish_quietly(EventLoop& loop, DatagramConnection<>& c) {
    c.transport->close();
    REQUIRE(run_until(loop, [&] { return c.transport.use_count() == 1; }));
    c.transport.reset();
}

// Runs the loop until the transport is gone and its protocol destroyed.
void finish(EventLoop& loop, DatagramConnection<>& c, DEvents& ev) {
    if (!c.transport->is_closing()) c.transport->close();
    REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
    c.transport.reset();
    REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
}

}  // namespace

TEST_SUITE("datagram") {
    TEST_CASE("a UDP endpoint receives datagrams with their source and answers with sendto") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        CHECK(ev.made == 1);
        auto me = c.transport->extra<SocketAddress>("sockname");
        REQUIRE(me);
        CHECK(me->host() == "127.0.0.1");
        CHECK(me->port() != 0);
        CHECK_FALSE(c.transport->extra<SocketAddress>("peername"));
        CHECK(c.transport->extra<int>("socket"));
        CHECK(c.protocol == ev.transport->get_protocol());

        Peer peer;
        peer.send_to(*me, "hello");
        REQUIRE(run_until(loop, [&] { return ev.got.size() == 1; }));
        CHECK(ev.got[0].first == "hello");
        CHECK(ev.got[0].second == peer.addr);
        c.transport->sendto("world", ev.got[0].second);
        CHECK(c.transport->get_write_buffer_size() == 5 + datagram_overhead);
        CHECK_THROWS_AS(c.transport->sendto("no address"), std::invalid_argument);
        REQUIRE(run_until(loop, [&] { return c.transport->get_write_buffer_size() == 0; }));
        SocketAddress from;
        CHECK(peer.recv(10, &from) == "world");
        CHECK(from == *me);
        finish(loop, c, ev);
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(ev.errors.empty());
        CHECK(log.count == 0);
    }

    TEST_CASE("a connected endpoint sends to its remote address and rejects any other") {
        EventLoop loop;
        ExceptionLog log(loop);
        Peer peer;
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), remote(peer.addr)));
        auto pn = c.transport->extra<SocketAddress>("peername");
        REQUIRE(pn);
        CHECK(*pn == peer.addr);
        c.transport->sendto("one");
        c.transport->sendto("two", peer.addr);
        Peer other;
        CHECK_THROWS_AS(c.transport->sendto("three", other.addr), std::invalid_argument);
        drain(loop, c);
        CHECK(peer.recv() == "one");
        CHECK(peer.recv() == "two");
        // Datagrams come back from the peer; a connected socket ignores other senders.
        auto me = c.transport->extra<SocketAddress>("sockname");
        other.send_to(*me, "ignored");
        peer.send_to(*me, "reply");
        REQUIRE(run_until(loop, [&] { return ev.got.size() == 1; }));
        CHECK(ev.got[0].first == "reply");
        finish(loop, c, ev);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("host names resolve without blocking and the endpoint binds and connects") {
        EventLoop loop;
        ExceptionLog log(loop);
        Peer peer;
        DEvents ev;
        DatagramEndpointOptions o;
        o.remote_addr = {"localhost", peer.addr.port()};
        o.family = AF_INET;
        o.local_addr = {"localhost", 0};
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), o));
        auto pn = c.transport->extra<SocketAddress>("peername");
        REQUIRE(pn);
        CHECK(*pn == peer.addr);
        c.transport->sendto("resolved");
        drain(loop, c);
        CHECK(peer.recv() == "resolved");
        finish(loop, c, ev);
        CHECK(log.count == 0);
    }

    TEST_CASE("IPv6 round trip on ::1" * doctest::skip(!have_ipv6())) {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        ev.order_ok = true;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local("::1")));
        auto me = c.transport->extra<SocketAddress>("sockname");
        REQUIRE(me);
        CHECK(me->family() == AF_INET6);
        CHECK(me->to_string() == "[::1]:" + std::to_string(me->port()));
        Peer peer(AF_INET6);
        peer.send_to(*me, "six");
        REQUIRE(run_until(loop, [&] { return ev.got.size() == 1; }));
        CHECK(ev.got[0].first == "six");
        CHECK(ev.got[0].second == peer.addr);
        c.transport->sendto("back", ev.got[0].second);
        drain(loop, c);
        CHECK(peer.recv() == "back");
        finish(loop, c, ev);
        CHECK(log.count == 0);
    }

    TEST_CASE("Unix datagram endpoints talk through their paths") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempDir dir;
        const std::string server_path = dir.path + "/server.sock",
                          client_path = dir.path + "/client.sock";
        DEvents sev, cev;
        DatagramEndpointOptions so;
        so.local_path = server_path;
        auto s = run(loop, loop.create_datagram_endpoint(recorder(sev), so));
        auto sname = s.transport->extra<SocketAddress>("sockname");
        REQUIRE(sname);
        CHECK(sname->to_string() == server_path);
        {
            // A stale socket file at the path is replaced, as asyncio does.
            Peer stale(client_path);
        }
        DatagramEndpointOptions co;
        co.local_path = client_path;
        co.remote_path = server_path;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(cev), co));
        CHECK(c.transport->extra<SocketAddress>("peername")->to_string() == server_path);
        c.transport->sendto("ping");
        REQUIRE(run_until(loop, [&] { return sev.got.size() == 1; }));
        CHECK(sev.got[0].first == "ping");
        CHECK(sev.got[0].second.to_string() == client_path);
        s.transport->sendto("pong", sev.got[0].second);
        REQUIRE(run_until(loop, [&] { return cev.got.size() == 1; }));
        CHECK(cev.got[0].first == "pong");
        CHECK(cev.got[0].second.to_string() == server_path);
        finish(loop, c, cev);
        finish(loop, s, sev);
        CHECK(sev.order_ok);
        CHECK(cev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("zero-length datagrams are delivered as empty data, both ways") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        auto me = *c.transport->extra<SocketAddress>("sockname");
        Peer peer;
        peer.send_to(me, "");
        peer.send_to(me, "x");
        REQUIRE(run_until(loop, [&] { return ev.got.size() == 2; }));
        CHECK(ev.got[0].first.empty());
        CHECK(ev.got[0].second == peer.addr);
        CHECK(ev.got[1].first == "x");
        c.transport->sendto("", peer.addr);
        CHECK(c.transport->get_write_buffer_size() == datagram_overhead);
        drain(loop, c);
        CHECK(peer.recv() == "");
        finish(loop, c, ev);
        CHECK(ev.errors.empty());
        CHECK(log.count == 0);
    }

    TEST_CASE("a burst of 1000 datagrams arrives whole, many per loop iteration") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        const int fd = *c.transport->extra<int>("socket");
        // Big enough for the whole burst, so the kernel has no reason to drop any.
        int big = 8 << 20;
        if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
            ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        const auto me = *c.transport->extra<SocketAddress>("sockname");
        Peer peer;
        constexpr int n = 1000;
        for (int i = 0; i < n; ++i) peer.send_to(me, "datagram " + std::to_string(i));
        // The most datagrams delivered within one loop iteration: a callback that re-schedules
        // itself marks each iteration.
        std::size_t max_batch = 0, mark = 0;
        bool counting = true;
        std::function<void()> tick = [&] {
            max_batch = std::max(max_batch, ev.got.size() - mark);
            mark = ev.got.size();
            if (counting) loop.call_soon([&] { tick(); });
        };
        loop.call_soon([&] { tick(); });
        REQUIRE(run_until(loop, [&] { return ev.got.size() == n; }));
        counting = false;
        max_batch = std::max(max_batch, ev.got.size() - mark);
        MESSAGE("most datagrams in one iteration: " << max_batch);
        const char* no_multishot = std::getenv("AIORING_NO_MULTISHOT");
        if (!(no_multishot && *no_multishot == '1')) CHECK(max_batch >= 8);
        for (int i = 0; i < n; ++i) CHECK(ev.got[i].first == "datagram " + std::to_string(i));
        CHECK(ev.errors.empty());

        // The other way: 1000 sendto in one iteration, all queued, then sent in chains.
        Peer sink(AF_INET, 8 << 20);
        for (int i = 0; i < n; ++i) c.transport->sendto("reply " + std::to_string(i), sink.addr);
        REQUIRE(run_until(loop, [&] { return c.transport->get_write_buffer_size() == 0; }));
        for (int i = 0; i < n; ++i) {
            auto d = sink.recv();
            REQUIRE(d);
            CHECK(*d == "reply " + std::to_string(i));
        }
        finish(loop, c, ev);
        CHECK(log.count == 0);
    }

    TEST_CASE("echoing datagrams allocates nothing per datagram once warmed up") {
        EventLoop loop;
        ExceptionLog log(loop);
        constexpr int warmup = 200, measured = 1000;
        struct Echo : DatagramProtocol {
            EventLoop* loop = nullptr;
            DatagramTransport* t = nullptr;
            int echoed = 0;
            void connection_made(DatagramTransport& tr) override { t = &tr; }
            void datagram_received(std::string_view d, const SocketAddress& a) override {
                t->sendto(d, a);
                ++echoed;
                if (echoed == warmup) count_allocations = true;
                if (echoed == warmup + measured) {
                    count_allocations = false;
                    loop->stop();
                }
            }
        };
        auto c = run(
            loop, loop.create_datagram_endpoint([] { return std::make_unique<Echo>(); }, local()));
        auto& echo = c.as<Echo>();
        echo.loop = &loop;
        const auto me = *c.transport->extra<SocketAddress>("sockname");
        // A blocking peer on its own thread: send, wait for the echo, again (its allocations are
        // not counted).
        std::atomic<bool> peer_done{false};
        std::thread peer([me, &peer_done, &loop] {
            struct Done {
                std::atomic<bool>& d;
                EventLoop& loop;
                ~Done() {
                    d = true;
                    loop.call_soon_threadsafe([] {});  // run_until sees the flag after an iteration
                }
            } done{peer_done, loop};
            Peer p;
            timeval tv{10, 0};
            ::setsockopt(p.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            char buf[64];
            for (int i = 0; i < warmup + measured; ++i) {
                if (::sendto(p.fd, "0123456789abcdef", 16, 0, me.get(), me.length) != 16) return;
                if (::recv(p.fd, buf, sizeof buf, 0) != 16) return;
            }
        });
        allocations = 0;
        auto deadline = loop.call_later(20, [&] { loop.stop(); });  // only fails the test
        loop.run_forever();
        deadline.cancel();
        count_allocations = false;
        REQUIRE(run_until(loop, [&] { return peer_done.load(); }));  // the last echo goes out
        peer.join();
        CHECK(echo.echoed == warmup + measured);
        MESSAGE("allocations while echoing " << measured << " datagrams: " << allocations.load());
        CHECK(allocations.load() < 10);
        finish_quietly(loop, c);
        CHECK(log.count == 0);
    }

    TEST_CASE("a provided-buffer ring that runs dry (ENOBUFS) only pauses receiving") {
        LoopOptions options;
        options.buffer_count = 4;  // far fewer buffers than queued datagrams
        EventLoop loop(options);
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        const int fd = *c.transport->extra<int>("socket");
        int big = 1 << 20;
        if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
            ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        const auto me = *c.transport->extra<SocketAddress>("sockname");
        Peer peer;
        constexpr int n = 200;
        for (int i = 0; i < n; ++i) peer.send_to(me, std::to_string(i));
        REQUIRE(run_until(loop, [&] { return ev.got.size() == n; }));
        for (int i = 0; i < n; ++i) CHECK(ev.got[i].first == std::to_string(i));
        CHECK(ev.errors.empty());
        CHECK_FALSE(c.transport->is_closing());
        finish(loop, c, ev);
        CHECK(log.count == 0);
    }

    TEST_CASE("a datagram larger than the receive buffer is reported as truncated, never cut") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        const auto me = *c.transport->extra<SocketAddress>("sockname");
        Peer peer;
        peer.send_to(me, std::string(LoopOptions{}.buffer_size + 100, 'x'));
        peer.send_to(me, "small");
        REQUIRE(run_until(loop, [&] { return ev.got.size() == 1; }));
        REQUIRE(ev.errors.size() == 1);
        CHECK(ev.errors[0] == std::errc::message_size);
        CHECK(ev.got[0].first == "small");
        CHECK_FALSE(c.transport->is_closing());
        finish(loop, c, ev);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a connected endpoint whose peer port is closed gets connection_refused and keeps "
        "working") {
        EventLoop loop;
        ExceptionLog log(loop);
        auto gone = std::make_unique<Peer>();
        const SocketAddress target = gone->addr;
        gone.reset();  // nobody listens there any more: the kernel answers with port unreachable
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), remote(target)));
        c.transport->sendto("anyone?");
        REQUIRE(run_until(loop, [&] { return !ev.errors.empty(); }));
        CHECK(ev.errors[0] == std::errc::connection_refused);
        CHECK_FALSE(c.transport->is_closing());
        CHECK(ev.lost == 0);
        // Someone listens again on that port: the same endpoint reaches it.
        int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(::bind(fd, target.get(), target.length) == 0);
        c.transport->sendto("now?");
        pollfd p{fd, POLLIN, 0};
        REQUIRE(run_until(loop, [&] { return ::poll(&p, 1, 0) == 1; }));
        char buf[16];
        CHECK(::recv(fd, buf, sizeof buf, 0) == 4);
        ::close(fd);
        finish(loop, c, ev);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("send errors on an unconnected endpoint go to error_received and do not close it") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        Peer peer;
        c.transport->sendto(std::string(70000, 'x'), peer.addr);  // over UDP's 65507 bytes
        c.transport->sendto("fits", peer.addr);
        REQUIRE(run_until(loop, [&] { return c.transport->get_write_buffer_size() == 0; }));
        REQUIRE(ev.errors.size() == 1);
        CHECK(ev.errors[0] == std::errc::message_size);
        CHECK(peer.recv() == "fits");  // the chain went on after the failed datagram
        CHECK_FALSE(c.transport->is_closing());
        c.transport->sendto("still", peer.addr);
        drain(loop, c);
        CHECK(peer.recv() == "still");
        finish(loop, c, ev);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a failed datagram in a linked Unix chain is reported and the rest still go, in order") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempDir dir;
        Peer sink(dir.path + "/sink.sock");
        DEvents ev;
        DatagramEndpointOptions o;
        o.local_path = dir.path + "/me.sock";
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), o));
        const auto nowhere = SocketAddress::from_unix(dir.path + "/nowhere.sock");
        c.transport->sendto("first", sink.addr);
        c.transport->sendto("lost", nowhere);  // fails; the kernel cancels the rest of the chain
        c.transport->sendto("second", sink.addr);
        c.transport->sendto("third", sink.addr);
        drain(loop, c);
        REQUIRE(ev.errors.size() == 1);
        CHECK(ev.errors[0] == std::errc::no_such_file_or_directory);
        CHECK(sink.recv() == "first");
        CHECK(sink.recv() == "second");
        CHECK(sink.recv() == "third");
        CHECK_FALSE(c.transport->is_closing());
        finish(loop, c, ev);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("pause_writing and resume_writing follow the queued bytes of sendto") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        Peer peer(AF_INET, 1 << 20);
        CHECK(c.transport->get_write_buffer_limits() ==
              std::pair<std::size_t, std::size_t>{16 * 1024, 64 * 1024});
        CHECK_THROWS_AS(c.transport->set_write_buffer_limits(10, 20), std::invalid_argument);
        c.transport->set_write_buffer_limits(100);
        CHECK(c.transport->get_write_buffer_limits() ==
              std::pair<std::size_t, std::size_t>{25, 100});
        const std::string d(42, 'd');  // 50 bytes each with the per-datagram overhead
        c.transport->sendto(d, peer.addr);
        c.transport->sendto(d, peer.addr);
        CHECK(ev.pauses == 0);  // 100 is not strictly over 100
        c.transport->sendto(d, peer.addr);
        CHECK(ev.pauses == 1);
        c.transport->sendto(d, peer.addr);
        CHECK(ev.pauses == 1);
        REQUIRE(run_until(loop, [&] { return ev.resumes == 1; }));
        CHECK(c.transport->get_write_buffer_size() <= 25);
        REQUIRE(run_until(loop, [&] { return c.transport->get_write_buffer_size() == 0; }));
        for (int i = 0; i < 4; ++i) CHECK(peer.recv() == d);
        // New limits apply at once.
        c.transport->sendto(d, peer.addr);
        c.transport->set_write_buffer_limits(10, 0);
        CHECK(ev.pauses == 2);
        REQUIRE(run_until(loop, [&] { return ev.resumes == 2; }));
        // None once closing.
        c.transport->sendto(d, peer.addr);
        c.transport->sendto(d, peer.addr);
        CHECK(ev.pauses == 3);
        c.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.resumes == 2);
        CHECK(ev.order_ok);
        finish(loop, c, ev);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "close sends the queued datagrams, then connection_lost; sendto after it is ignored") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), local()));
        Peer peer(AF_INET, 1 << 20);
        for (int i = 0; i < 200; ++i) c.transport->sendto("queued " + std::to_string(i), peer.addr);
        c.transport->close();
        CHECK(c.transport->is_closing());
        c.transport->sendto("dropped", peer.addr);
        c.transport->close();  // idempotent
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        for (int i = 0; i < 200; ++i) CHECK(peer.recv() == "queued " + std::to_string(i));
        CHECK_FALSE(peer.recv(0.05));
        c.transport->sendto("after", peer.addr);  // a kept handle stays safe
        c.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("abort drops the queue, even datagrams waiting on a full Unix receiver") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempDir dir;
        Peer sink(dir.path + "/sink.sock");  // never reads: its queue fills and sends wait
        DEvents ev;
        DatagramEndpointOptions o;
        o.remote_path = dir.path + "/sink.sock";
        auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), o));
        // More than the socket's send buffer: once the receiver's queue is full, sends wait.
        constexpr std::size_t n = 1000, size = 1000;
        for (std::size_t i = 0; i < n; ++i) c.transport->sendto(std::string(size, 'a'));
        const std::size_t queued = n * (size + datagram_overhead);
        REQUIRE(run_until(loop, [&] { return c.transport->get_write_buffer_size() < queued; }));
        CHECK(c.transport->get_write_buffer_size() > 0);
        c.transport->abort();
        CHECK(c.transport->get_write_buffer_size() == 0);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        c.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a protocol callback that throws goes to the exception handler and aborts the transport") {
        EventLoop loop;
        ExceptionLog log(loop);
        DEvents ev;
        auto factory = [&ev] {
            auto p = std::make_unique<DRecorder>(ev);
            p->on_data = [](std::string_view, const SocketAddress&) {
                throw std::runtime_error("boom");
            };
            return p;
        };
        auto c = run(loop, loop.create_datagram_endpoint(factory, local()));
        Peer peer;
        peer.send_to(*c.transport->extra<SocketAddress>("sockname"), "trigger");
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 1);
        REQUIRE(log.messages.size() == 1);
        CHECK(log.messages[0].find("boom") != std::string::npos);
        CHECK(ev.lost_error == std::errc::connection_aborted);
        CHECK(c.transport->is_closing());
        c.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
    }

    TEST_CASE("sock, family, reuse_port and allow_broadcast options") {
        EventLoop loop;
        ExceptionLog log(loop);
        SUBCASE("an existing socket is wrapped and owned") {
            int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            SocketAddress a = SocketAddress::from_ip("127.0.0.1", 0);
            REQUIRE(::bind(fd, a.get(), a.length) == 0);
            DatagramEndpointOptions o;
            o.sock = fd;
            o.local_addr = {"127.0.0.1", 0};
            CHECK_THROWS_AS(loop.create_datagram_endpoint(
                                [] { return std::make_unique<DatagramProtocol>(); }, o),
                            std::invalid_argument);
            o.local_addr.reset();
            DEvents ev;
            auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), o));
            CHECK(c.transport->extra<int>("socket") == fd);
            Peer peer;
            peer.send_to(sockname_of(fd), "wrapped");
            REQUIRE(run_until(loop, [&] { return ev.got.size() == 1; }));
            finish(loop, c, ev);
            CHECK(::fcntl(fd, F_GETFD) == -1);  // closed with the transport
        }
        SUBCASE("a stream socket is refused") {
            SocketPair sp;
            DatagramEndpointOptions o;
            o.sock = sp.a;
            CHECK_THROWS_AS(loop.create_datagram_endpoint(
                                [] { return std::make_unique<DatagramProtocol>(); }, o),
                            std::invalid_argument);
        }
        SUBCASE("no address needs a family") {
            auto f = loop.create_datagram_endpoint(
                [] { return std::make_unique<DatagramProtocol>(); }, {});
            CHECK_THROWS_AS(run(loop, f), std::invalid_argument);
            DatagramEndpointOptions o;
            o.family = AF_INET;
            DEvents ev;
            auto c = run(loop, loop.create_datagram_endpoint(recorder(ev), o));
            Peer peer;
            c.transport->sendto("unbound", peer.addr);
            drain(loop, c);
            CHECK(peer.recv() == "unbound");
            finish(loop, c, ev);
        }
        SUBCASE("a stream protocol is refused") {
            Events sev;
            auto f = loop.create_datagram_endpoint(
                [&] { return std::make_unique<RecordingProtocol>(sev); }, local());
            CHECK_THROWS_AS(run(loop, f), std::invalid_argument);
        }
        SUBCASE("reuse_port lets two endpoints share a port; allow_broadcast sets SO_BROADCAST") {
            DEvents a, b;
            DatagramEndpointOptions o = local();
            o.reuse_port = true;
            o.allow_broadcast = true;
            auto ca = run(loop, loop.create_datagram_endpoint(recorder(a), o));
            const auto port = ca.transport->extra<SocketAddress>("sockname")->port();
            o.local_addr = {"127.0.0.1", port};
            auto cb = run(loop, loop.create_datagram_endpoint(recorder(b), o));
            CHECK(cb.transport->extra<SocketAddress>("sockname")->port() == port);
            int on = 0;
            socklen_t len = sizeof on;
            REQUIRE(::getsockopt(*cb.transport->extra<int>("socket"), SOL_SOCKET, SO_BROADCAST, &on,
                                 &len) == 0);
            CHECK(on == 1);
            // Without reuse_port the port is taken.
            DEvents c3;
            auto f = loop.create_datagram_endpoint(recorder(c3), local("127.0.0.1", port));
            REQUIRE(run_until(loop, [&] { return f.done(); }));
            try {
                f.result();
                FAIL("bind should fail");
            } catch (const std::system_error& e) {
                CHECK(e.code() == std::errc::address_in_use);
            }
            finish(loop, ca, a);
            finish(loop, cb, b);
        }
        CHECK(log.count == 0);
    }
}

TEST_SUITE("datagram examples") {
    TEST_CASE("udp_echo_server and udp_echo_client print the documentation's lines") {
        testing::Process server({example("udp_echo_server"), "--port", "0"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        CHECK(server.out.rfind(
                  "Starting UDP server\nServing on 127.0.0.1:" + std::to_string(port) + "\n", 0) ==
              0);
        testing::Process client(
            {example("udp_echo_client"), "--port", std::to_string(port), "--message", "Hi there"});
        CHECK(client.wait() == 0);
        CHECK(client.out ==
              "Send: Hi there\nReceived: Hi there\nClose the socket\nSocket closed, stop the event "
              "loop\n");
        REQUIRE(server.wait_for_output("Send 'Hi there' to 127.0.0.1:"));
        server.wait_for_output("\n", 1);
        const auto pos = server.out.find("Received 'Hi there' from 127.0.0.1:");
        REQUIRE(pos != std::string::npos);
        const auto from = server.out.substr(pos + 25, server.out.find('\n', pos) - pos - 25);
        CHECK(server.out.find("Send 'Hi there' to " + from + "\n") != std::string::npos);
        server.signal(SIGTERM);
        CHECK(server.wait(5) == 0);
        CHECK(server.err.empty());
    }

    TEST_CASE("udp_echo_client reports an ICMP error, keeps waiting, and exits 1 without a reply") {
        int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        SocketAddress a = SocketAddress::from_ip("127.0.0.1", 0);
        REQUIRE(::bind(fd, a.get(), a.length) == 0);
        const auto port = sockname_of(fd).port();
        ::close(fd);  // a port nobody listens on
        testing::Process client(
            {example("udp_echo_client"), "--port", std::to_string(port), "--timeout", "0.5"});
        CHECK(client.wait() == 1);
        CHECK(client.out == "Send: Hello World!\nError received: Connection refused\n");
        CHECK(client.err == "No reply within 0.5 seconds\n");
    }

    TEST_CASE(
        "udp_echo_server --quiet echoes silently, stops on SIGINT with exit 0; a taken port exits "
        "1") {
        testing::Process server({example("udp_echo_server"), "--port", "0", "--quiet"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        testing::Process client({example("udp_echo_client"), "--port", std::to_string(port)});
        CHECK(client.wait() == 0);
        CHECK(client.out.find("Received: Hello World!\n") != std::string::npos);
        testing::Process second({example("udp_echo_server"), "--port", std::to_string(port)});
        CHECK(second.wait() == 1);
        CHECK(second.err == "Address already in use\n");
        server.signal(SIGINT);
        CHECK(server.wait(5) == 0);
        CHECK(server.out ==
              "Starting UDP server\nServing on 127.0.0.1:" + std::to_string(port) + "\n");
        testing::Process bad({example("udp_echo_server"), "--port", "x"});
        CHECK(bad.wait() == 2);
    }
}

TEST_CASE("a loop destroyed with open endpoints frees them; a kept handle stays safe to call") {
    DEvents kept, dropped;
    std::shared_ptr<DatagramTransport> handle;
    {
        EventLoop loop;
        auto a = run(loop, loop.create_datagram_endpoint(recorder(kept), local()));
        auto b = run(loop, loop.create_datagram_endpoint(recorder(dropped), local()));
        handle = a.transport;
        // Something queued and a receive armed when the loop goes.
        auto to = b.transport->extra<SocketAddress>("sockname");
        REQUIRE(to);
        a.transport->sendto("pending", *to);
    }
    // The endpoint nobody holds is gone with its protocol; asyncio does not call
    // connection_lost when a loop closes under a transport, and neither do we.
    CHECK(dropped.destroyed == 1);
    CHECK(dropped.lost == 0);
    CHECK(kept.destroyed == 0);
    REQUIRE(handle);
    CHECK(handle->is_closing());
    handle->sendto("ignored", SocketAddress::from_ip("127.0.0.1", 9));
    handle->close();
    handle->abort();
    handle->set_write_buffer_limits(10, 5);
    CHECK(handle->get_write_buffer_size() == 0);
    handle.reset();
    CHECK(kept.destroyed == 1);
}
