// SPDX-License-Identifier: Apache-2.0
// Stream receives through the provided-buffer ring, with incremental buffers (Linux 6.12) and
// without (AIORING_NO_INCREMENTAL=1, the NAME.noinc ctest variant): small messages and bursts
// on one connection, connections sharing buffers, pausing, a ring that runs dry.
#include "support.hpp"

#include <sys/utsname.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "src/loop_core.hpp"

using namespace testing;

namespace {

bool kernel_at_least(int major, int minor) {
    utsname u{};
    int ma = 0, mi = 0;
    if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
    return ma > major || (ma == major && mi >= minor);
}

bool forced_off() {
    const char* v = std::getenv("AIORING_NO_INCREMENTAL");
    return v != nullptr && *v == '1';
}

struct Echo : Protocol {
    Transport* t = nullptr;
    void connection_made(Transport& tr) override { t = &tr; }
    void data_received(std::string_view d) override { t->write(d); }
};

// Writes `data` to a blocking fd from a thread, so that a burst larger than the socket buffers
// goes out while the loop reads.
struct PeerWriter {
    std::thread th;
    PeerWriter(int fd, const std::string& data)
        : th([fd, &data] {
              std::size_t off = 0;
              while (off < data.size()) {
                  ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
                  if (n <= 0) break;
                  off += static_cast<std::size_t>(n);
              }
          }) {}
    ~PeerWriter() { th.join(); }
};

// Receives on `sp.a` through a RecordingProtocol while the peer writes `data` to `sp.b`.
// `ev` outlives the loop: the protocol that counts into it is freed with the loop.
void receive_burst(EventLoop& loop, Events& ev, const std::string& data) {
    ExceptionLog log(loop);
    SocketPair sp;
    auto conn =
        run(loop, loop.connect_accepted_socket(
                      [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
    {
        PeerWriter w(sp.b, data);
        REQUIRE(run_until(loop, [&] { return ev.data.size() >= data.size(); }));
    }
    CHECK(ev.data.size() == data.size());
    CHECK(ev.data == data);
    CHECK(ev.eof == 0);
    CHECK(ev.lost == 0);
    conn.transport->close();
    REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
    CHECK(ev.order_ok);
    CHECK(log.count == 0);
}

}  // namespace

TEST_SUITE("buffer ring") {
    TEST_CASE(
        "incremental buffers where the kernel has them; AIORING_NO_INCREMENTAL=1 or the option "
        "turns them off") {
        {
            EventLoop loop;
            // The epoll backend does not emulate incremental consumption.
            CHECK(loop.incremental_buffers() ==
                  (kernel_at_least(6, 12) && !forced_off() && loop.backend() == Backend::io_uring));
        }
        {
            ScopedEnv env("AIORING_NO_INCREMENTAL", "1");
            Events ev;
            EventLoop loop;
            CHECK_FALSE(loop.incremental_buffers());
            receive_burst(loop, ev, lcg_bytes(256 * 1024));
        }
        {
            ScopedEnv env("AIORING_NO_INCREMENTAL", nullptr);
            LoopOptions o;
            o.incremental_buffers = false;
            Events ev;
            EventLoop loop(o);
            CHECK_FALSE(loop.incremental_buffers());
            receive_burst(loop, ev, lcg_bytes(256 * 1024));
        }
        {
            ScopedEnv env("AIORING_NO_INCREMENTAL", nullptr);
            Events ev;
            EventLoop loop;
            CHECK(loop.incremental_buffers() ==
                  (kernel_at_least(6, 12) && loop.backend() == Backend::io_uring));
            receive_burst(loop, ev, lcg_bytes(256 * 1024));
        }
    }

    TEST_CASE("a 64 B message and a 1 MiB burst on one connection both come back intact") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        auto server =
            run(loop, loop.create_server([] { return std::make_unique<Echo>(); }, "127.0.0.1", 0));
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", server->addresses()[0].port()));
        const std::string small = lcg_bytes(64, 1);
        conn.transport->write(small);
        REQUIRE(run_until(loop, [&] { return ev.data.size() == small.size(); }));
        CHECK(ev.data == small);
        const std::string burst = lcg_bytes(1024 * 1024, 2);
        conn.transport->write(burst);
        REQUIRE(run_until(loop, [&] { return ev.data.size() >= small.size() + burst.size(); }));
        CHECK(ev.data == small + burst);
        // And small messages again after the burst: the buffer it left half full serves them.
        std::string expect = small + burst;
        for (int i = 0; i < 50; ++i) {
            const std::string m = lcg_bytes(64, 100 + i);
            expect += m;
            conn.transport->write(m);
            REQUIRE(run_until(loop, [&] { return ev.data.size() == expect.size(); }));
        }
        CHECK(ev.data == expect);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("connections whose receives share one buffer each get their own bytes, in order") {
        constexpr int n = 4;
        Events ev[n];
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp[n];
        std::vector<Connection<>> conns;
        for (int i = 0; i < n; ++i)
            conns.push_back(
                run(loop, loop.connect_accepted_socket(
                              [&, i] { return std::make_unique<RecordingProtocol>(ev[i]); },
                              sp[i].take_a())));
        std::string expect[n];
        for (int round = 0; round < 200; ++round) {
            // Every peer writes before the loop runs, so one enter receives them all, one after the
            // other into the same buffer.
            for (int i = 0; i < n; ++i) {
                const std::string m = lcg_bytes(1 + (round * 7 + i * 13) % 97, round * n + i);
                expect[i] += m;
                REQUIRE(::write(sp[i].b, m.data(), m.size()) == static_cast<ssize_t>(m.size()));
            }
            REQUIRE(run_until(loop, [&] {
                for (int i = 0; i < n; ++i)
                    if (ev[i].data.size() < expect[i].size()) return false;
                return true;
            }));
        }
        for (int i = 0; i < n; ++i) {
            CHECK(ev[i].data == expect[i]);
            conns[i].transport->close();
        }
        REQUIRE(run_until(loop, [&] {
            for (int i = 0; i < n; ++i)
                if (ev[i].lost != 1) return false;
            return true;
        }));
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "pausing in every data_received during a 1 MiB burst delivers every byte once, in order") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        int calls = 0;
        bool delivered_while_paused = false;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<RecordingProtocol>(ev);
                                      p->on_data = [&](std::string_view) {
                                          ++calls;
                                          if (!ev.transport->is_reading())
                                              delivered_while_paused = true;
                                          ev.transport->pause_reading();
                                          loop.call_soon([&] { ev.transport->resume_reading(); });
                                      };
                                      return p;
                                  },
                                  sp.take_a()));
        const std::string data = lcg_bytes(1024 * 1024, 7);
        {
            PeerWriter w(sp.b, data);
            REQUIRE(run_until(loop, [&] { return ev.data.size() >= data.size(); }));
        }
        CHECK(ev.data == data);
        CHECK_FALSE(delivered_while_paused);
        CHECK(calls > 1);
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.eof == 1);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    // The kernel is offered a few buffers at a time, the most recently freed first: a stream
    // keeps cycling through those (warm in the cache) rather than through the whole ring. 24 MiB
    // each way is more than the ring holds (16 MiB), so a ring offering every buffer in turn
    // would have used all 64; this one uses at most the ones offered plus those the echo's
    // sends keep (half the ring at most).
    TEST_CASE("a long stream cycles through the few buffers offered, not the whole ring") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        if (!loop.incremental_buffers()) return;  // the shared whole-buffer ring offers all
        const auto& ring = loop.core().stream_ring();
        REQUIRE(ring.offered() < ring.count());
        CHECK(ring.buffers_touched() == ring.offered());
        auto server =
            run(loop, loop.create_server([] { return std::make_unique<Echo>(); }, "127.0.0.1", 0));
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", server->addresses()[0].port()));
        const std::string data = lcg_bytes(24 * 1024 * 1024, 11);
        conn.transport->write(data);
        REQUIRE(run_until(loop, [&] { return ev.data.size() >= data.size(); }));
        CHECK(ev.data.size() == data.size());
        CHECK((ev.data == data));  // not printed whole if it fails
        MESSAGE("buffers used: " << ring.buffers_touched() << " of " << ring.count());
        CHECK(ring.buffers_touched() <= ring.offered() + ring.count() / 2);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("a small ring of large buffers that runs dry (ENOBUFS) re-arms and loses nothing") {
        LoopOptions o;
        o.stream_buffer_count = 2;
        o.stream_buffer_size = 4096;
        o.buffer_count = 2;  // the whole-buffer ring, for the NAME.noinc variant
        o.buffer_size = 4096;
        Events ev;
        EventLoop loop(o);
        receive_burst(loop, ev, lcg_bytes(1024 * 1024, 9));
    }

    TEST_CASE("a BufferedProtocol beside ring receivers gets its bytes in its own memory") {
        std::string buffered_data;
        int buffered_lost = 0;
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        struct Buffered : BufferedProtocol {
            std::string& data;
            int& lost;
            std::byte buf[1000];
            Buffered(std::string& d, int& l) : data(d), lost(l) {}
            std::span<std::byte> get_buffer(std::size_t) override { return {buf, sizeof buf}; }
            void buffer_updated(std::size_t n) override {
                data.append(reinterpret_cast<char*>(buf), n);
            }
            void connection_lost(std::error_code) override { ++lost; }
        };
        SocketPair a, b;
        auto ca =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<Buffered>(buffered_data, buffered_lost); },
                          a.take_a()));
        auto cb =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, b.take_a()));
        const std::string da = lcg_bytes(300 * 1024, 3), db = lcg_bytes(300 * 1024, 4);
        {
            PeerWriter wa(a.b, da), wb(b.b, db);
            REQUIRE(run_until(loop, [&] {
                return buffered_data.size() >= da.size() && ev.data.size() >= db.size();
            }));
        }
        CHECK(buffered_data == da);
        CHECK(ev.data == db);
        ca.transport->close();
        cb.transport->close();
        REQUIRE(run_until(loop, [&] { return buffered_lost == 1 && ev.lost == 1; }));
        CHECK(log.count == 0);
    }
    TEST_CASE("readers aborted while paused with received data held leave the ring usable") {
        LoopOptions o;
        o.stream_buffer_count =
            4;  // the ring is small: a leaked buffer would starve the next reader
        o.stream_buffer_size = 16 * 1024;
        o.buffer_count = 4;
        o.buffer_size = 16 * 1024;
        Events first, second;
        EventLoop loop(o);
        ExceptionLog log(loop);
        for (int round = 0; round < 8; ++round) {
            SocketPair sp;
            auto conn = run(loop, loop.connect_accepted_socket(
                                      [&] {
                                          auto p = std::make_unique<RecordingProtocol>(first);
                                          p->on_data = [&](std::string_view) {
                                              first.transport->pause_reading();
                                          };
                                          return p;
                                      },
                                      sp.take_a()));
            const std::string data = lcg_bytes(200 * 1024, 20 + round);
            {
                PeerWriter w(sp.b, data);
                REQUIRE(run_until(loop, [&] { return !first.data.empty(); }));
                bool waited = false;
                loop.call_later(0.02, [&] { waited = true; });
                REQUIRE(run_until(loop, [&] { return waited; }));
                conn.transport->abort();
                ::shutdown(sp.b, SHUT_RDWR);
            }
            REQUIRE(run_until(loop, [&] { return first.lost == round + 1; }));
            first.made = 0;
            first.data.clear();
        }
        receive_burst(loop, second, lcg_bytes(1024 * 1024, 99));
        CHECK(log.count == 0);
    }
}
