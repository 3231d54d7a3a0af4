// SPDX-License-Identifier: Apache-2.0
// Debug mode and the loop's log: slow callbacks and completions, transports, servers and tasks
// left at loop.close(), the write-after-close warning, and set_log_handler itself.
#include "support.hpp"

#include <stdlib.h>

#include <chrono>
#include <thread>

using namespace testing;

namespace {

struct LogLine {
    LogLevel level;
    std::string message;
};

// Captures the loop's log; declared before the loop it listens to.
struct Captured {
    std::vector<LogLine> lines;
    void attach(EventLoop& loop) {
        loop.set_log_handler([this](LogLevel l, std::string_view m) {
            lines.push_back({l, std::string(m)});
        });
    }
    std::size_t count(std::string_view needle) const {
        std::size_t n = 0;
        for (auto& l : lines) n += l.message.find(needle) != std::string::npos;
        return n;
    }
    const LogLine* find(std::string_view needle) const {
        for (auto& l : lines)
            if (l.message.find(needle) != std::string::npos) return &l;
        return nullptr;
    }
};

LoopOptions debug_options(double slow = 0.1) {
    LoopOptions o;
    o.debug = true;
    o.slow_callback_duration = slow;
    return o;
}

// A callback with a name of its own (lambdas' type names differ between compilers).
struct SlowStep {
    bool* ran;
    void operator()() const {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));  // at least 30 ms
        *ran = true;
    }
};

struct Throwing : Protocol {
    void data_received(std::string_view) override { throw std::runtime_error("boom"); }
};

}  // namespace

TEST_SUITE("log handler") {
    TEST_CASE("the default exception handler logs one error line with the peer address") {
        Captured log;
        EventLoop loop;
        log.attach(loop);
        TcpListener listener;
        auto conn = run(loop, loop.create_connection([] { return std::make_unique<Throwing>(); },
                                                     "127.0.0.1", listener.port));
        int peer = listener.accept();
        REQUIRE(peer >= 0);
        const std::string sockname = conn.transport->extra<SocketAddress>("sockname")->to_string();
        REQUIRE(::write(peer, "x", 1) == 1);
        REQUIRE(run_until(loop, [&] { return !log.lines.empty(); }));
        REQUIRE(log.lines.size() == 1);
        CHECK(log.lines[0].level == LogLevel::error);
        CHECK(log.lines[0].message.find("protocol data_received() failed: boom") == 0);
        CHECK(log.lines[0].message.find("(peer 127.0.0.1:" + std::to_string(listener.port) + ")") !=
              std::string::npos);
        CHECK(log.lines[0].message.find(sockname) == std::string::npos);  // the peer, not us
        ::close(peer);
    }

    TEST_CASE("a context without a transport has no peer in its line") {
        Captured log;
        EventLoop loop;
        log.attach(loop);
        loop.call_exception_handler(ExceptionContext{"plain", nullptr});
        REQUIRE(log.lines.size() == 1);
        CHECK(log.lines[0].message == "plain");
    }

    TEST_CASE("a throwing log handler does not lose the message or break the loop") {
        EventLoop loop;
        loop.set_log_handler([](LogLevel, std::string_view) { throw std::runtime_error("no"); });
        CHECK_NOTHROW(loop.log(LogLevel::info, "still printed on stderr"));
        loop.set_log_handler({});  // back to the default
        CHECK_NOTHROW(loop.log(LogLevel::debug, "default handler"));
    }

    TEST_CASE(
        "write() on a closing transport: the 5th ignored write logs one warning, in every build") {
        Captured log;
        EventLoop loop;  // debug mode off
        log.attach(loop);
        SocketPair sp;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [] { return std::make_unique<Protocol>(); }, sp.take_a()));
        conn.transport->close();
        for (int i = 0; i < 4; ++i) conn.transport->write("ignored");
        CHECK(log.lines.empty());
        conn.transport->write("fifth");
        REQUIRE(log.lines.size() == 1);
        CHECK(log.lines[0].level == LogLevel::warning);
        CHECK(log.lines[0].message.find("write() on a closing transport is ignored") == 0);
        for (int i = 0; i < 20; ++i) conn.transport->write(std::string(100000, 'x'));
        CHECK(log.lines.size() == 1);  // bounded: once per transport
        std::string got;
        bool eof = false;
        CHECK(read_while_running(
            loop, sp.b, got, [&](const std::string&) { return eof; }, &eof));
        CHECK(got.empty());  // none of it was sent
    }

}  // TEST_SUITE

TEST_SUITE("debug mode") {
    TEST_CASE("debug mode is off by default and follows LoopOptions, set_debug and AIORING_DEBUG") {
        {
            EventLoop loop;
            CHECK(!loop.get_debug());
            CHECK(loop.slow_callback_duration() == doctest::Approx(0.1));
            loop.set_debug(true);
            CHECK(loop.get_debug());
            loop.set_slow_callback_duration(0.25);
            CHECK(loop.slow_callback_duration() == doctest::Approx(0.25));
            CHECK_THROWS_AS(loop.set_slow_callback_duration(-1), std::invalid_argument);
        }
        {
            EventLoop loop(debug_options(0.5));
            CHECK(loop.get_debug());
            CHECK(loop.slow_callback_duration() == doctest::Approx(0.5));
        }
        CHECK_THROWS_AS(EventLoop(debug_options(-0.5)), std::invalid_argument);
        ::setenv("AIORING_DEBUG", "1", 1);
        {
            EventLoop loop;
            CHECK(loop.get_debug());
        }
        ::setenv("AIORING_DEBUG", "0", 1);
        {
            EventLoop loop;
            CHECK(!loop.get_debug());
        }
        ::unsetenv("AIORING_DEBUG");
    }

    TEST_CASE(
        "a callback slower than slow_callback_duration is logged with its kind, type and time") {
        Captured log;
        EventLoop loop(debug_options(0.01));
        log.attach(loop);
        bool fast_ran = false, slow_ran = false;
        loop.call_soon([&] { fast_ran = true; });
        loop.call_soon(SlowStep{&slow_ran});
        REQUIRE(run_until(loop, [&] { return slow_ran; }));
        CHECK(fast_ran);
        // The sleeping one is over the threshold for sure (the other one only if the machine
        // stalled for 10 ms in it, so it is not checked).
        const LogLine* l = log.find("SlowStep");
        REQUIRE(l != nullptr);
        CHECK(l->level == LogLevel::warning);
        INFO(l->message);
        CHECK(l->message.find("Executing callback ") == 0);
        CHECK(l->message.find("SlowStep took ") != std::string::npos);
        CHECK(l->message.find(" seconds") != std::string::npos);
    }

    TEST_CASE("with a zero threshold every timer, callback and completion is named") {
        Captured log;
        EventLoop loop(debug_options(0));
        log.attach(loop);
        SocketPair sp;
        Events e;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(e); }, sp.take_a()));
        bool fired = false;
        loop.call_later(0.001, [&] { fired = true; });
        REQUIRE(::write(sp.b, "hi", 2) == 2);
        REQUIRE(run_until(loop, [&] { return fired && e.data == "hi"; }));
        CHECK(log.count("Executing timer ") >= 1);
        CHECK(log.count("Executing internal callback ") >= 1);  // connection_made's scheduling
        // data_received ran in the receive op's completion, which names its transport.
        CHECK(log.count("Executing completion of aioring::detail::StreamTransport::RecvOp took") >=
              1);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return e.lost == 1; }));
    }

    TEST_CASE("nothing is timed or logged with debug mode off, or under the threshold") {
        Captured log;
        EventLoop loop;
        log.attach(loop);
        loop.set_slow_callback_duration(0);  // no effect while debug mode is off
        bool ran = false;
        loop.call_soon([&] { ran = true; });
        loop.call_later(0.001, [] {});
        run_iterations(loop, 3);
        CHECK(ran);
        loop.set_debug(true);
        loop.set_slow_callback_duration(1e9);
        ran = false;
        loop.call_soon([&] { ran = true; });
        run_iterations(loop, 3);
        CHECK(ran);
        CHECK(log.lines.empty());
    }

    TEST_CASE(
        "a transport left open at loop.close() is reported with its peer; closed ones are not") {
        Captured log;
        EventLoop loop(debug_options());
        log.attach(loop);
        TcpListener listener;
        auto open = run(loop, loop.create_connection([] { return std::make_unique<Protocol>(); },
                                                     "127.0.0.1", listener.port));
        SocketPair sp;
        auto closed = run(loop, loop.connect_accepted_socket(
                                    [] { return std::make_unique<Protocol>(); }, sp.take_a()));
        closed.transport->close();
        int peer = listener.accept();
        run_iterations(loop, 2);
        CHECK(log.lines.empty());
        loop.close();
        REQUIRE(log.lines.size() == 1);
        CHECK(log.lines[0].level == LogLevel::warning);
        CHECK(log.lines[0].message ==
              "unclosed transport aioring::detail::SocketTransport (peer 127.0.0.1:" +
                  std::to_string(listener.port) + ")");
        CHECK(open.transport->is_closing());  // the handle stays safe
        ::close(peer);
    }

    TEST_CASE("without debug mode a transport left open is not reported") {
        Captured log;
        EventLoop loop;
        log.attach(loop);
        SocketPair sp;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [] { return std::make_unique<Protocol>(); }, sp.take_a()));
        loop.close();
        CHECK(log.lines.empty());
    }

    TEST_CASE("a server left open at loop.close(), or dropped without close(), is reported") {
        Captured log;
        EventLoop loop(debug_options());
        log.attach(loop);
        auto serving = run(
            loop, loop.create_server([] { return std::make_unique<Protocol>(); }, "127.0.0.1", 0));
        const std::string where = serving->addresses()[0].to_string();
        {
            ServerOptions o;
            o.start_serving = false;
            auto idle = run(loop, loop.create_server([] { return std::make_unique<Protocol>(); },
                                                     "127.0.0.1", 0, o));
            const std::string idle_where = idle->addresses()[0].to_string();
            idle.reset();  // never served, never closed: destroyed here
            REQUIRE(log.lines.size() == 1);
            CHECK(log.lines[0].message == "unclosed server (listening on " + idle_where + ")");
        }
        {
            auto closed = run(loop, loop.create_server([] { return std::make_unique<Protocol>(); },
                                                       "127.0.0.1", 0));
            closed->close();
            run(loop, closed->wait_closed());
        }
        CHECK(log.lines.size() == 1);
        loop.close();
        REQUIRE(log.lines.size() == 2);
        CHECK(log.lines[1].level == LogLevel::warning);
        CHECK(log.lines[1].message == "unclosed server (listening on " + where + ")");
    }

    TEST_CASE("a server that fails to start is not reported as unclosed") {
        Captured log;
        EventLoop loop(debug_options());
        log.attach(loop);
        auto taken = run(
            loop, loop.create_server([] { return std::make_unique<Protocol>(); }, "127.0.0.1", 0));
        ServerOptions o;
        o.reuse_address = false;
        auto second = loop.create_server([] { return std::make_unique<Protocol>(); }, "127.0.0.1",
                                         taken->addresses()[0].port(), o);
        REQUIRE(run_until(loop, [&] { return second.done(); }));
        CHECK_THROWS_AS(second.result(), std::system_error);
        taken->close();
        run(loop, taken->wait_closed());
        loop.close();
        CHECK(log.lines.empty());
    }

    namespace {
    Task<void> wait_forever(EventLoop& loop) {
        Future<void> never = loop.create_future();
        co_await never;
    }
    Task<int> finishes() { co_return 1; }
    }  // namespace

    TEST_CASE("a task destroyed while pending at loop.close() is reported; finished ones are not") {
        Captured log;
        EventLoop loop(debug_options());
        log.attach(loop);
        auto pending = loop.create_task(wait_forever(loop));
        auto done = loop.create_task(finishes());
        REQUIRE(run_until(loop, [&] { return done.done(); }));
        CHECK(log.lines.empty());
        loop.close();
        REQUIRE(log.lines.size() == 1);
        CHECK(log.lines[0].level == LogLevel::error);
        CHECK(log.lines[0].message == "Task was destroyed but it is pending!");
        CHECK(!pending.done());
    }

}  // TEST_SUITE
