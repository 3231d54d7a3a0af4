// asyncio's protocol state machine on real sockets: connection_made -> data_received* ->
// eof_received? -> connection_lost, each exactly once, for Protocol and BufferedProtocol.
#include "support.hpp"

#include <thread>

using namespace testing;

TEST_SUITE("protocol callbacks") {
TEST_CASE("echo over a socketpair: data arrives and connection_lost follows EOF") {
    EventLoop loop;
    ExceptionLog log(loop);
    Events ev;
    SocketPair sp;
    auto conn = run(loop, loop.connect_accepted_socket(
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
    EventLoop loop;
    ExceptionLog log(loop);
    struct Echo : Protocol {
        Transport* t = nullptr;
        void connection_made(Transport& tr) override { t = &tr; }
        void data_received(std::string_view d) override { t->write(d); }
    };
    auto server = run(loop, loop.create_server([] { return std::make_unique<Echo>(); }, "127.0.0.1", 0));
    REQUIRE(server->addresses().size() == 1);
    const auto port = server->addresses()[0].port();
    CHECK(port != 0);
    Events ev;
    auto conn = run(loop, loop.create_connection(
                              [&] { return std::make_unique<RecordingProtocol>(ev); }, "127.0.0.1", port));
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
