// SPDX-License-Identifier: Apache-2.0
// Heap allocations in the steady state, counted (alloc_counter.hpp), never timed: a 64 KiB
// stream echo through Protocol, BufferedProtocol, streams and TLS servers, a 64-byte ping-pong
// through the streams and BufferedProtocol servers, and the heap bytes an idle connection holds
// at 5,000 connections (Protocol and streams servers).
#include "alloc_counter.hpp"
#include "support.hpp"
#include "tls_certs.hpp"

#include "examples/common/echo_streams.hpp"

#include <aioring/streams.hpp>

#include <malloc.h>
#include <openssl/crypto.h>
#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
#define AIORING_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AIORING_TEST_ASAN 1
#endif
#endif
#ifdef AIORING_TEST_ASAN
#include <sanitizer/allocator_interface.h>
#endif

#include <array>
#include <string>
#include <vector>

using namespace testing;

namespace {

// OpenSSL allocates with malloc, not operator new: its allocations are counted too, through
// its memory hooks, installed before it allocates anything (a static initializer of this
// executable; ssl_hooks_installed says whether OpenSSL took them). Counted apart from operator
// new's, in ssl_allocations.
std::atomic<long> ssl_allocations{0};
void* counted_ssl_malloc(std::size_t n, const char*, int) {
    if (count_allocations || count_all_threads.load(std::memory_order_relaxed))
        ssl_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n);
}
void* counted_ssl_realloc(void* p, std::size_t n, const char*, int) {
    if (count_allocations || count_all_threads.load(std::memory_order_relaxed))
        ssl_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::realloc(p, n);
}
void counted_ssl_free(void* p, const char*, int) { std::free(p); }
const bool ssl_hooks_installed =
    CRYPTO_set_mem_functions(counted_ssl_malloc, counted_ssl_realloc, counted_ssl_free) == 1;

// The client: keeps `window` chunks of `size` bytes in flight against an echo server on the
// same loop, and counts allocations on the loop thread (both sides) between `warmup` and
// `warmup + measured` chunks echoed.
struct Streamer : Protocol {
    EventLoop* loop = nullptr;
    Transport* t = nullptr;
    std::string chunk;
    std::size_t window = 1;
    std::size_t warmup = 0, measured = 0, echoed = 0;  // chunks
    std::size_t got = 0;                               // bytes of the current chunk
    Streamer(EventLoop& l, std::size_t size, std::size_t win, std::size_t warm, std::size_t meas)
        : loop(&l), chunk(size, 'x'), window(win), warmup(warm), measured(meas) {
        for (std::size_t i = 0; i < size; ++i)
            chunk[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    }
    void connection_made(Transport& tr) override {
        t = &tr;
        for (std::size_t i = 0; i < window; ++i) t->write(chunk);
    }
    void data_received(std::string_view d) override {
        if (echoed == warmup + measured) return;  // done: the loop stops after this iteration
        got += d.size();
        while (got >= chunk.size()) {
            got -= chunk.size();
            ++echoed;
            if (echoed == warmup) count_allocations = true;
            if (echoed == warmup + measured) {
                count_allocations = false;
                loop->stop();
                return;
            }
            t->write(chunk);
        }
    }
};

struct BufferedEcho : BufferedProtocol {
    Transport* t = nullptr;
    std::array<std::byte, 64 * 1024> buf{};
    void connection_made(Transport& tr) override { t = &tr; }
    std::span<std::byte> get_buffer(std::size_t) override { return buf; }
    void buffer_updated(std::size_t n) override {
        t->write(std::string_view(reinterpret_cast<const char*>(buf.data()), n));
    }
};

// What the echo server of each kind needs: a started server, its port.
struct Kind {
    std::shared_ptr<Server> server;
    bool tls = false;
};

struct ProtocolEcho {
    static constexpr const char* name = "Protocol";
    static Kind start(EventLoop& loop) {
        return {run(loop, loop.create_server([] { return std::make_unique<EchoProtocol>(); },
                                             "127.0.0.1", 0)),
                false};
    }
};
struct BufferedProtocolEcho {
    static constexpr const char* name = "BufferedProtocol";
    static Kind start(EventLoop& loop) {
        return {run(loop, loop.create_server([] { return std::make_unique<BufferedEcho>(); },
                                             "127.0.0.1", 0)),
                false};
    }
};
// The echo of `echo_server --api streams`.
Task<void> stream_echo(StreamReader reader, StreamWriter writer) {
    co_await echo_streams_client(std::move(reader), std::move(writer));
}
struct StreamsEcho {
    static constexpr const char* name = "streams";
    static Kind start(EventLoop& loop) {
        return {run(loop, start_server(stream_echo, "127.0.0.1", 0)), false};
    }
};
struct TlsEcho {
    static constexpr const char* name = "TLS Protocol";
    static Kind start(EventLoop& loop) {
        ServerOptions so;
        so.ssl = server_ctx();
        return {run(loop, loop.create_server([] { return std::make_unique<EchoProtocol>(); },
                                             "127.0.0.1", 0, so)),
                true};
    }
};

// Streams `size`-byte chunks through an echo server of kind K; returns the allocations counted.
template <class K>
long count_echo(std::size_t size, std::size_t window, std::size_t warmup, std::size_t measured) {
    EventLoop loop;
    ExceptionLog log(loop);
    Kind k = K::start(loop);
    Streamer* s = nullptr;
    ConnectOptions o;
    if (k.tls) {
        o.ssl = client_ctx();
        o.server_hostname = "localhost";
    }
    auto conn =
        run(loop, loop.create_connection(
                      [&] {
                          auto p = std::make_unique<Streamer>(loop, size, window, warmup, measured);
                          s = p.get();
                          return p;
                      },
                      "127.0.0.1", k.server->addresses().at(0).port(), o));
    REQUIRE(s != nullptr);
    allocations = 0;
    ssl_allocations = 0;
    auto deadline = loop.call_later(60, [&] { loop.stop(); });  // only fails the test
    loop.run_forever();
    deadline.cancel();
    count_allocations = false;
    CHECK(s->echoed == warmup + measured);
    CHECK(log.count == 0);
    const long n = allocations.load();
    conn.transport->close();
    k.server->close();
    run_iterations(loop, 8);
    return n;
}

// The TLS echo, run once for the two test cases that check it: operator new's allocations
// (aioring's) and OpenSSL's, while 16 MiB were echoed.
struct TlsCounts {
    long ours = 0;
    long openssl = 0;
};
constexpr long tls_records = 2 * 1024;  // 16 MiB / 16 KiB, by each side
// The count starts and stops with the client's echoes: the server may write (and the client
// read) up to the 4 chunks in flight, 16 records, more or fewer than that in the window.
constexpr long tls_records_slack = 16;
const TlsCounts& tls_echo_counts() {
    static const TlsCounts counts = [] {
        TlsCounts c;
        c.ours = count_echo<TlsEcho>(64 * 1024, 4, 64, 256);
        c.openssl = ssl_allocations.load();
        return c;
    }();
    return counts;
}

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

// Bytes the process has allocated and not freed (ASan's allocator keeps no glibc statistics).
std::size_t heap_in_use() {
#ifdef AIORING_TEST_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
#endif
}

// Heap bytes per idle connection: `n` clients connect (plain blocking sockets, no heap) and
// stay silent; what the server's process heap grew by, over n. One connection first, so that
// what a loop sets up once (the provided-buffer ring, the registry's first blocks) is not
// counted.
template <class K>
double heap_per_idle_connection(std::size_t n, const std::function<std::size_t()>& accepted) {
    EventLoop loop;
    ExceptionLog log(loop);
    Kind k = K::start(loop);
    const std::uint16_t port = k.server->addresses().at(0).port();
    std::vector<int> fds;
    fds.reserve(n + 1);
    fds.push_back(tcp_connect(port));
    REQUIRE(fds.back() >= 0);
    REQUIRE(run_until(loop, [&] { return accepted() == 1; }));
    run_iterations(loop, 4);
    const std::size_t before = heap_in_use();
    while (fds.size() < n + 1) {
        // In steps the accept backlog holds, accepted before the next step connects.
        const std::size_t step = std::min<std::size_t>(50, n + 1 - fds.size());
        for (std::size_t i = 0; i < step; ++i) {
            fds.push_back(tcp_connect(port));
            REQUIRE(fds.back() >= 0);
        }
        REQUIRE(run_until(loop, [&] { return accepted() == fds.size(); }));
    }
    run_iterations(loop, 4);  // every receive armed, every handler waiting in its first read
    const std::size_t after = heap_in_use();
    CHECK(log.count == 0);
    for (int fd : fds) ::close(fd);
    k.server->close();
    REQUIRE(run_until(loop, [&] { return accepted() == 0; }));
    return (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(n);
}

std::size_t live_protocols = 0;
struct CountedEcho : EchoProtocol {
    CountedEcho() { ++live_protocols; }
    ~CountedEcho() override { --live_protocols; }
};
struct CountedProtocolEcho {
    static Kind start(EventLoop& loop) {
        return {run(loop, loop.create_server([] { return std::make_unique<CountedEcho>(); },
                                             "127.0.0.1", 0)),
                false};
    }
};
std::size_t live_handlers = 0;
Task<void> counted_stream_echo(StreamReader reader, StreamWriter writer) {
    ++live_handlers;
    struct Leave {
        ~Leave() { --live_handlers; }
    } leave;
    co_await stream_echo(std::move(reader), std::move(writer));
}
struct CountedStreamsEcho {
    static Kind start(EventLoop& loop) {
        return {run(loop, start_server(counted_stream_echo, "127.0.0.1", 0)), false};
    }
};

constexpr std::size_t idle_connections = 5000;

}  // namespace

TEST_SUITE("allocations") {
    // Four chunks in flight: over the 64 KiB high-water mark, so writing pauses and resumes and
    // (for streams) drain() waits, every few chunks. 4 MiB warm-up, 16 MiB counted.
    TEST_CASE_TEMPLATE("a 64 KiB stream echo allocates nothing per chunk once warmed up", K,
                       ProtocolEcho, BufferedProtocolEcho, StreamsEcho) {
        const long n = count_echo<K>(64 * 1024, 4, 64, 256);
        MESSAGE(std::string(K::name) << ": allocations while 16 MiB were echoed: " << n);
        CHECK(n == 0);
    }

    // TLS 1.3, 16 MiB each way in 16 KiB records: the client and the server each write 1,024
    // records and read 1,024. aioring's part (operator new) allocates nothing. OpenSSL's own
    // (malloc, through its memory hooks) is bounded here and asserted 0 below.
    TEST_CASE("a 64 KiB TLS stream echo allocates nothing per chunk once warmed up") {
        REQUIRE(ssl_hooks_installed);
        const TlsCounts& c = tls_echo_counts();
        MESSAGE(std::string(TlsEcho::name)
                << ": allocations while 16 MiB were echoed: " << c.ours << " (aioring), "
                << c.openssl << " (OpenSSL, " << tls_records << " records written and read)");
        CHECK(c.ours == 0);
        // OpenSSL 3.0 mallocs a 40-byte WPACKET sub-packet 3 times per record written (in
        // SSL_write_ex: the record's packet and its length prefix, tls13_enc's additional data)
        // and once per record read (tls13_enc, in SSL_read_ex): 4 per record, about 8,192 here.
        // More means a record path of ours that makes OpenSSL allocate (smaller records,
        // released buffers).
        CHECK(c.openssl <= 4 * (tls_records + tls_records_slack));
    }

    // Allowed to fail (may_fail: it runs and reports, but does not fail the suite): OpenSSL 3.0
    // itself allocates per record (see above), with no mode or option that avoids it
    // (SSL_MODE_RELEASE_BUFFERS is off, so its record buffers are kept). It passes with an
    // OpenSSL whose record layer does not allocate.
    TEST_CASE("OpenSSL allocates nothing per record of a 64 KiB TLS stream echo" *
              doctest::may_fail()) {
        REQUIRE(ssl_hooks_installed);
        const TlsCounts& c = tls_echo_counts();
        MESSAGE("OpenSSL's allocations while 16 MiB were echoed over TLS: " << c.openssl);
        CHECK(c.openssl == 0);
    }

    TEST_CASE_TEMPLATE("a 64-byte ping-pong allocates nothing per message once warmed up", K,
                       BufferedProtocolEcho, StreamsEcho) {
        const long n = count_echo<K>(64, 1, 200, 2000);
        MESSAGE(std::string(K::name) << ": allocations in 2000 round trips: " << n);
        CHECK(n == 0);
    }

    // asyncio code calls call_later per request (a timeout) and call_soon per message: their
    // handles come from a recycled pool once the loop has run a while. A handle kept past its
    // callback, or cancelled, stays valid, and its block is reused once the last copy is gone.
    TEST_CASE("call_soon, call_later and call_at allocate nothing once warmed up") {
        EventLoop loop;
        std::size_t fired = 0;
        std::vector<TimerHandle> kept;
        std::vector<Handle> soon;
        kept.reserve(300);
        soon.reserve(100);
        long counted = 0;
        for (int round = 0; round < 6; ++round) {
            kept.clear();
            soon.clear();
            fired = 0;
            {
                const long before = allocations.load();
                CountAllocations c;
                for (int i = 0; i < 100; ++i) {
                    kept.push_back(loop.call_later(0, [&] { ++fired; }));
                    kept.push_back(loop.call_at(loop.time(), [&] { ++fired; }));
                    kept.push_back(loop.call_later(3600, [&] { ++fired; }));
                    kept.back().cancel();
                    soon.push_back(loop.call_soon([&] { ++fired; }));
                    loop.call_later(0, [&] { ++fired; });  // handle dropped at once
                }
                // Two rounds of warm-up: the pool, the ready queue, and the heap with the
                // previous round's cancelled timers still in it.
                if (round >= 2) counted += allocations.load() - before;
            }
            REQUIRE(run_until(loop, [&] { return fired == 400; }));
            for (std::size_t i = 0; i < kept.size(); i += 3) {
                CHECK(!kept[i].cancelled());
                CHECK(kept[i].when() > 0);
                CHECK(kept[i + 2].cancelled());
            }
        }
        MESSAGE("allocations in 2,000 handles scheduled after warm-up: " << counted);
        CHECK(counted == 0);
    }

    TEST_CASE(
        "an idle connection holds at most 2 KiB of heap (Protocol) and 4 KiB (streams) at 5,000 "
        "connections") {
        raise_fd_limit();
        rlimit rl{};
        REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
        // Both ends of every connection are in this process.
        REQUIRE_MESSAGE(rl.rlim_cur >= 2 * idle_connections + 64,
                        "RLIMIT_NOFILE is too low for this test");
        const double protocol = heap_per_idle_connection<CountedProtocolEcho>(
            idle_connections, [] { return live_protocols; });
        const double streams = heap_per_idle_connection<CountedStreamsEcho>(
            idle_connections, [] { return live_handlers; });
        MESSAGE("heap bytes per idle connection: Protocol " << protocol << ", streams " << streams);
        if (const char* v = std::getenv("AIORING_NO_MULTISHOT"); v && *v == '1') {
            // The single-shot fallback arms each receive with a buffer of the connection's own (64
            // KiB): the bounds are for the provided-buffer ring that the multishot path shares.
            MESSAGE("single-shot receives: the bounds are not checked");
            return;
        }
        CHECK(protocol <= 2048);
        CHECK(streams <= 4096);
    }
}
