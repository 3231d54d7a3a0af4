// SPDX-License-Identifier: Apache-2.0
// Ring set-up: every fallback mode can be asked for (by option or by AIORING_RING_MODE), the
// loop reports what it got, and a transport echoes in each of them.
#include "support.hpp"

#include <cstdlib>
#include <optional>

using namespace testing;

namespace {

struct Echo : Protocol {
    Transport* t = nullptr;
    void connection_made(Transport& tr) override { t = &tr; }
    void data_received(std::string_view d) override { t->write(d); }
};

void check_echo(EventLoop& loop) {
    ExceptionLog log(loop);
    SocketPair sp;
    auto conn = run(
        loop, loop.connect_accepted_socket([] { return std::make_unique<Echo>(); }, sp.take_a()));
    REQUIRE(::write(sp.b, "ping", 4) == 4);
    std::string got;
    set_nonblocking(sp.b);
    REQUIRE(run_until(loop, [&] {
        char buf[16];
        ssize_t n = ::read(sp.b, buf, sizeof buf);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        return got == "ping";
    }));
    conn.transport->close();
    CHECK(log.count == 0);
}

}  // namespace

TEST_SUITE("ring set-up") {
    TEST_CASE("each ring mode can be asked for and gives that mode or a weaker one") {
        for (RingMode m : {RingMode::defer_taskrun, RingMode::coop_taskrun, RingMode::basic}) {
            CAPTURE(to_string(m));
            LoopOptions o;
            o.strongest_ring_mode = m;
            EventLoop loop(o);
            // Weaker modes come later in the enum; the environment may cap further.
            CHECK(static_cast<int>(loop.ring_mode()) >= static_cast<int>(m));
            if (m == RingMode::basic) CHECK(loop.ring_mode() == RingMode::basic);
            check_echo(loop);
        }
    }

    TEST_CASE("AIORING_RING_MODE caps the ring mode") {
        {
            ScopedEnv env("AIORING_RING_MODE", "basic");
            EventLoop loop;
            CHECK(loop.ring_mode() == RingMode::basic);
            check_echo(loop);
        }
        {
            ScopedEnv env("AIORING_RING_MODE", "coop");
            EventLoop loop;
            CHECK(static_cast<int>(loop.ring_mode()) >= static_cast<int>(RingMode::coop_taskrun));
            check_echo(loop);
        }
        {
            ScopedEnv env("AIORING_RING_MODE", "coop_taskrun");
            LoopOptions o;
            o.strongest_ring_mode = RingMode::basic;  // the option may be weaker than the env
            EventLoop loop(o);
            CHECK(loop.ring_mode() == RingMode::basic);
        }
        {
            ScopedEnv env("AIORING_RING_MODE", nullptr);
            EventLoop loop;
            MESSAGE("strongest mode granted here: " << to_string(loop.ring_mode()));
        }
    }

    TEST_CASE("a bad AIORING_RING_MODE value is rejected with a message") {
        ScopedEnv env("AIORING_RING_MODE", "turbo");
        try {
            EventLoop loop;
            FAIL("constructed a loop with AIORING_RING_MODE=turbo");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find("turbo") != std::string::npos);
        }
    }

    TEST_CASE("AIORING_NO_MULTISHOT=1 still receives and accepts") {
        ScopedEnv env("AIORING_NO_MULTISHOT", "1");
        Events ev;
        EventLoop loop;
        check_echo(loop);
        auto server =
            run(loop, loop.create_server([] { return std::make_unique<Echo>(); }, "127.0.0.1", 0));
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", server->addresses()[0].port()));
        conn.transport->write("one");
        REQUIRE(run_until(loop, [&] { return ev.data == "one"; }));
        conn.transport->write("two");
        REQUIRE(run_until(loop, [&] { return ev.data == "onetwo"; }));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
    }

    TEST_CASE("a small buffer ring that runs dry is not EOF: the receive re-arms") {
        LoopOptions o;
        o.buffer_count = 2;
        o.buffer_size = 64;
        o.stream_buffer_count = 2;  // the same with incremental buffers
        o.stream_buffer_size = 64;
        Events ev;
        EventLoop loop(o);
        ExceptionLog log(loop);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        std::string sent;
        for (int i = 0; i < 2000; ++i) sent += "0123456789abcdef"[i % 16];
        REQUIRE(::write(sp.b, sent.data(), sent.size()) == static_cast<ssize_t>(sent.size()));
        REQUIRE(run_until(loop, [&] { return ev.data.size() == sent.size(); }));
        CHECK(ev.data == sent);
        CHECK(ev.eof == 0);
        CHECK(ev.lost == 0);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 0);
    }
}

TEST_CASE("a completion queue far smaller than the load overflows without losing a completion") {
    constexpr int n = 64;
    std::vector<Events> evs(n);  // outlives the loop, which frees the protocols last
    LoopOptions o;
    o.sq_entries = 4;
    o.cq_entries = 8;
    EventLoop loop(o);
    ExceptionLog log(loop);
    std::vector<std::unique_ptr<SocketPair>> pairs;
    std::vector<Connection<>> conns;
    for (int i = 0; i < n; ++i) {
        pairs.push_back(std::make_unique<SocketPair>());
        conns.push_back(
            run(loop, loop.connect_accepted_socket(
                          [&evs, i] { return std::make_unique<RecordingProtocol>(evs[i]); },
                          pairs.back()->take_a())));
    }
    // Every peer writes before the loop runs again: 64 receives complete in one enter.
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < n; ++i) REQUIRE(::write(pairs[i]->b, "x", 1) == 1);
        REQUIRE(run_until(loop, [&] {
            for (auto& e : evs)
                if (e.data.size() != static_cast<std::size_t>(round + 1)) return false;
            return true;
        }));
    }
    for (auto& c : conns) c.transport->close();
    REQUIRE(run_until(loop, [&] {
        for (auto& e : evs)
            if (e.lost != 1) return false;
        return true;
    }));
    CHECK(log.count == 0);
}
