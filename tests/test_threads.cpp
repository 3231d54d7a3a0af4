// SPDX-License-Identifier: Apache-2.0
// Threads: to_thread/run_in_executor on the loop's bounded pool, and run_coroutine_threadsafe
// with its thread-safe future.
#include <aioring/threads.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace testing;

TEST_SUITE("threads") {
    TEST_CASE("to_thread runs the function on another thread and returns its result") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = []() -> Task<bool> {
            const auto me = std::this_thread::get_id();
            auto where = [] { return std::this_thread::get_id(); };
            std::thread::id there = co_await to_thread(where);
            auto fail = []() -> int { throw std::runtime_error("in the worker"); };
            std::string what;
            try {
                (void)co_await to_thread(fail);
            } catch (const std::runtime_error& e) {
                what = e.what();
            }
            CHECK(what == "in the worker");
            co_return there != me;
        };
        CHECK(run(loop, main()));
        CHECK(elog.count == 0);
    }

    TEST_CASE("the pool is bounded: jobs beyond it queue until a worker is free") {
        EventLoop loop;
        ExceptionLog elog(loop);
        set_executor_workers(loop, 2);
        CHECK(executor_workers(loop) == 2);
        std::mutex m;
        std::condition_variable cv;
        int running = 0, peak = 0;
        bool release = false;
        auto job = [&] {
            std::unique_lock lock(m);
            peak = std::max(peak, ++running);
            cv.notify_all();
            // Block until the test has seen two jobs running at once.
            cv.wait(lock, [&] { return release; });
            --running;
            return 1;
        };
        std::vector<Future<int>> fs;
        for (int i = 0; i < 5; ++i) fs.push_back(run_in_executor(loop, job));
        {
            std::unique_lock lock(m);
            REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return running == 2; }));
            // Two are running; the others are queued behind them, not started.
            CHECK(peak == 2);
            release = true;
        }
        cv.notify_all();
        int sum = 0;
        for (auto& f : fs) sum += run(loop, f);
        CHECK(sum == 5);
        CHECK(peak == 2);
        CHECK(elog.count == 0);
    }

    TEST_CASE("cancelling the awaiting task drops the result of a job still running") {
        EventLoop loop;
        ExceptionLog elog(loop);
        std::atomic<bool> started{false}, go{false};
        auto slow = [&] {
            started = true;
            while (!go) std::this_thread::yield();
            return 3;
        };
        auto main = [](decltype(slow)& f) -> Task<int> { co_return co_await to_thread(f); };
        auto t = loop.create_task(main(slow));
        // A worker thread's flag wakes nothing: polled.
        REQUIRE(run_until_polling(loop, [&] { return started.load(); }));
        t.cancel();
        CHECK_THROWS_AS(run(loop, t), CancelledError);
        go = true;
        loop.close();  // waits for the running job; its result finds the loop closed
        CHECK(elog.count == 0);
    }

    TEST_CASE("run_coroutine_threadsafe: another thread schedules a coroutine and blocks on it") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto coro = [](int a) -> Task<int> {
            co_await sleep(0.001);
            co_return a * 2;
        };
        auto failing = []() -> Task<void> {
            co_await sleep(0);
            throw std::runtime_error("coroutine failed");
        };
        int got = 0;
        std::string error;
        bool timed_out = false, cancelled = false;
        std::atomic<bool> finished{false};
        std::thread other([&] {
            got = run_coroutine_threadsafe(coro(21), loop).result();
            try {
                run_coroutine_threadsafe(failing(), loop).result(10.0);
            } catch (const std::runtime_error& e) {
                error = e.what();
            }
            auto forever = []() -> Task<void> { co_await sleep(3600); };
            auto f = run_coroutine_threadsafe(forever(), loop);
            try {
                f.result(0.01);
            } catch (const TimeoutError&) {
                timed_out = true;
            }
            CHECK(f.cancel());
            try {
                f.result(10.0);
            } catch (const CancelledError&) {
                cancelled = f.cancelled();
            }
            finished = true;
        });
        // Set by the other thread after its last call into the loop: polled.
        const bool done = run_until_polling(loop, [&] { return finished.load(); });
        other.join();
        REQUIRE(done);
        CHECK(got == 42);
        CHECK(error == "coroutine failed");
        CHECK(timed_out);
        CHECK(cancelled);
        CHECK(elog.count == 0);
    }

    TEST_CASE("a loop closed under a coroutine from another thread fails its future") {
        auto loop = std::make_unique<EventLoop>();
        auto forever = []() -> Task<void> { co_await sleep(3600); };
        auto f = run_coroutine_threadsafe(forever(), *loop);
        run_iterations(*loop, 3);
        loop->close();
        CHECK_THROWS_AS(f.result(10.0), LoopError);
        CHECK_THROWS_AS(run_coroutine_threadsafe(forever(), *loop), LoopError);
    }
}
