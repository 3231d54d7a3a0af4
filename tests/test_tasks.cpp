// SPDX-License-Identifier: Apache-2.0
// Tasks and their tools: create_task, cancel, sleep, wait_for, gather, aioring::run, and
// exceptions nobody retrieved reaching the loop's exception handler.
#include <aioring/coro.hpp>

#include <string>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

Task<int> add_later(double delay, int a, int b) {
    co_await sleep(delay);
    co_return a + b;
}

Task<void> record_after(double delay, std::vector<int>& order, int id) {
    co_await sleep(delay);
    order.push_back(id);
}

// Sleeps until cancelled; records what the task saw.
Task<void> sleeper(double delay, bool& cancelled, bool& finished) {
    try {
        co_await sleep(delay);
    } catch (const CancelledError&) {
        cancelled = true;
        throw;
    }
    finished = true;
}

Task<int> nested(double delay, bool& cancelled, bool& finished) {
    co_await sleeper(delay, cancelled, finished);
    co_return 1;
}

// Lets started tasks run until they suspend.
void settle(EventLoop& loop) { run_iterations(loop, 4); }

Task<void> fail_after(double delay, std::string message) {
    co_await sleep(delay);
    throw std::runtime_error(message);
}

}  // namespace

TEST_SUITE("tasks") {
    TEST_CASE("a task runs on the loop and returns its value") {
        EventLoop loop;
        ExceptionLog log(loop);
        CHECK(loop.run_until_complete(add_later(0.001, 2, 3)) == 5);
        auto f = loop.create_task(add_later(0, 4, 5));
        CHECK(run(loop, f) == 9);
        CHECK(log.count == 0);
    }

    TEST_CASE("sleeps end in the order of their deadlines; sleep(0) yields to other tasks") {
        EventLoop loop;
        ExceptionLog log(loop);
        std::vector<int> order;
        auto a = loop.create_task(record_after(0.03, order, 3));
        auto b = loop.create_task(record_after(0.01, order, 1));
        auto c = loop.create_task(record_after(0.02, order, 2));
        run(loop, a);
        run(loop, b);
        run(loop, c);
        CHECK(order == std::vector<int>{1, 2, 3});

        // Two tasks that sleep(0) in a loop take turns.
        std::vector<int> turns;
        auto taker = [](std::vector<int>& t, int id) -> Task<void> {
            for (int i = 0; i < 3; ++i) {
                t.push_back(id);
                co_await sleep(0);
            }
        };
        auto x = loop.create_task(taker(turns, 1));
        auto y = loop.create_task(taker(turns, 2));
        run(loop, x);
        run(loop, y);
        CHECK(turns == std::vector<int>{1, 2, 1, 2, 1, 2});
        CHECK(log.count == 0);
    }

    TEST_CASE("cancelling a task in sleep throws CancelledError inside it and cancels the timer") {
        EventLoop loop;
        ExceptionLog log(loop);
        bool cancelled = false, finished = false;
        auto f = loop.create_task(nested(1000, cancelled, finished));
        settle(loop);
        CHECK(!f.done());
        CHECK(f.cancel());
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK(f.cancelled());
        CHECK(cancelled);
        CHECK(!finished);
        CHECK_THROWS_AS(f.result(), CancelledError);
        CHECK(log.count == 0);
    }

    TEST_CASE("a task cancelled before it starts never runs") {
        EventLoop loop;
        bool cancelled = false, finished = false;
        auto f = loop.create_task(sleeper(0, cancelled, finished));
        f.cancel();
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK(f.cancelled());
        CHECK(!cancelled);
        CHECK(!finished);
    }

    TEST_CASE("cancelling a task awaiting a future cancels the future") {
        EventLoop loop;
        auto fut = loop.create_future<int>();
        bool saw_cancel = false;
        auto waiter = [](Future<int> f, bool& saw) -> Task<int> {
            try {
                co_return co_await f;
            } catch (const CancelledError&) {
                saw = true;
                throw;
            }
        };
        auto t = loop.create_task(waiter(fut, saw_cancel));
        settle(loop);
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK(t.cancelled());
        CHECK(fut.cancelled());
        CHECK(saw_cancel);
    }

    TEST_CASE("wait_for returns the result in time and raises TimeoutError after cancelling") {
        EventLoop loop;
        ExceptionLog log(loop);
        CHECK(run(loop, wait_for(add_later(0, 1, 2), 10.0)) == 3);

        bool cancelled = false, finished = false;
        auto slow = [](bool& c, bool& f) -> Task<int> { co_return co_await nested(1000, c, f); };
        auto t = loop.create_task(wait_for(slow(cancelled, finished), 0.01));
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK_THROWS_AS(t.result(), TimeoutError);
        CHECK(cancelled);  // the inner task was cancelled, and had unwound, before wait_for raised
        CHECK(!finished);

        // A plain awaitable (sleep) and a future.
        auto s = loop.create_task(wait_for(sleep(1000), 0.01));
        REQUIRE(run_until(loop, [&] { return s.done(); }));
        CHECK_THROWS_AS(s.result(), TimeoutError);
        auto fut = loop.create_future<int>();
        auto w = loop.create_task(wait_for(fut, 0.01));
        REQUIRE(run_until(loop, [&] { return w.done(); }));
        CHECK_THROWS_AS(w.result(), TimeoutError);
        CHECK(fut.cancelled());
        CHECK(log.count == 0);
    }

    TEST_CASE("cancelling wait_for cancels the inner task and raises CancelledError") {
        EventLoop loop;
        bool cancelled = false, finished = false;
        auto t = loop.create_task(wait_for(nested(1000, cancelled, finished), 1000));
        settle(loop);
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK(t.cancelled());
        CHECK(cancelled);
    }

    TEST_CASE("gather returns the results in order") {
        EventLoop loop;
        ExceptionLog log(loop);
        std::vector<Task<int>> tasks;
        tasks.push_back(add_later(0.02, 1, 0));
        tasks.push_back(add_later(0.0, 2, 0));
        tasks.push_back(add_later(0.01, 3, 0));
        CHECK(run(loop, gather(std::move(tasks))) == std::vector<int>{1, 2, 3});

        std::vector<int> order;
        auto tup = run(loop, gather(add_later(0.01, 20, 1), record_after(0, order, 7)));
        CHECK(std::get<0>(tup) == 21);
        CHECK(order == std::vector<int>{7});

        std::vector<Task<void>> voids;
        for (int i = 0; i < 5; ++i) voids.push_back(record_after(0.001 * (5 - i), order, i));
        run(loop, gather(std::move(voids)));
        CHECK(order.size() == 6);
        CHECK(log.count == 0);
    }

    TEST_CASE("gather raises the first exception; cancelling gather cancels every child") {
        EventLoop loop;
        ExceptionLog log(loop);
        std::vector<Task<void>> tasks;
        bool c1 = false, f1 = false;
        tasks.push_back(sleeper(0.05, c1, f1));
        tasks.push_back(fail_after(0.0, "boom"));
        auto g = loop.create_task(gather(std::move(tasks)));
        REQUIRE(run_until(loop, [&] { return g.done(); }));
        CHECK_THROWS_WITH_AS(g.result(), "boom", std::runtime_error);
        REQUIRE(run_until(loop, [&] { return f1; }));  // the other child keeps running

        bool ca = false, fa = false, cb = false, fb = false;
        auto h = loop.create_task(gather(sleeper(1000, ca, fa), sleeper(1000, cb, fb)));
        settle(loop);
        h.cancel();
        REQUIRE(run_until(loop, [&] { return h.done(); }));
        CHECK(h.cancelled());
        CHECK(ca);
        CHECK(cb);
        CHECK(log.count == 0);
    }

    TEST_CASE("an exception in a task nobody awaited reaches the exception handler") {
        EventLoop loop;
        ExceptionLog log(loop);
        {
            auto f = loop.create_task(fail_after(0, "lost"));
            REQUIRE(run_until(loop, [&] { return f.done(); }));
        }  // the last reference to the task's future goes: its exception was never retrieved
        REQUIRE(run_until(loop, [&] { return log.count == 1; }));
        CHECK(log.messages[0].find("never retrieved") != std::string::npos);
        CHECK(log.messages[0].find("lost") != std::string::npos);
        // Dropping the future at once reports too.
        (void)loop.create_task(fail_after(0, "dropped"));
        REQUIRE(run_until(loop, [&] { return log.count == 2; }));
    }

    TEST_CASE("aioring::run runs main on a new loop and returns its result") {
        CHECK(aioring::run(add_later(0.001, 20, 22)) == 42);
        auto r = aioring::run([](EventLoop& loop) -> Task<double> {
            co_await sleep(0);
            EventLoop& running = co_await get_running_loop();
            co_return &running == &loop ? 1.0 : 0.0;
        });
        CHECK(r == 1.0);
        CHECK_THROWS_AS(aioring::run(fail_after(0, "x")), std::runtime_error);
    }
}
