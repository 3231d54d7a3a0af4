// SPDX-License-Identifier: Apache-2.0
// The stream transports' write buffer (src/write_ring.hpp): bytes wrap around its end and come
// back out in order, growing keeps the buffer an in-flight send points into, an emptied large
// buffer is freed; and through a real socket, a writer that refills it at the low-water mark
// while a slow peer reads gets every byte in order.
#include "support.hpp"

#include <memory>
#include <string>

#include "src/write_ring.hpp"

using namespace testing;
using aioring::detail::WriteRing;

namespace {

// What front() gives, as one string.
std::string front_bytes(const WriteRing& r, std::size_t limit = SIZE_MAX) {
    iovec v[2];
    std::string out;
    for (std::size_t i = 0, n = r.front(v, limit); i < n; ++i)
        out.append(static_cast<const char*>(v[i].iov_base), v[i].iov_len);
    return out;
}

// Writes `total` bytes of a pattern in `piece`-byte writes whenever writing is not paused.
struct Refiller : Protocol {
    Events& e;
    std::string data;
    std::size_t piece;
    std::size_t off = 0;
    Transport* t = nullptr;
    bool paused = false;
    std::size_t pauses = 0;
    Refiller(Events& ev, std::size_t total, std::size_t p)
        : e(ev), data(lcg_bytes(total, 99)), piece(p) {}
    void connection_made(Transport& tr) override {
        t = &tr;
        t->set_write_buffer_limits(192 * 1024, 32 * 1024);
        fill();
    }
    void fill() {
        while (!paused && off < data.size()) {
            const std::size_t n = std::min(piece, data.size() - off);
            t->write(std::string_view(data).substr(off, n));
            off += n;
        }
    }
    void pause_writing() override {
        paused = true;
        ++pauses;
    }
    void resume_writing() override {
        paused = false;
        fill();
    }
    void connection_lost(std::error_code) override { ++e.lost; }
};

}  // namespace

TEST_SUITE("write_ring") {
    TEST_CASE("bytes that wrap around the end come back in order, in two spans, in place") {
        WriteRing r;
        const std::string a = lcg_bytes(12 * 1024, 1), b = lcg_bytes(8 * 1024, 2);
        r.append(a, false);
        CHECK(r.capacity() == WriteRing::min_capacity);
        r.consume(10 * 1024);
        r.append(b, false);  // 4 KiB to the end, 4 KiB from the start
        CHECK(r.capacity() == WriteRing::min_capacity);
        iovec v[2];
        REQUIRE(r.front(v, SIZE_MAX) == 2);
        CHECK(v[0].iov_len == 6 * 1024);
        CHECK(v[1].iov_len == 4 * 1024);
        CHECK(front_bytes(r) == a.substr(10 * 1024) + b);
        CHECK(front_bytes(r, 5000) == (a.substr(10 * 1024) + b).substr(0, 5000));  // write barrier
        r.consume(7 * 1024);
        CHECK(front_bytes(r) == b.substr(5 * 1024));
        r.consume(r.size());
        CHECK(r.empty());
        r.append(a, false);  // emptied: starts again at the beginning, one span
        CHECK(r.front(v, SIZE_MAX) == 1);
        CHECK(front_bytes(r) == a);
    }

    TEST_CASE("growing keeps the queued bytes in order and the buffer an in-flight send uses") {
        WriteRing r;
        const std::string a = lcg_bytes(10 * 1024, 3), b = lcg_bytes(9 * 1024, 4);
        const std::string c = lcg_bytes(40 * 1024, 5), d = lcg_bytes(70 * 1024, 6);
        r.append(a, false);
        r.consume(4 * 1024);
        r.append(b, false);  // wraps
        iovec sent[2];
        REQUIRE(r.front(sent, SIZE_MAX) == 2);  // the "send" in flight points here
        const std::string in_flight =
            std::string(static_cast<const char*>(sent[0].iov_base), sent[0].iov_len) +
            std::string(static_cast<const char*>(sent[1].iov_base), sent[1].iov_len);
        r.append(c, true);  // grows while it flies
        CHECK(r.capacity() == 64 * 1024);
        r.append(d, true);  // and again: 125 KiB queued
        CHECK(r.capacity() == 128 * 1024);
        // The bytes the send was given are still there (ASan would see a freed buffer).
        const std::string still =
            std::string(static_cast<const char*>(sent[0].iov_base), sent[0].iov_len) +
            std::string(static_cast<const char*>(sent[1].iov_base), sent[1].iov_len);
        CHECK(still == in_flight);
        CHECK(front_bytes(r) == a.substr(4 * 1024) + b + c + d);
        r.consume(5000);
        r.settle();  // the send completed
        CHECK(front_bytes(r) == (a.substr(4 * 1024) + b + c + d).substr(5000));
    }

    TEST_CASE("an emptied buffer over keep_capacity is freed; a smaller one is kept") {
        WriteRing r;
        r.append(lcg_bytes(WriteRing::keep_capacity, 7), false);
        r.consume(r.size());
        r.settle();
        CHECK(r.capacity() == WriteRing::keep_capacity);
        r.append(lcg_bytes(WriteRing::keep_capacity + 1, 8), false);
        CHECK(r.capacity() == 2 * WriteRing::keep_capacity);
        r.consume(100);
        r.settle();  // not empty: kept
        CHECK(r.capacity() == 2 * WriteRing::keep_capacity);
        r.consume(r.size());
        r.settle();
        CHECK(r.capacity() == 0);
        r.append("x", false);
        r.clear();
        CHECK(r.empty());
        CHECK(r.capacity() == WriteRing::min_capacity);
    }

    TEST_CASE("a writer refilling at the low-water mark gets every byte to a slow peer, in order") {
        Events e;
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        // 7,919-byte writes: the write buffer wraps at a different place each time round.
        constexpr std::size_t total = 8 * 1024 * 1024;
        Refiller* w = nullptr;
        auto conn = run(loop, loop.connect_accepted_socket(
                                  [&] {
                                      auto p = std::make_unique<Refiller>(e, total, 7919);
                                      w = p.get();
                                      return p;
                                  },
                                  sp.take_a()));
        REQUIRE(w != nullptr);
        const std::string got = peer_read(loop, sp.b, total);
        CHECK(w->off == total);
        CHECK(w->pauses > 1);
        CHECK(got.size() == total);
        CHECK((got == w->data));  // not printed whole if it fails
        REQUIRE(run_until(loop, [&] { return conn.transport->get_write_buffer_size() == 0; }));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return e.lost == 1; }));
        CHECK(log.count == 0);
    }
}
