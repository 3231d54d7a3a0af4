// The event loop: ordering of call_soon and timers, stop, run_until_complete, thread wake-ups,
// signals, the exception handler, getaddrinfo.
#include <aioring/aioring.hpp>
#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <thread>

using namespace aioring;

TEST_SUITE("event loop") {
TEST_CASE("call_soon runs callbacks in FIFO order") {
    EventLoop loop;
    std::vector<int> order;
    for (int i = 0; i < 5; ++i) loop.call_soon([&order, i] { order.push_back(i); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}
}
