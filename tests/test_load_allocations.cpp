// SPDX-License-Identifier: Apache-2.0
// aioring-load's client path under the allocation counter: once its connection is sending,
// requests and their echoes allocate nothing, on any of its threads.
#include "alloc_counter.hpp"
#include "support.hpp"

#include "engine.hpp"
#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace testing;

namespace {

// A blocking echo on a thread of its own, with a buffer on its stack: it allocates nothing, so
// whatever the counter sees while it runs is the load tool's.
struct BlockingEcho {
    TcpListener listener;
    std::atomic<std::uint64_t> echoed{0};
    std::thread thread;
    BlockingEcho() {
        thread = std::thread([this] {
            const int fd = listener.accept();
            if (fd < 0) return;
            char buf[16384];
            for (;;) {
                const ssize_t n = ::read(fd, buf, sizeof buf);
                if (n <= 0 || ::write(fd, buf, static_cast<std::size_t>(n)) != n) break;
                echoed.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
            }
            ::close(fd);
        });
    }
    ~BlockingEcho() {
        if (thread.joinable()) thread.join();
    }
};

// Waits for `pred`, polling: the counted window must see nothing of this thread's but atomics.
template <class Pred>
bool wait_for_polling(Pred pred, double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

}  // namespace

TEST_SUITE("load tool allocations") {
    // The worker's periodic check (Worker::tick, every 10 ms in closed loop, every 0.2 ms with
    // --rate) re-arms itself with EventLoop::call_later: the loop's timer handles are recycled,
    // so that allocates nothing either.
    TEST_CASE("aioring-load's echo requests allocate nothing once its connection is sending") {
        BlockingEcho echo;
        aioring::load::Options o;
        o.port = echo.listener.port;
        o.connections = 1;
        o.size = 64;
        o.warmup = 0;
        o.duration = 60;  // ended by the interrupt below
        o.no_progress = true;
        std::atomic<bool> interrupt{false};
        aioring::load::Outcome out;
        std::thread load([&] { out = aioring::load::run_load(o, nullptr, &interrupt); });
        // Warmed up: 1,000 round trips; then 5,000 counted.
        const bool warmed = wait_for_polling([&] { return echo.echoed.load() >= 64 * 1000; }, 30);
        const std::uint64_t start = echo.echoed.load();
        allocations = 0;
        count_all_threads = true;
        const bool counted =
            warmed && wait_for_polling([&] { return echo.echoed.load() >= start + 64 * 5000; }, 30);
        count_all_threads = false;
        const long n = allocations.load();
        interrupt = true;
        load.join();
        REQUIRE(warmed);
        REQUIRE(counted);
        CHECK(out.cause == "");
        CHECK(out.result.stats.errors() == 0);
        MESSAGE("allocations in " << (echo.echoed.load() - start) / 64
                                  << " round trips or more: " << n);
        CHECK(n == 0);
    }
}
