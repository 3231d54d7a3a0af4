// SPDX-License-Identifier: Apache-2.0
// The stream transport on real sockets: reading pause/resume, peer reset, refused connects,
// big writes, write coalescing, and switching the protocol mid-connection.
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "support.hpp"

#include <netinet/tcp.h>
#include <sys/resource.h>

#include <thread>

using namespace testing;

namespace {

// A BufferedProtocol that appends what it receives to Events::data.
class Buffered : public BufferedProtocol {
public:
    explicit Buffered(Events& e) : e_(e) {}
    ~Buffered() override { ++e_.destroyed; }
    void connection_made(Transport& t) override {
        ++e_.made;
        e_.transport = &t;
    }
    std::span<std::byte> get_buffer(std::size_t) override { return {buf_, sizeof buf_}; }
    void buffer_updated(std::size_t n) override {
        e_.data.append(reinterpret_cast<char*>(buf_), n);
    }
    bool eof_received() override {
        ++e_.eof;
        return false;
    }
    void connection_lost(std::error_code ec) override {
        ++e_.lost;
        e_.lost_error = ec;
    }

private:
    Events& e_;
    std::byte buf_[7];
};

}  // namespace

TEST_SUITE("stream transport") {
    TEST_CASE("pause_reading and resume_reading are idempotent, also after close") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        Transport& t = *conn.transport;
        CHECK(t.is_reading());
        t.pause_reading();
        t.pause_reading();
        CHECK(!t.is_reading());
        t.resume_reading();
        t.resume_reading();
        CHECK(t.is_reading());
        REQUIRE(::write(sp.b, "x", 1) == 1);
        REQUIRE(run_until(loop, [&] { return ev.data == "x"; }));
        t.close();
        t.pause_reading();
        t.resume_reading();
        CHECK(!t.is_reading());
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        t.pause_reading();
        t.resume_reading();
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "no data_received while paused, even for data already received; delivery resumes in "
        "order") {
        LoopOptions o;
        o.buffer_size = 4;  // the peer's bytes complete as several receives in one batch
        o.stream_buffer_size = 4;
        Events ev;
        EventLoop loop(o);
        ExceptionLog log(loop);
        SocketPair sp;
        std::vector<std::string> chunks;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<RecordingProtocol>(ev);
                                      p->on_data = [&](std::string_view d) {
                                          chunks.emplace_back(d);
                                          if (chunks.size() == 1) ev.transport->pause_reading();
                                      };
                                      return p;
                                  },
                                  sp.take_a()));
        REQUIRE(::write(sp.b, "0123456789abcdef", 16) == 16);
        REQUIRE(run_until(loop, [&] { return !chunks.empty(); }));
        REQUIRE(::write(sp.b, "ghij", 4) == 4);
        ::shutdown(sp.b, SHUT_WR);
        bool waited = false;
        loop.call_later(0.05, [&] { waited = true; });
        REQUIRE(run_until(loop, [&] { return waited; }));
        CHECK(chunks.size() == 1);
        CHECK(ev.eof == 0);
        conn.transport->resume_reading();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.data == "0123456789abcdefghij");
        CHECK(ev.eof == 1);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("pausing inside data_received again holds the rest until the next resume") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        int calls = 0;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<RecordingProtocol>(ev);
                                      p->on_data = [&](std::string_view) {
                                          ++calls;
                                          ev.transport->pause_reading();
                                      };
                                      return p;
                                  },
                                  sp.take_a()));
        for (int i = 0; i < 5; ++i) {
            REQUIRE(::write(sp.b, "abc", 3) == 3);
            const int before = calls;
            if (i > 0) conn.transport->resume_reading();
            REQUIRE(run_until(loop, [&] { return calls > before; }));
            CHECK(!conn.transport->is_reading());
        }
        conn.transport->resume_reading();
        REQUIRE(::write(sp.b, "end", 3) == 3);
        REQUIRE(run_until(loop, [&] { return ev.data.size() == 18; }));
        CHECK(ev.data == "abcabcabcabcabcend");
        conn.transport->close();
        CHECK(log.count == 0);
    }

    TEST_CASE("a peer reset gives connection_lost with a connection-reset error") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TcpListener listener;
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", listener.port));
        int peer = listener.accept();
        REQUIRE(peer >= 0);
        linger lg{1, 0};
        REQUIRE(::setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        ::close(peer);  // RST
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.lost_error == std::errc::connection_reset);
        CHECK(ev.eof == 0);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("a refused connect fails the awaitable with connection_refused") {
        Events ev;
        EventLoop loop;
        // A bound socket that does not listen: its port refuses, and nobody else can take it.
        int holder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(holder, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        ::getsockname(holder, reinterpret_cast<sockaddr*>(&a), &len);
        auto f = loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                        "127.0.0.1", ntohs(a.sin_port));
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        try {
            f.result();
            FAIL("connected to a port nobody listens on");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::connection_refused);
            CHECK(std::string(e.what()).find("127.0.0.1") != std::string::npos);
        }
        CHECK(ev.made == 0);
        CHECK(ev.destroyed == 0);  // the factory is not called before a connection exists
        ::close(holder);
    }

    TEST_CASE(
        "create_connection tries each resolved address; localhost works through the resolver") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        auto server = run(loop, loop.create_server([] { return std::make_unique<EchoProtocol>(); },
                                                   "127.0.0.1", 0));
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "localhost", server->addresses()[0].port()));
        conn.transport->write("resolved");
        REQUIRE(run_until(loop, [&] { return ev.data == "resolved"; }));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("create_connection binds local_addr") {
        Events ev;
        EventLoop loop;
        TcpListener listener;
        ConnectOptions o;
        o.local_addr = std::pair<std::string, std::uint16_t>{"127.0.0.1", 0};
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", listener.port, o));
        int peer = listener.accept();
        auto sock = conn.transport->extra<SocketAddress>("sockname");
        REQUIRE(sock);
        CHECK(sock->host() == "127.0.0.1");
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        ::close(peer);
    }

    TEST_CASE("TCP_NODELAY is on by default; ConnectOptions::nodelay = false turns it off") {
        Events evs[2];  // outlive the loop, which frees the protocols
        EventLoop loop;
        TcpListener listener;
        for (bool nodelay : {true, false}) {
            Events& ev = evs[nodelay ? 0 : 1];
            ConnectOptions o;
            o.nodelay = nodelay;
            auto conn = run(loop, loop.create_connection(
                                      [&] { return std::make_unique<RecordingProtocol>(ev); },
                                      "127.0.0.1", listener.port, o));
            int peer = listener.accept();
            int value = -1;
            socklen_t len = sizeof value;
            REQUIRE(::getsockopt(*conn.transport->extra<int>("socket"), IPPROTO_TCP, TCP_NODELAY,
                                 &value, &len) == 0);
            CHECK((value != 0) == nodelay);
            conn.transport->close();
            REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
            ::close(peer);
        }
    }

    TEST_CASE("100 MiB in one write() arrive intact") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TcpListener listener;
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", listener.port));
        int peer = listener.accept();
        REQUIRE(peer >= 0);
        const std::string data = lcg_bytes(100 << 20);
        bool same = false;
        std::size_t got_size = 0;
        std::thread reader([&] {
            std::string got = read_n(peer, data.size() + 1);  // +1: up to EOF
            got_size = got.size();
            same = got == data;
        });
        conn.transport->write(std::string_view(data));
        conn.transport->close();
        REQUIRE(run_until(
            loop, [&] { return ev.lost == 1; }, 120));
        reader.join();
        CHECK(got_size == data.size());
        CHECK(same);
        CHECK(!ev.lost_error);
        ::close(peer);
        CHECK(log.count == 0);
    }

    TEST_CASE("10000 small writes in one iteration leave in a few sendmsg calls") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        const auto before =
            std::any_cast<std::uint64_t>(conn.transport->get_extra_info("send_calls"));
        std::string expect;
        for (int i = 0; i < 10000; ++i) {
            const std::string msg = std::to_string(i) + ",";
            expect += msg;
            conn.transport->write(msg);
        }
        CHECK(peer_read(loop, sp.b, expect.size()) == expect);
        const auto sends =
            std::any_cast<std::uint64_t>(conn.transport->get_extra_info("send_calls")) - before;
        MESSAGE("sendmsg calls for 10000 writes: " << sends);
        CHECK(sends >= 1);
        CHECK(sends <= 4);
        conn.transport->close();
        CHECK(log.count == 0);
    }

    TEST_CASE("set_protocol switches between Protocol and BufferedProtocol mid-connection") {
        Events first, second, third;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(first); }, sp.take_a()));
        Transport& t = *conn.transport;
        REQUIRE(::write(sp.b, "one", 3) == 3);
        REQUIRE(run_until(loop, [&] { return first.data == "one"; }));

        t.set_protocol(std::make_unique<Buffered>(second));
        CHECK(t.get_protocol()->kind() == BaseProtocol::Kind::buffered);
        REQUIRE(::write(sp.b, "two, through a small buffer", 27) == 27);
        REQUIRE(run_until(loop, [&] { return second.data == "two, through a small buffer"; }));
        REQUIRE(run_until(loop, [&] { return first.destroyed == 1; }));
        CHECK(first.data == "one");

        t.set_protocol(std::make_unique<RecordingProtocol>(third));
        REQUIRE(::write(sp.b, "three", 5) == 5);
        REQUIRE(run_until(loop, [&] { return third.data == "three"; }));
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return third.lost == 1; }));
        CHECK(third.eof == 1);
        CHECK(second.lost == 0);  // connection_lost goes to the current protocol only
        CHECK(first.lost == 0);
        REQUIRE(run_until(loop, [&] { return second.destroyed == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("bytes a paused BufferedProtocol received go to the protocol that replaces it") {
        Events first, second;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] { return std::make_unique<Buffered>(first); }, sp.take_a()));
        Transport& t = *conn.transport;
        t.pause_reading();
        REQUIRE(::write(sp.b, "abcdefg", 7) == 7);
        // The receive armed before the pause takes the bytes (the peer's queue empties), but
        // nothing is delivered while paused.
        auto unread = [&] {
            int n = 0;
            ::ioctl(sp.b, SIOCOUTQ, &n);
            return n;
        };
        REQUIRE(run_until(loop, [&] { return unread() == 0; }));
        CHECK(first.data.empty());
        t.set_protocol(std::make_unique<RecordingProtocol>(second));
        REQUIRE(run_until(loop, [&] { return first.destroyed == 1; }));
        t.resume_reading();
        REQUIRE(::write(sp.b, "hij", 3) == 3);
        REQUIRE(run_until(loop, [&] { return second.data.size() >= 10; }));
        CHECK(second.data == "abcdefghij");
        CHECK(first.data.empty());
        t.close();
        REQUIRE(run_until(loop, [&] { return second.lost == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("set_protocol from inside data_received keeps the order of the bytes") {
        Events first, second;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] {
                              auto p = std::make_unique<RecordingProtocol>(first);
                              p->on_data = [&](std::string_view) {
                                  first.transport->set_protocol(std::make_unique<Buffered>(second));
                              };
                              return p;
                          },
                          sp.take_a()));
        REQUIRE(::write(sp.b, "head", 4) == 4);
        REQUIRE(run_until(loop, [&] { return first.data == "head"; }));
        REQUIRE(::write(sp.b, "tail of the stream", 18) == 18);
        REQUIRE(run_until(loop, [&] { return second.data == "tail of the stream"; }));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return second.lost == 1; }));
        CHECK(log.count == 0);
    }
}

TEST_SUITE("loop teardown") {
    TEST_CASE("a loop destroyed with open transports, a server and pending tasks frees them all") {
        Events ev, accepted_ev;
        std::shared_ptr<Transport> kept;
        {
            EventLoop loop;
            auto server = run(
                loop,
                loop.create_server([&] { return std::make_unique<RecordingProtocol>(accepted_ev); },
                                   "127.0.0.1", 0));
            auto conn = run(loop, loop.create_connection(
                                      [&] { return std::make_unique<RecordingProtocol>(ev); },
                                      "127.0.0.1", server->addresses()[0].port()));
            REQUIRE(run_until(loop, [&] { return accepted_ev.made == 1; }));
            accepted_ev.transport->pause_reading();
            conn.transport->write(std::string(32 << 20, 'p'));  // more than the socket buffers hold
            auto never = loop.create_future<int>();
            auto waiter = [](Future<int> f) -> Task<int> { co_return co_await f; };
            auto pending = loop.create_task(waiter(never));
            bool tick = false;
            loop.call_later(0.01, [&] { tick = true; });
            REQUIRE(run_until(loop, [&] { return tick; }));
            kept = conn.transport;
            CHECK(conn.transport->get_write_buffer_size() > 0);
        }
        // The loop is gone: the accepted transport was freed, ours lives in `kept`, and calls on it
        // are ignored.
        CHECK(accepted_ev.destroyed == 1);
        CHECK(ev.destroyed == 0);
        CHECK(kept->is_closing());
        kept->write("ignored");
        kept->pause_reading();
        kept->resume_reading();
        kept->set_write_buffer_limits(10);
        kept->close();
        kept->abort();
        CHECK(!kept->extra<int>("socket"));
        kept.reset();
        CHECK(ev.destroyed == 1);
        CHECK(ev.lost == 0);  // as asyncio: closing the loop does not call connection_lost
    }

    TEST_CASE(
        "close() on a loop with open transports releases them; the loop can then be destroyed") {
        Events ev;
        EventLoop loop;
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        conn.transport.reset();  // only the loop holds it now
        loop.close();
        CHECK(ev.destroyed == 1);
        CHECK(read_n(sp.b, 1).empty());  // the fd was closed: the peer sees EOF
    }
}
