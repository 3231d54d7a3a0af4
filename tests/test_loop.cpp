// SPDX-License-Identifier: Apache-2.0
// The event loop: ordering of call_soon and timers, stop, run_until_complete, thread wake-ups,
// signals, the exception handler, getaddrinfo, and misuse that must throw.
#include "support.hpp"

#include <signal.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>

using namespace testing;

TEST_SUITE("event loop") {
    TEST_CASE("call_soon runs callbacks in FIFO order") {
        EventLoop loop;
        std::vector<int> order;
        for (int i = 0; i < 5; ++i) loop.call_soon([&order, i] { order.push_back(i); });
        loop.call_soon([&] { loop.stop(); });
        loop.run_forever();
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    }

    TEST_CASE("callbacks scheduled while callbacks run wait for the next iteration") {
        EventLoop loop;
        std::vector<std::string> order;
        loop.call_soon([&] {
            order.push_back("a");
            loop.call_soon([&] { order.push_back("c"); });
        });
        loop.call_soon([&] {
            order.push_back("b");
            loop.stop();
        });
        loop.run_forever();
        // stop() let the iteration finish, and "c" was not part of it.
        CHECK(order == std::vector<std::string>{"a", "b"});
        loop.call_soon([&] { loop.stop(); });
        loop.run_forever();
        CHECK(order == std::vector<std::string>{"a", "b", "c"});
    }

    TEST_CASE("stop() lets the current iteration finish") {
        EventLoop loop;
        int ran = 0;
        loop.call_soon([&] { loop.stop(); });
        loop.call_soon([&] { ++ran; });
        loop.call_soon([&] { ++ran; });
        loop.run_forever();
        CHECK(ran == 2);
        CHECK(!loop.is_running());
    }

    TEST_CASE("stop() before run_forever runs one iteration") {
        EventLoop loop;
        int ran = 0;
        loop.call_soon([&] { ++ran; });
        loop.stop();
        loop.run_forever();
        CHECK(ran == 1);
    }

    TEST_CASE("timers fire in deadline order, equal deadlines in scheduling order") {
        EventLoop loop;
        std::vector<int> order;
        const double t0 = loop.time();
        loop.call_at(t0 + 0.03, [&] { order.push_back(3); });
        loop.call_at(t0 + 0.01, [&] { order.push_back(1); });
        loop.call_at(t0 + 0.02, [&] { order.push_back(20); });
        loop.call_at(t0 + 0.02, [&] { order.push_back(21); });
        loop.call_at(t0 + 0.02, [&] { order.push_back(22); });
        auto h = loop.call_later(0.001, [&] { order.push_back(0); });
        CHECK(h.when() >= t0);
        REQUIRE(run_until(loop, [&] { return order.size() == 6; }));
        CHECK(order == std::vector<int>{0, 1, 20, 21, 22, 3});
        CHECK(loop.time() >= t0 + 0.03);
    }

    TEST_CASE("a cancelled timer or callback never runs") {
        EventLoop loop;
        bool timer_ran = false, soon_ran = false, later_ran = false;
        auto t = loop.call_later(0.001, [&] { timer_ran = true; });
        auto s = loop.call_soon([&] { soon_ran = true; });
        loop.call_later(0.005, [&] { later_ran = true; });
        CHECK(!t.cancelled());
        t.cancel();
        s.cancel();
        CHECK(t.cancelled());
        CHECK(s.cancelled());
        REQUIRE(run_until(loop, [&] { return later_ran; }));
        CHECK(!timer_ran);
        CHECK(!soon_ran);
    }

    TEST_CASE("many cancelled timers do not pile up or fire") {
        EventLoop loop;
        int fired = 0;
        for (int i = 0; i < 10000; ++i) loop.call_later(3600, [&] { ++fired; }).cancel();
        bool done = false;
        loop.call_later(0.001, [&] { done = true; });
        REQUIRE(run_until(loop, [&] { return done; }));
        CHECK(fired == 0);
    }

    TEST_CASE("4 threads x 10000 call_soon_threadsafe lose nothing") {
        EventLoop loop;
        constexpr int threads = 4, per_thread = 10000;
        int count = 0;
        std::vector<int> last(threads, -1);
        bool in_order = true;
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t) {
            ts.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    loop.call_soon_threadsafe([&, t, i] {
                        if (last[t] + 1 != i) in_order = false;
                        last[t] = i;
                        ++count;
                    });
                }
            });
        }
        const bool all = run_until(loop, [&] { return count == threads * per_thread; });
        for (auto& t : ts) t.join();
        CHECK(all);
        CHECK(count == threads * per_thread);
        CHECK(in_order);  // FIFO per calling thread
    }

    TEST_CASE("call_soon_threadsafe wakes a loop blocked in the kernel") {
        EventLoop loop;
        bool woke = false;
        std::thread t;
        loop.call_soon([&] {
            const pid_t loop_tid = ::gettid();
            t = std::thread([&, loop_tid] {
                // Call only once the loop thread sleeps (in io_uring_enter: nothing else blocks
                // it), so that the callback cannot just be picked up by the loop's next iteration.
                const std::string stat = "/proc/self/task/" + std::to_string(loop_tid) + "/stat";
                for (int i = 0; i < 100000; ++i) {
                    std::ifstream f(stat);
                    std::string line;
                    std::getline(f, line);
                    const auto close = line.rfind(')');
                    if (close != std::string::npos && close + 2 < line.size() &&
                        line[close + 2] == 'S')
                        break;
                    std::this_thread::yield();
                }
                loop.call_soon_threadsafe([&] { woke = true; });
            });
        });
        // No timer is pending but run_until's deadline, so only the eventfd can wake the loop up.
        REQUIRE(run_until(
            loop, [&] { return woke; }, 5));
        t.join();
    }

    TEST_CASE("a signal handler runs on the loop") {
        EventLoop loop;
        int calls = 0;
        std::thread::id where;
        loop.add_signal_handler(SIGUSR1, [&] {
            ++calls;
            where = std::this_thread::get_id();
        });
        loop.call_soon([] { ::raise(SIGUSR1); });
        REQUIRE(run_until(loop, [&] { return calls == 1; }));
        CHECK(where == std::this_thread::get_id());
        // Replacing the handler keeps one registration.
        int second = 0;
        loop.add_signal_handler(SIGUSR1, [&] { ++second; });
        loop.call_soon([] { ::raise(SIGUSR1); });
        REQUIRE(run_until(loop, [&] { return second == 1; }));
        CHECK(calls == 1);
        CHECK(loop.remove_signal_handler(SIGUSR1));
        CHECK(!loop.remove_signal_handler(SIGUSR1));
        CHECK_THROWS_AS(loop.add_signal_handler(SIGKILL, [] {}), std::invalid_argument);
    }

    TEST_CASE("a signal delivered to another thread reaches the loop's handler") {
        EventLoop loop;
        int calls = 0;
        std::promise<void> go;
        // Created before the handler is added, so this thread does not block the signal.
        std::thread other([f = go.get_future()]() mutable {
            f.get();
            ::raise(SIGUSR2);  // delivered to this thread, which passes it on to the loop's
        });
        loop.add_signal_handler(SIGUSR2, [&] { ++calls; });
        go.set_value();
        const bool ran = run_until(loop, [&] { return calls == 1; });
        other.join();
        CHECK(ran);
        CHECK(loop.remove_signal_handler(SIGUSR2));
    }

    TEST_CASE("run_until_complete returns a future's result") {
        EventLoop loop;
        auto f = loop.create_future<int>();
        loop.call_later(0.001, [f] { f.set_result(42); });
        CHECK(loop.run_until_complete(f) == 42);
        CHECK(!loop.is_running());
    }

    TEST_CASE("run_until_complete runs a task to its result or its exception") {
        EventLoop loop;
        auto task = [](EventLoop& l) -> Task<std::string> {
            auto f = l.create_future<std::string>();
            l.call_soon([f] { f.set_result("done"); });
            co_return co_await f;
        };
        CHECK(loop.run_until_complete(task(loop)) == "done");
        auto failing = []() -> Task<int> {
            throw std::runtime_error("boom");
            co_return 0;
        };
        CHECK_THROWS_WITH_AS(loop.run_until_complete(failing()), "boom", std::runtime_error);
    }

    TEST_CASE("run_until_complete throws LoopError when the loop stops before the future is done") {
        EventLoop loop;
        auto f = loop.create_future<int>();
        loop.call_soon([&] { loop.stop(); });
        CHECK_THROWS_AS(loop.run_until_complete(f), LoopError);
        CHECK(!f.done());
    }

    TEST_CASE("a future that finishes after run_until_complete gave up does not stop a later run") {
        EventLoop loop;
        auto f = loop.create_future<int>();
        loop.call_soon([&] { loop.stop(); });
        CHECK_THROWS_AS(loop.run_until_complete(f), LoopError);
        f.set_result(1);
        int ticks = 0;
        std::function<void()> tick = [&] {
            if (++ticks < 5)
                loop.call_soon([&] { tick(); });
            else
                loop.stop();
        };
        loop.call_soon([&] { tick(); });
        loop.run_forever();
        CHECK(ticks == 5);
    }

    TEST_CASE("the exception handler receives a callback's exception and the loop goes on") {
        EventLoop loop;
        std::vector<std::string> seen;
        loop.set_exception_handler([&](EventLoop& l, const ExceptionContext& c) {
            CHECK(&l == &loop);
            REQUIRE(c.exception);
            try {
                std::rethrow_exception(c.exception);
            } catch (const std::exception& e) {
                seen.push_back(c.message + "|" + e.what());
            }
        });
        bool after = false;
        loop.call_soon([] { throw std::runtime_error("first"); });
        loop.call_later(0.001, [] { throw std::logic_error("second"); });
        loop.call_later(0.002, [&] { after = true; });
        REQUIRE(run_until(loop, [&] { return after; }));
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].find("|first") != std::string::npos);
        CHECK(seen[1].find("|second") != std::string::npos);
        // An empty handler restores the default (which prints and carries on).
        loop.set_exception_handler({});
        CHECK(!loop.get_exception_handler());
    }

    TEST_CASE("an exception handler that throws falls back to the default one") {
        EventLoop loop;
        loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {
            throw std::runtime_error("handler failed");
        });
        bool after = false;
        loop.call_soon([] { throw std::runtime_error("cb"); });
        loop.call_soon([&] { after = true; });
        REQUIRE(run_until(loop, [&] { return after; }));
    }

    TEST_CASE("getaddrinfo resolves localhost on a worker thread") {
        EventLoop loop;
        auto infos = run(loop, loop.getaddrinfo("localhost", "80", AF_UNSPEC, SOCK_STREAM));
        REQUIRE(!infos.empty());
        bool loopback = false;
        for (auto& ai : infos) {
            CHECK(ai.address.port() == 80);
            if (ai.address.host() == "127.0.0.1" || ai.address.host() == "::1") loopback = true;
        }
        CHECK(loopback);
    }

    TEST_CASE("getaddrinfo of a name that cannot resolve fails with a clear system_error") {
        EventLoop loop;
        auto f = loop.getaddrinfo("does-not-exist.invalid", "80", AF_UNSPEC, SOCK_STREAM);
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        try {
            f.result();
            FAIL("resolved a name under .invalid");
        } catch (const std::system_error& e) {
            const std::string what = e.what();
            CHECK(what.find("does-not-exist.invalid") != std::string::npos);
            CHECK(e.code());
            MESSAGE(what);
        }
    }

    TEST_CASE("getaddrinfo with AI_NUMERICHOST rejects a name") {
        EventLoop loop;
        auto f = loop.getaddrinfo("not.a.number", "80", AF_UNSPEC, SOCK_STREAM, 0, AI_NUMERICHOST);
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK_THROWS_AS(f.result(), std::system_error);
    }
}

TEST_SUITE("event loop misuse") {
    TEST_CASE("run_forever on a running loop throws LoopError") {
        EventLoop loop;
        bool threw = false;
        loop.call_soon([&] {
            try {
                loop.run_forever();
            } catch (const LoopError&) {
                threw = true;
            }
            CHECK(loop.is_running());
            loop.stop();
        });
        loop.run_forever();
        CHECK(threw);
    }

    TEST_CASE("running or scheduling on a closed loop throws LoopError") {
        EventLoop loop;
        CHECK(!loop.is_closed());
        loop.close();
        loop.close();  // idempotent
        CHECK(loop.is_closed());
        CHECK_THROWS_AS(loop.run_forever(), LoopError);
        CHECK_THROWS_AS(loop.call_soon([] {}), LoopError);
        CHECK_THROWS_AS(loop.call_later(1, [] {}), LoopError);
        CHECK_THROWS_AS(loop.call_soon_threadsafe([] {}), LoopError);
        CHECK_THROWS_AS(loop.getaddrinfo("localhost", "80"), LoopError);
    }

    TEST_CASE("closing a running loop throws LoopError") {
        EventLoop loop;
        bool threw = false;
        loop.call_soon([&] {
            try {
                loop.close();
            } catch (const LoopError&) {
                threw = true;
            }
            loop.stop();
        });
        loop.run_forever();
        CHECK(threw);
        CHECK(!loop.is_closed());
    }

    TEST_CASE("call_soon from another thread while the loop runs throws LoopError") {
        EventLoop loop;
        bool threw = false, ran = false;
        loop.call_soon([&] {
            std::thread t([&] {
                try {
                    loop.call_soon([&] { ran = true; });
                } catch (const LoopError& e) {
                    threw = std::strstr(e.what(), "call_soon_threadsafe") != nullptr;
                }
            });
            t.join();
            loop.call_soon([&] { loop.stop(); });
        });
        loop.run_forever();
        CHECK(threw);
        CHECK(!ran);
    }

    TEST_CASE("a second loop cannot run inside a running loop on the same thread") {
        EventLoop outer, inner;
        bool threw = false;
        outer.call_soon([&] {
            try {
                inner.run_forever();
            } catch (const LoopError&) {
                threw = true;
            }
            outer.stop();
        });
        outer.run_forever();
        CHECK(threw);
    }
}
