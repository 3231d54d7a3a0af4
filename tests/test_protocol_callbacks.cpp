// SPDX-License-Identifier: Apache-2.0
// asyncio's protocol state machine on real sockets: connection_made -> data_received* ->
// eof_received? -> connection_lost, each exactly once, for Protocol and BufferedProtocol.
#include "support.hpp"

#include <thread>

using namespace testing;

TEST_SUITE("protocol callbacks") {
    TEST_CASE("echo over a socketpair: data arrives and connection_lost follows EOF") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        CHECK(ev.made == 1);
        REQUIRE(::write(sp.b, "hello", 5) == 5);
        REQUIRE(run_until(loop, [&] { return ev.data == "hello"; }));
        conn.transport->write("world");
        REQUIRE(run_until(loop, [&] { return conn.transport->get_write_buffer_size() == 0; }));
        CHECK(read_n(sp.b, 5) == "world");
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.eof == 1);
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(conn.transport->is_closing());
        conn.transport->write("ignored");  // a handle stays safe after the close
        conn.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("a TCP server and client echo through create_server and create_connection") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        struct Echo : Protocol {
            Transport* t = nullptr;
            void connection_made(Transport& tr) override { t = &tr; }
            void data_received(std::string_view d) override { t->write(d); }
        };
        auto server =
            run(loop, loop.create_server([] { return std::make_unique<Echo>(); }, "127.0.0.1", 0));
        REQUIRE(server->addresses().size() == 1);
        const auto port = server->addresses()[0].port();
        CHECK(port != 0);
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", port));
        conn.transport->write("ping");
        REQUIRE(run_until(loop, [&] { return ev.data == "ping"; }));
        auto peer = conn.transport->extra<SocketAddress>("peername");
        REQUIRE(peer);
        CHECK(peer->to_string() == "127.0.0.1:" + std::to_string(port));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }
}

TEST_SUITE("protocol callbacks") {
    TEST_CASE("connection_lost follows close() with no error and nothing comes after it") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        conn.transport->close();
        CHECK(conn.transport->is_closing());
        CHECK(!conn.transport->is_reading());
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(peer_read_to_eof(loop, sp.b).empty());
        // The peer sending now reaches nobody.
        [[maybe_unused]] auto n = ::send(sp.b, "late", 4, MSG_NOSIGNAL);
        bool tick = false;
        loop.call_later(0.02, [&] { tick = true; });
        REQUIRE(run_until(loop, [&] { return tick; }));
        CHECK(ev.data.empty());
        CHECK(ev.made == 1);
        CHECK(ev.lost == 1);
        CHECK(ev.eof == 0);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("eof_received returning false closes the transport") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn = run(
            loop, loop.connect_accepted_socket(
                      [&] { return std::make_unique<RecordingProtocol>(ev, false); }, sp.take_a()));
        REQUIRE(::write(sp.b, "last", 4) == 4);
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.data == "last");
        CHECK(ev.eof == 1);
        CHECK(!ev.lost_error);
        CHECK(peer_read_to_eof(loop, sp.b).empty());  // our side closed too
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("eof_received returning true keeps the transport half-open and writes still work") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn = run(
            loop, loop.connect_accepted_socket(
                      [&] { return std::make_unique<RecordingProtocol>(ev, true); }, sp.take_a()));
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.eof == 1; }));
        CHECK(!conn.transport->is_closing());
        CHECK(ev.lost == 0);
        conn.transport->write("still here");
        CHECK(peer_read(loop, sp.b, 10) == "still here");
        conn.transport->close();
        CHECK(peer_read_to_eof(loop, sp.b).empty());
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("close() flushes the buffered data, then connection_lost with no error") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        std::string big(4 << 20, 'x');
        for (std::size_t i = 0; i < big.size(); i += 4096)
            big[i] = static_cast<char>('a' + i / 4096 % 26);
        conn.transport->write(big);
        conn.transport->close();
        CHECK(conn.transport->get_write_buffer_size() == big.size());
        std::string got = peer_read_to_eof(loop, sp.b);
        CHECK(got.size() == big.size());
        CHECK(got == big);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(log.count == 0);
    }

    TEST_CASE("abort() drops the buffer and connection_lost follows") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        const std::size_t size = 16 << 20;  // far more than the socket buffers hold
        conn.transport->write(std::string(size, 'y'));
        bool flushed_some = false;
        loop.call_soon([&] { flushed_some = true; });
        REQUIRE(run_until(loop, [&] { return flushed_some; }));
        conn.transport->abort();
        CHECK(conn.transport->is_closing());
        CHECK(conn.transport->get_write_buffer_size() == 0);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(peer_read_to_eof(loop, sp.b).size() < size);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("writes after close are ignored") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        conn.transport->write("before");
        conn.transport->close();
        conn.transport->write("after");
        conn.transport->writelines({"more", "lines"});
        CHECK(conn.transport->get_write_buffer_size() == 6);
        CHECK(peer_read_to_eof(loop, sp.b) == "before");
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        conn.transport->write("long after");
        conn.transport->close();
        conn.transport->abort();
        CHECK(log.count == 0);
    }

    TEST_CASE("write_eof: the peer sees EOF after the buffered data, and reading goes on") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        CHECK(conn.transport->can_write_eof());
        conn.transport->write("data");
        conn.transport->write_eof();
        conn.transport->write_eof();  // once is enough
        CHECK_THROWS_AS(conn.transport->write("x"), std::logic_error);
        CHECK(peer_read_to_eof(loop, sp.b) == "data");
        CHECK(!conn.transport->is_closing());
        REQUIRE(::write(sp.b, "reply", 5) == 5);
        REQUIRE(run_until(loop, [&] { return ev.data == "reply"; }));
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.eof == 1);
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a protocol callback that throws: the exception handler is called, the transport aborted, "
        "the loop goes on") {
        Events ev, other_ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp, other;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<RecordingProtocol>(ev);
                                      p->on_data = [](std::string_view) {
                                          throw std::runtime_error("bad data");
                                      };
                                      return p;
                                  },
                                  sp.take_a()));
        auto conn2 = run(loop, loop.connect_accepted_socket(
                                   [&] { return std::make_unique<RecordingProtocol>(other_ev); },
                                   other.take_a()));
        REQUIRE(::write(sp.b, "boom", 4) == 4);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 1);
        REQUIRE(log.messages.size() == 1);
        CHECK(log.messages[0].find("bad data") != std::string::npos);
        CHECK(ev.lost_error);
        CHECK(conn.transport->is_closing());
        CHECK(peer_read_to_eof(loop, sp.b).empty());
        // The loop and the other connection carry on.
        REQUIRE(::write(other.b, "fine", 4) == 4);
        REQUIRE(run_until(loop, [&] { return other_ev.data == "fine"; }));
        CHECK(ev.order_ok);
        conn2.transport->close();
    }

    TEST_CASE("connection_made that throws aborts the transport and reports it") {
        EventLoop loop;
        ExceptionLog log(loop);
        struct Bad : Protocol {
            int* lost;
            explicit Bad(int* l) : lost(l) {}
            void connection_made(Transport&) override { throw std::runtime_error("made failed"); }
            void connection_lost(std::error_code) override { ++*lost; }
        };
        int lost = 0;
        SocketPair sp;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] { return std::make_unique<Bad>(&lost); }, sp.take_a()));
        REQUIRE(run_until(loop, [&] { return lost == 1; }));
        CHECK(log.count == 1);
        CHECK(conn.transport->is_closing());
    }

    TEST_CASE(
        "get_extra_info gives peername, sockname and socket; an unknown name gives the default") {
        Events ev;
        EventLoop loop;
        auto server = run(loop, loop.create_server([] { return std::make_unique<EchoProtocol>(); },
                                                   "127.0.0.1", 0));
        const auto port = server->addresses()[0].port();
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", port));
        auto peer = conn.transport->extra<SocketAddress>("peername");
        auto sock = conn.transport->extra<SocketAddress>("sockname");
        auto fd = conn.transport->extra<int>("socket");
        REQUIRE(peer);
        REQUIRE(sock);
        REQUIRE(fd);
        CHECK(peer->port() == port);
        CHECK(sock->host() == "127.0.0.1");
        CHECK(*fd >= 0);
        CHECK(!conn.transport->get_extra_info("no such thing").has_value());
        CHECK(std::any_cast<int>(conn.transport->get_extra_info("no such thing", 7)) == 7);
        CHECK(&conn.transport->get_loop() == &loop);
        CHECK(conn.transport->get_protocol() == conn.protocol);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
    }
}
