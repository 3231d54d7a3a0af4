// SPDX-License-Identifier: Apache-2.0
// BufferedProtocol on real sockets: the kernel receives into the protocol's own memory;
// get_buffer -> buffer_updated per receive, eof_received, connection_lost, and what an empty
// or throwing get_buffer does.
#include "support.hpp"

using namespace testing;

namespace {

class Buffered : public BufferedProtocol {
public:
    Buffered(Events& e, std::size_t size, bool keep_open = false)
        : e_(e), buf_(size), keep_open_(keep_open) {}
    ~Buffered() override { ++e_.destroyed; }
    void connection_made(Transport& t) override {
        if (e_.made || e_.lost) e_.order_ok = false;
        ++e_.made;
        e_.transport = &t;
    }
    std::span<std::byte> get_buffer(std::size_t sizehint) override {
        if (!e_.made || e_.eof || e_.lost || outstanding_) e_.order_ok = false;
        hints.push_back(sizehint);
        ++get_buffer_calls;
        if (empty_buffer) return {};
        if (throw_in_get_buffer) throw std::runtime_error("no memory for you");
        outstanding_ = true;
        return {buf_.data(), buf_.size()};
    }
    void buffer_updated(std::size_t n) override {
        // buffer_updated follows its get_buffer, with at most the size handed out.
        if (!outstanding_ || n == 0 || n > buf_.size()) e_.order_ok = false;
        outstanding_ = false;
        e_.data.append(reinterpret_cast<const char*>(buf_.data()), n);
        ++updates;
        if (on_update) on_update();
    }
    bool eof_received() override {
        if (!e_.made || e_.eof || e_.lost) e_.order_ok = false;
        ++e_.eof;
        return keep_open_;
    }
    void connection_lost(std::error_code ec) override {
        if (!e_.made || e_.lost) e_.order_ok = false;
        ++e_.lost;
        e_.lost_error = ec;
    }
    std::vector<std::size_t> hints;
    int get_buffer_calls = 0, updates = 0;
    bool empty_buffer = false, throw_in_get_buffer = false;
    std::function<void()> on_update;

private:
    Events& e_;
    std::vector<std::byte> buf_;
    bool keep_open_;
    bool outstanding_ = false;
};

}  // namespace

TEST_SUITE("buffered protocol") {
    TEST_CASE(
        "connection_made -> (get_buffer -> buffer_updated)* -> eof_received -> connection_lost") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        Buffered* proto = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Buffered>(ev, 1000);
                                      proto = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        std::string sent;
        for (int i = 0; i < 20000; ++i) sent += static_cast<char>('a' + i % 23);
        REQUIRE(::write(sp.b, sent.data(), sent.size()) == static_cast<ssize_t>(sent.size()));
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.data == sent);
        CHECK(proto->updates >= 20);  // a 1000-byte buffer takes many receives
        CHECK(proto->hints.at(0) > 0);
        CHECK(ev.eof == 1);
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
        conn.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
    }

    TEST_CASE("a buffered protocol echoes and eof_received true keeps it half-open") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        Buffered* proto = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Buffered>(ev, 64, true);
                                      proto = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        proto->on_update = [&] { ev.transport->write("ack"); };
        REQUIRE(::write(sp.b, "hi", 2) == 2);
        CHECK(peer_read(loop, sp.b, 3) == "ack");
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.eof == 1; }));
        CHECK(!conn.transport->is_closing());
        conn.transport->write("bye");
        conn.transport->close();
        CHECK(peer_read_to_eof(loop, sp.b) == "bye");
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("get_buffer returning an empty buffer aborts the transport with an error") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Buffered>(ev, 64);
                                      p->empty_buffer = true;
                                      return p;
                                  },
                                  sp.take_a()));
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.lost_error);
        CHECK(log.count == 1);
        CHECK(conn.transport->is_closing());
        CHECK(peer_read_to_eof(loop, sp.b).empty());
        CHECK(ev.order_ok);
    }

    TEST_CASE("get_buffer that throws later in the connection aborts it and the loop goes on") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        Buffered* proto = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Buffered>(ev, 64);
                                      proto = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        proto->on_update = [&] { proto->throw_in_get_buffer = true; };
        REQUIRE(::write(sp.b, "x", 1) == 1);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.data == "x");
        CHECK(ev.lost_error);
        REQUIRE(log.count == 1);
        CHECK(log.messages[0].find("no memory for you") != std::string::npos);
        bool later = false;
        loop.call_soon([&] { later = true; });
        REQUIRE(run_until(loop, [&] { return later; }));
    }

    TEST_CASE("no buffer_updated while reading is paused; the bytes come after resume_reading") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        Buffered* proto = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Buffered>(ev, 4);
                                      proto = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        proto->on_update = [&] {
            if (proto->updates == 1) ev.transport->pause_reading();
        };
        REQUIRE(::write(sp.b, "abcdefgh", 8) == 8);
        REQUIRE(run_until(loop, [&] { return proto->updates == 1; }));
        REQUIRE(::write(sp.b, "ijkl", 4) == 4);
        bool waited = false;
        loop.call_later(0.05, [&] { waited = true; });
        REQUIRE(run_until(loop, [&] { return waited; }));
        CHECK(proto->updates == 1);
        CHECK(ev.data == "abcd");
        conn.transport->resume_reading();
        REQUIRE(run_until(loop, [&] { return ev.data.size() == 12; }));
        CHECK(ev.data == "abcdefghijkl");
        CHECK(ev.order_ok);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("a peer reset reaches a buffered protocol as connection-reset") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TcpListener listener;
        auto conn =
            run(loop, loop.create_connection([&] { return std::make_unique<Buffered>(ev, 128); },
                                             "127.0.0.1", listener.port));
        int peer = listener.accept();
        REQUIRE(peer >= 0);
        linger lg{1, 0};
        ::setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        ::close(peer);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.lost_error == std::errc::connection_reset);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }
}
