// SPDX-License-Identifier: Apache-2.0
// connect_read_pipe / connect_write_pipe on pipe() fds: data and EOF, pause/resume_reading,
// write flow control, write_eof, and a reader that goes away (EPIPE, never SIGPIPE).
#include "support.hpp"

#include "src/pipe_transport.hpp"
#include "src/socket_transport.hpp"

#include <fcntl.h>
#include <signal.h>

#include <thread>

using namespace testing;

namespace {

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        r = p[0];
        w = p[1];
    }
    ~Pipe() {
        if (r >= 0) ::close(r);
        if (w >= 0) ::close(w);
    }
    int take_r() { return std::exchange(r, -1); }
    int take_w() { return std::exchange(w, -1); }
    void close_r() { ::close(take_r()); }
    void close_w() { ::close(take_w()); }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

}  // namespace

TEST_SUITE("pipes") {
    TEST_CASE("connect_read_pipe delivers data, then EOF closes it with no error") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_read_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_r()));
        REQUIRE(conn.transport);
        CHECK(ev.made == 1);
        CHECK(conn.transport->is_reading());
        CHECK(conn.transport->extra<int>("pipe").has_value());
        CHECK(!conn.transport->extra<int>("socket").has_value());
        REQUIRE(::write(p.w, "hello", 5) == 5);
        REQUIRE(run_until(loop, [&] { return ev.data == "hello"; }));
        p.close_w();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.eof == 1);
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(conn.transport->is_closing());
        conn.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("a read pipe refuses write, writelines and write_eof with std::logic_error") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_read_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_r()));
        REQUIRE(conn.transport);
        // What the protocol's connection_made is handed: a Transport, whose write side refuses.
        auto* t = dynamic_cast<Transport*>(conn.transport.get());
        REQUIRE(t != nullptr);
        CHECK(!t->can_write_eof());
        CHECK_THROWS_AS(t->write("x"), std::logic_error);
        CHECK_THROWS_AS(t->write(std::string(64 * 1024, 'x')), std::logic_error);
        const std::string_view lines[] = {"a", "b"};
        CHECK_THROWS_AS(t->writelines(lines), std::logic_error);
        CHECK_THROWS_AS(t->write_eof(), std::logic_error);
        try {
            t->write("x");
        } catch (const std::logic_error& e) {
            CHECK(std::string_view(e.what()).find("read pipe") != std::string_view::npos);
        }
        CHECK(t->get_write_buffer_size() == 0);
        // Still a working read pipe.
        CHECK(!t->is_closing());
        REQUIRE(::write(p.w, "after", 5) == 5);
        REQUIRE(run_until(loop, [&] { return ev.data == "after"; }));
        p.close_w();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(log.count == 0);
    }

    TEST_CASE("a write pipe that never wrote hears its reader go away (asyncio: a clean close)") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_write_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_w()));
        REQUIRE(conn.transport);
        CHECK(ev.lost == 0);
        p.close_r();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(conn.transport->is_closing());
        CHECK(log.count == 0);
    }

    TEST_CASE("a read pipe delivers nothing while paused, and everything in order after resume") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_read_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_r()));
        REQUIRE(::write(p.w, "one", 3) == 3);
        REQUIRE(run_until(loop, [&] { return ev.data == "one"; }));
        conn.transport->pause_reading();
        conn.transport->pause_reading();  // idempotent
        CHECK(!conn.transport->is_reading());
        REQUIRE(::write(p.w, "two", 3) == 3);
        p.close_w();
        // Give the loop some turns: nothing may arrive while paused.
        bool turned = false;
        loop.call_later(0.05, [&] { turned = true; });
        REQUIRE(run_until(loop, [&] { return turned; }));
        CHECK(ev.data == "one");
        CHECK(ev.eof == 0);
        conn.transport->resume_reading();
        conn.transport->resume_reading();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.data == "onetwo");
        CHECK(ev.eof == 1);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("a read pipe with a BufferedProtocol receives into the protocol's memory") {
        EventLoop loop;
        ExceptionLog log(loop);
        struct Buffered : BufferedProtocol {
            char mem[7];
            std::string got;
            int lost = 0;
            std::span<std::byte> get_buffer(std::size_t) override {
                return {reinterpret_cast<std::byte*>(mem), sizeof mem};
            }
            void buffer_updated(std::size_t n) override { got.append(mem, n); }
            void connection_lost(std::error_code) override { ++lost; }
        };
        Pipe p;
        auto conn = run(
            loop, loop.connect_read_pipe([] { return std::make_unique<Buffered>(); }, p.take_r()));
        auto& proto = conn.as<Buffered>();
        const std::string msg = pattern(100);
        REQUIRE(::write(p.w, msg.data(), msg.size()) == 100);
        p.close_w();
        REQUIRE(run_until(loop, [&] { return proto.lost == 1; }));
        CHECK(proto.got == msg);
        CHECK(log.count == 0);
    }

    TEST_CASE("a write pipe pauses over the high-water mark and resumes as the reader drains") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_write_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_w()));
        auto& t = *conn.transport;
        CHECK(t.can_write_eof());
        const std::string data = pattern(1 << 20);
        // The pipe holds 64 KiB: writing 1 MiB at once must go over the high-water mark.
        t.write(std::string_view(data));
        CHECK(ev.pauses == 1);
        CHECK(t.get_write_buffer_size() > 0);
        std::string got;
        std::thread reader([&] { got = read_n(p.r, data.size() + 1); });
        REQUIRE(run_until(loop, [&] { return t.get_write_buffer_size() == 0; }));
        CHECK(ev.resumes == 1);
        t.write_eof();
        CHECK_THROWS_AS(t.write("x"), std::logic_error);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        reader.join();  // EOF: our end was closed
        CHECK(got == data);
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a write pipe whose reader goes away with data buffered loses the connection with EPIPE") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_write_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_w()));
        conn.transport->write(std::string_view(pattern(256 * 1024)));
        p.close_r();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.lost_error == std::errc::broken_pipe);
        CHECK(conn.transport->get_write_buffer_size() == 0);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
        // SIGPIPE is ignored for the process, so a plain write gives EPIPE too.
        struct sigaction sa {};
        REQUIRE(::sigaction(SIGPIPE, nullptr, &sa) == 0);
        CHECK((sa.sa_handler == SIG_IGN));
    }

    TEST_CASE("an idle write pipe closes cleanly when its reader goes away") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        auto conn =
            run(loop, loop.connect_write_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, p.take_w()));
        conn.transport->write("abc");
        REQUIRE(run_until(loop, [&] { return conn.transport->get_write_buffer_size() == 0; }));
        CHECK(read_n(p.r, 3) == "abc");
        p.close_r();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(conn.transport->is_closing());
        CHECK(log.count == 0);
    }

    TEST_CASE("close() on a write pipe flushes first; abort() drops the buffer") {
        Events ev1, ev2;
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p1, p2;
        auto c1 =
            run(loop, loop.connect_write_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev1); }, p1.take_w()));
        auto c2 =
            run(loop, loop.connect_write_pipe(
                          [&] { return std::make_unique<RecordingProtocol>(ev2); }, p2.take_w()));
        const std::string data = pattern(200 * 1024);
        c1.transport->write(std::string_view(data));
        c1.transport->close();
        c2.transport->write(std::string_view(data));
        c2.transport->abort();
        CHECK(c2.transport->get_write_buffer_size() == 0);
        std::string got;
        std::thread reader([&] { got = read_n(p1.r, data.size() + 1); });
        REQUIRE(run_until(loop, [&] { return ev1.lost == 1 && ev2.lost == 1; }));
        reader.join();
        CHECK(got == data);
        CHECK(!ev1.lost_error);
        CHECK(ev1.order_ok);
        CHECK(ev2.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("a write pipe feeds a read pipe: 8 MiB end to end with flow control both ways") {
        EventLoop loop;
        ExceptionLog log(loop);
        Pipe p;
        struct Sink : Protocol {
            ReadTransport* t = nullptr;
            std::string got;
            int lost = 0;
            void connection_made(Transport& tr) override { t = &tr; }
            void data_received(std::string_view d) override { got.append(d); }
            void connection_lost(std::error_code) override { ++lost; }
        };
        struct Source : Protocol {
            bool paused = false;
            int lost = 0;
            void pause_writing() override { paused = true; }
            void resume_writing() override { paused = false; }
            void connection_lost(std::error_code) override { ++lost; }
        };
        auto rc =
            run(loop, loop.connect_read_pipe([] { return std::make_unique<Sink>(); }, p.take_r()));
        auto wc = run(
            loop, loop.connect_write_pipe([] { return std::make_unique<Source>(); }, p.take_w()));
        auto& sink = rc.as<Sink>();
        auto& source = wc.as<Source>();
        const std::string data = pattern(8 << 20);
        std::size_t sent = 0, max_buffered = 0;
        int slow_turns = 0;
        std::function<void()> pump = [&] {
            // The reader pauses now and then, so the writer has to wait for it.
            if (++slow_turns % 50 == 0) {
                rc.transport->pause_reading();
                loop.call_later(0.001, [&] { rc.transport->resume_reading(); });
            }
            while (!source.paused && sent < data.size()) {
                std::size_t n = std::min<std::size_t>(16 * 1024, data.size() - sent);
                wc.transport->write(std::string_view(data).substr(sent, n));
                sent += n;
                max_buffered = std::max(max_buffered, wc.transport->get_write_buffer_size());
            }
            if (sent == data.size())
                wc.transport->write_eof();
            else
                loop.call_soon([&] { pump(); });
        };
        loop.call_soon([&] { pump(); });
        REQUIRE(run_until(loop, [&] { return sink.lost == 1 && source.lost == 1; }));
        CHECK(sink.got.size() == data.size());
        CHECK(sink.got == data);
        // Flow control bounds the buffer: the high-water mark plus one write.
        CHECK(max_buffered <= default_high_water + 16 * 1024);
        CHECK(log.count == 0);
    }

    TEST_CASE("a read pipe on /dev/null sees EOF at once; bad fds are rejected") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        auto conn = run(loop, loop.connect_read_pipe(
                                  [&] { return std::make_unique<RecordingProtocol>(ev); }, fd));
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.eof == 1);
        CHECK(ev.data.empty());
        auto bad =
            loop.connect_read_pipe([&] { return std::make_unique<RecordingProtocol>(ev); }, -1);
        REQUIRE(bad.done());
        CHECK_THROWS_AS(bad.result(), std::invalid_argument);
        CHECK(log.count == 0);
    }
}

TEST_CASE("start_tls refuses a read or a write pipe with a clear exception, leaving it open") {
    Events rev, wev;
    EventLoop loop;
    ExceptionGuard guard(loop);
    Pipe p;
    auto r = run(loop, loop.connect_read_pipe(
                           [&] { return std::make_unique<RecordingProtocol>(rev); }, p.take_r()));
    auto w = run(loop, loop.connect_write_pipe(
                           [&] { return std::make_unique<RecordingProtocol>(wev); }, p.take_w()));
    auto ctx = SslContext::client();
    StartTlsOptions o;
    o.server_hostname = "localhost";
    for (auto t : {std::dynamic_pointer_cast<Transport>(r.transport),
                   std::dynamic_pointer_cast<Transport>(w.transport)}) {
        REQUIRE(t);
        CHECK_THROWS_WITH_AS(
            loop.start_tls(t, ctx, o),
            "start_tls: a pipe transport cannot carry TLS (it needs a TCP or Unix stream socket)",
            std::invalid_argument);
        CHECK_FALSE(t->is_closing());
    }
    w.transport->write("still a pipe");
    REQUIRE(run_until(loop, [&] { return rev.data == "still a pipe"; }));
    r.transport->close();
    w.transport->close();
    REQUIRE(run_until(loop, [&] { return rev.lost == 1 && wev.lost == 1; }));
}

TEST_CASE("each pipe end has its own transport kind, and neither is a socket transport") {
    Events rev, wev;
    EventLoop loop;
    ExceptionGuard guard(loop);
    Pipe p;
    auto r = run(loop, loop.connect_read_pipe(
                           [&] { return std::make_unique<RecordingProtocol>(rev); }, p.take_r()));
    auto w = run(loop, loop.connect_write_pipe(
                           [&] { return std::make_unique<RecordingProtocol>(wev); }, p.take_w()));
    CHECK(dynamic_cast<detail::ReadPipeTransport*>(r.transport.get()) != nullptr);
    CHECK(dynamic_cast<detail::SocketTransport*>(r.transport.get()) == nullptr);
    CHECK(dynamic_cast<detail::WritePipeTransport*>(w.transport.get()) != nullptr);
    CHECK(dynamic_cast<detail::SocketTransport*>(w.transport.get()) == nullptr);
    r.transport->close();
    w.transport->close();
    REQUIRE(run_until(loop, [&] { return rev.lost == 1 && wev.lost == 1; }));
}
