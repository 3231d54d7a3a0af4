// SPDX-License-Identifier: Apache-2.0
// An echo's write() sends straight from the received ring buffer (no copy), holding the buffer
// until the send has taken every byte: short sends, abort and many stalled connections over
// the ring-wide hold cap neither leak nor double-release a buffer. Runs with incremental
// buffers and without (the .noinc variant), and without multishot receive (.basic: no ring,
// every write copies).
#include "support.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "src/loop_core.hpp"

using namespace testing;

namespace {

bool ring_receives() {
    const char* v = std::getenv("AIORING_NO_MULTISHOT");
    return v == nullptr || *v != '1';
}

std::uint64_t held_writes(Transport& t) {
    return std::any_cast<std::uint64_t>(t.get_extra_info("held_writes", std::uint64_t{0}));
}
bool holding(Transport& t) {
    return std::any_cast<bool>(t.get_extra_info("holding_send_buffer", false));
}
std::size_t held_count(Transport& t) {
    return std::any_cast<std::size_t>(t.get_extra_info("held_send_count", std::size_t{0}));
}
unsigned kept(EventLoop& loop) { return loop.core().stream_ring().kept_buffers(); }

// Echoes every data_received view back; records the write buffer size right after each write.
struct Echo : Protocol {
    Transport* t = nullptr;
    std::uint64_t writes = 0;
    bool buffered_counts_held = true;
    bool abort_after_write = false;
    int lost = 0;
    void connection_made(Transport& tr) override {
        t = &tr;
        int small = 4096;  // the kernel doubles it; a stalled peer stalls the send quickly
        const int fd = std::any_cast<int>(tr.get_extra_info("socket", -1));
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    }
    void data_received(std::string_view d) override {
        const std::size_t before = t->get_write_buffer_size();
        t->write(d);
        ++writes;
        if (t->get_write_buffer_size() != before + d.size()) buffered_counts_held = false;
        if (abort_after_write) t->abort();
    }
    void connection_lost(std::error_code) override { ++lost; }
};

LoopOptions small_ring() {
    LoopOptions o;
    o.stream_buffer_count = 4;  // small: a leaked buffer would show, and the hold cap is 2
    o.stream_buffer_size = 16 * 1024;
    o.buffer_count = 4;
    o.buffer_size = 16 * 1024;
    return o;
}

}  // namespace

TEST_SUITE("echo write") {
    TEST_CASE("a ping-pong echo sends every message from the ring buffer it arrived in") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        Echo* echo = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Echo>();
                                      echo = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        REQUIRE(run_until(loop, [&] { return echo->t != nullptr; }));
        const int rounds = 200;
        for (int i = 0; i < rounds; ++i) {
            const std::string msg = lcg_bytes(64, static_cast<std::uint32_t>(i));
            REQUIRE(::send(sp.b, msg.data(), msg.size(), MSG_NOSIGNAL) == 64);
            const std::uint64_t w = echo->writes;
            REQUIRE(run_until(loop, [&] {
                return echo->writes > w && conn.transport->get_write_buffer_size() == 0;
            }));
            CHECK(read_n(sp.b, 64) == msg);
        }
        CHECK(echo->buffered_counts_held);
        if (ring_receives()) {
            CHECK(held_writes(*conn.transport) == echo->writes);  // not one byte copied
        } else {
            CHECK(held_writes(*conn.transport) == 0);  // own buffer: reused at once, so copied
        }
        CHECK(kept(loop) == 0);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return echo->lost == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("short sends from a held buffer send the rest, in order, then give the buffer back") {
        EventLoop loop(small_ring());
        ExceptionLog log(loop);
        SocketPair sp;
        Echo* echo = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Echo>();
                                      echo = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        REQUIRE(run_until(loop, [&] { return echo->t != nullptr; }));
        const std::string data = lcg_bytes(1024 * 1024, 7);
        std::string got;
        std::atomic<std::size_t> received{0};  // got.size(), for the loop thread
        std::size_t most_held = 0;
        {
            // The peer reads slowly, in small pieces: the echo's sends stall and come back short.
            std::thread reader([&] {
                char buf[1000];
                while (got.size() < data.size()) {
                    ssize_t n = ::recv(sp.b, buf, sizeof buf, 0);
                    if (n <= 0) break;
                    got.append(buf, static_cast<std::size_t>(n));
                    received = got.size();
                }
            });
            std::thread writer([&] {
                std::size_t off = 0;
                while (off < data.size()) {
                    ssize_t n =
                        ::send(sp.b, data.data() + off,
                               std::min<std::size_t>(data.size() - off, 40000), MSG_NOSIGNAL);
                    if (n <= 0) break;
                    off += static_cast<std::size_t>(n);
                }
            });
            REQUIRE(run_until_polling(loop, [&] {
                most_held = std::max(most_held, held_count(*conn.transport));
                return received >= data.size();
            }));
            writer.join();
            reader.join();
        }
        CHECK(got == data);
        CHECK(echo->buffered_counts_held);
        if (ring_receives()) CHECK(held_writes(*conn.transport) > 0);
        CHECK_FALSE(holding(*conn.transport));
        CHECK(most_held <= 4);
        CHECK(kept(loop) == 0);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return echo->lost == 1; }));
        CHECK(kept(loop) == 0);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "abort with a held send in flight, or right after the write, releases the buffer once") {
        EventLoop loop(small_ring());
        ExceptionLog log(loop);
        for (int round = 0; round < 6; ++round) {
            SocketPair sp;
            Echo* echo = nullptr;
            const bool at_once = round % 2 == 1;
            auto conn = run(loop, loop.connect_accepted_socket(
                                      [&] {
                                          auto p = std::make_unique<Echo>();
                                          p->abort_after_write = at_once;
                                          echo = p.get();
                                          return p;
                                      },
                                      sp.take_a()));
            REQUIRE(run_until(loop, [&] { return echo->t != nullptr; }));
            // The peer never reads: the echo's send stalls holding its ring buffer.
            const std::string data = lcg_bytes(200 * 1024, 30 + static_cast<std::uint32_t>(round));
            set_nonblocking(sp.b);
            std::size_t off = 0;
            REQUIRE(run_until_polling(loop, [&] {
                if (off < data.size()) {
                    ssize_t n = ::send(sp.b, data.data() + off, data.size() - off, MSG_NOSIGNAL);
                    if (n > 0) off += static_cast<std::size_t>(n);
                }
                return echo->lost == 1 ||
                       (echo->writes > 0 && conn.transport->get_write_buffer_size() > 0 &&
                        (holding(*conn.transport) || !ring_receives()));
            }));
            if (!at_once) {
                if (ring_receives()) CHECK(holding(*conn.transport));
                conn.transport->abort();
            }
            CHECK_FALSE(holding(*conn.transport));
            REQUIRE(run_until(loop, [&] { return echo->lost == 1; }));
            CHECK(conn.transport->get_write_buffer_size() == 0);
            ::shutdown(sp.b, SHUT_RDWR);
            run_iterations(loop, 3);
            CHECK(kept(loop) == 0);
        }
        CHECK(log.count == 0);
    }

    TEST_CASE("many stalled echoes hold at most half the ring; the rest copy; nothing leaks") {
        EventLoop loop(small_ring());
        ExceptionLog log(loop);
        const unsigned cap = loop.core().stream_ring().count() / 2;
        constexpr int n = 8;
        std::vector<std::unique_ptr<SocketPair>> pairs;
        std::vector<Echo*> echoes;
        std::vector<std::shared_ptr<Transport>> transports;
        std::vector<std::string> data;
        for (int i = 0; i < n; ++i) {
            pairs.push_back(std::make_unique<SocketPair>());
            Echo* e = nullptr;
            auto conn = run(loop, loop.connect_accepted_socket(
                                      [&] {
                                          auto p = std::make_unique<Echo>();
                                          e = p.get();
                                          return p;
                                      },
                                      pairs.back()->take_a()));
            REQUIRE(run_until(loop, [&] { return e->t != nullptr; }));
            echoes.push_back(e);
            transports.push_back(conn.transport);
            data.push_back(lcg_bytes(60 * 1024, 100 + static_cast<std::uint32_t>(i)));
            set_nonblocking(pairs.back()->b);
        }
        // Every peer sends, none reads: each echo stalls, holding its buffer or, over the cap,
        // with a copy.
        std::vector<std::size_t> off(n, 0);
        unsigned most_kept = 0;
        REQUIRE(run_until_polling(loop, [&] {
            most_kept = std::max(most_kept, kept(loop));
            bool all = true;
            for (int i = 0; i < n; ++i) {
                if (off[i] < data[i].size()) {
                    ssize_t r = ::send(pairs[i]->b, data[i].data() + off[i],
                                       data[i].size() - off[i], MSG_NOSIGNAL);
                    if (r > 0) off[i] += static_cast<std::size_t>(r);
                }
                all = all && echoes[i]->writes > 0 && transports[i]->get_write_buffer_size() > 0;
            }
            return all;
        }));
        int holders = 0;
        for (int i = 0; i < n; ++i) {
            holders += holding(*transports[i]) ? 1 : 0;
            CHECK(held_count(*transports[i]) <= 4);  // the per-connection cap
        }
        CHECK(kept(loop) <= cap);
        CHECK(most_kept <= cap);
        if (ring_receives()) CHECK(holders > 0);
        // Now the peers read everything (and send the rest): every byte comes back, in order.
        std::vector<std::string> got(n);
        REQUIRE(run_until_polling(loop, [&] {
            most_kept = std::max(most_kept, kept(loop));
            bool done = true;
            for (int i = 0; i < n; ++i) {
                if (off[i] < data[i].size()) {
                    ssize_t r = ::send(pairs[i]->b, data[i].data() + off[i],
                                       data[i].size() - off[i], MSG_NOSIGNAL);
                    if (r > 0) off[i] += static_cast<std::size_t>(r);
                }
                char buf[65536];
                ssize_t r = ::recv(pairs[i]->b, buf, sizeof buf, 0);
                if (r > 0) got[i].append(buf, static_cast<std::size_t>(r));
                done = done && got[i].size() >= data[i].size();
            }
            return done;
        }));
        CHECK(most_kept <= cap);
        for (int i = 0; i < n; ++i) {
            CHECK(got[i] == data[i]);
            CHECK(echoes[i]->buffered_counts_held);
            CHECK_FALSE(holding(*transports[i]));
        }
        CHECK(kept(loop) == 0);
        for (auto& t : transports) t->close();
        REQUIRE(run_until(loop, [&] {
            for (Echo* e : echoes)
                if (e->lost != 1) return false;
            return true;
        }));
        CHECK(kept(loop) == 0);
        CHECK(log.count == 0);
    }
}
