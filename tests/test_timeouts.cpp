// SPDX-License-Identifier: Apache-2.0
// Timeout scopes (asyncio's `async with asyncio.timeout()`): around several awaits,
// reschedulable, TimeoutError only for the scope's own cancellation, nesting as asyncio's.
#include <aioring/sync.hpp>
#include <aioring/task_group.hpp>

#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

// Two sleeps under one scope: the deadline covers both.
Task<int> two_sleeps(double each, bool& saw_cancel) {
    try {
        co_await sleep(each);
        co_await sleep(each);
    } catch (const CancelledError&) {
        saw_cancel = true;
        throw;
    }
    co_return 42;
}

Task<void> forever() { co_await sleep(3600); }

}  // namespace

TEST_SUITE("timeouts") {
    TEST_CASE("a scope around several awaits raises TimeoutError once its deadline passes") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<std::string> {
            bool saw_cancel = false;
            bool timed_out = false;
            const double start = l.time();
            try {
                // Each sleep alone fits in the deadline; both do not.
                (void)co_await timeout(0.05, two_sleeps(0.03, saw_cancel));
            } catch (const TimeoutError&) {
                timed_out = true;
            }
            CHECK(saw_cancel);
            CHECK(l.time() - start >= 0.05);
            co_await sleep(0.001);  // the task is not left cancelled
            co_return timed_out ? "timeout" : "no timeout";
        };
        CHECK(run(loop, main(loop)) == "timeout");
        CHECK(elog.count == 0);
    }

    TEST_CASE("a scope whose body finishes in time returns its value and leaves no timer") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = []() -> Task<int> {
            bool saw_cancel = false;
            int v = co_await timeout(10.0, two_sleeps(0.001, saw_cancel));
            CHECK_FALSE(saw_cancel);
            co_return v;
        };
        CHECK(run(loop, main()) == 42);
        // No timer from the scope fires later: the loop has nothing left to do but the probe.
        bool fired = false;
        loop.call_later(0.02, [&] { fired = true; });
        REQUIRE(run_until(loop, [&] { return fired; }));
        CHECK(elog.count == 0);
    }

    TEST_CASE("reschedule moves the deadline: later, to never, to the past") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<std::vector<std::string>> {
            std::vector<std::string> out;
            {
                Timeout cm = timeout(0.01);
                auto body = [&]() -> Task<void> {
                    CHECK(cm.when().has_value());
                    cm.reschedule(l.time() + 0.05);  // later: the 20 ms sleep fits
                    co_await sleep(0.02);
                    cm.reschedule(std::nullopt);  // never
                    co_await sleep(0.06);
                    out.push_back("survived");
                    cm.reschedule(l.time() - 1);  // already past: fires on the next turn
                    co_await sleep(3600);
                };
                try {
                    co_await cm.run(body());
                } catch (const TimeoutError&) {
                    out.push_back("timeout");
                }
                CHECK(cm.expired());
                CHECK_THROWS_AS(cm.reschedule(l.time() + 1), std::logic_error);
            }
            co_return out;
        };
        CHECK(run(loop, main(loop)) == std::vector<std::string>{"survived", "timeout"});
        CHECK(elog.count == 0);
    }

    TEST_CASE("timeout_at(now) and timeout(0) expire at the first await") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<int> {
            int timeouts = 0;
            try {
                co_await timeout_at(l.time(), forever());
            } catch (const TimeoutError&) {
                ++timeouts;
            }
            try {
                co_await timeout(0.0, forever());
            } catch (const TimeoutError&) {
                ++timeouts;
            }
            // No deadline at all: the body runs to its end.
            auto quick = []() -> Task<int> {
                co_await sleep(0.001);
                co_return 1;
            };
            timeouts += co_await timeout(std::nullopt, quick());
            co_return timeouts;
        };
        CHECK(run(loop, main(loop)) == 3);
        CHECK(elog.count == 0);
    }

    TEST_CASE("nested scopes: the inner one expiring first raises in the inner scope only") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = []() -> Task<std::string> {
            auto inner = []() -> Task<std::string> {
                try {
                    co_await timeout(0.01, forever());
                } catch (const TimeoutError&) {
                    co_return "inner timeout";
                }
                co_return "none";
            };
            std::string r = co_await timeout(10.0, inner());
            co_return r;
        };
        CHECK(run(loop, main()) == "inner timeout");
        CHECK(elog.count == 0);
    }

    TEST_CASE(
        "nested scopes: the outer one expiring raises TimeoutError outside, CancelledError "
        "inside") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = []() -> Task<std::string> {
            std::string inner_saw;
            auto inner = [&]() -> Task<void> {
                try {
                    co_await timeout(10.0, forever());
                } catch (const TimeoutError&) {
                    inner_saw = "timeout";
                    throw;
                } catch (const CancelledError&) {
                    inner_saw = "cancelled";
                    throw;
                }
            };
            try {
                co_await timeout(0.01, inner());
            } catch (const TimeoutError&) {
                co_return "outer timeout, inner " + inner_saw;
            }
            co_return "none";
        };
        CHECK(run(loop, main()) == "outer timeout, inner cancelled");
        CHECK(elog.count == 0);
    }

    TEST_CASE("nested scopes expiring together: only the outer raises TimeoutError") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<std::string> {
            const double when = l.time() + 0.01;
            std::string inner_saw;
            auto inner = [&]() -> Task<void> {
                try {
                    co_await timeout_at(when, forever());
                } catch (const TimeoutError&) {
                    inner_saw = "timeout";
                    throw;
                } catch (const CancelledError&) {
                    inner_saw = "cancelled";
                    throw;
                }
            };
            try {
                co_await timeout_at(when, inner());
            } catch (const TimeoutError&) {
                co_return "outer timeout, inner " + inner_saw;
            }
            co_return "none";
        };
        CHECK(run(loop, main(loop)) == "outer timeout, inner cancelled");
        CHECK(elog.count == 0);
    }

    TEST_CASE("a cancel from outside stays CancelledError, even with the scope expiring too") {
        EventLoop loop;
        ExceptionLog elog(loop);
        std::string saw;
        auto main = [](std::string& s) -> Task<void> {
            try {
                co_await timeout(3600, forever());
            } catch (const TimeoutError&) {
                s = "timeout";
                throw;
            } catch (const CancelledError&) {
                s = "cancelled";
                throw;
            }
        };
        auto f = loop.create_task(main(saw));
        run_iterations(loop, 3);
        f.cancel();
        CHECK_THROWS_AS(run(loop, f), CancelledError);
        CHECK(saw == "cancelled");

        // The scope's deadline and an outside cancel land in the same turn.
        saw.clear();
        auto both = [](EventLoop& l, std::string& s) -> Task<void> {
            try {
                co_await timeout_at(l.time() + 0.01, forever());
            } catch (const TimeoutError&) {
                s = "timeout";
                throw;
            } catch (const CancelledError&) {
                s = "cancelled";
                throw;
            }
        };
        auto g = loop.create_task(both(loop, saw));
        loop.call_later(0.01, [g] { g.cancel(); });
        CHECK_THROWS_AS(run(loop, g), CancelledError);
        CHECK(saw == "cancelled");
        CHECK(elog.count == 0);
    }

    TEST_CASE(
        "a timeout that fires as a queue get completes: TimeoutError, the item stays queued") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Queue<int> q;
        const double when = loop.time() + 0.01;
        // Same due time, scheduled first: the put wakes the getter, and the scope's deadline passes
        // in the same loop turn, before the getter resumes. As asyncio: TimeoutError, nothing lost.
        loop.call_at(when, [&q] { q.put_nowait(7); });
        auto getter = [](Queue<int>& queue, double w) -> Task<std::string> {
            try {
                int v = co_await timeout_at(w, queue.get());
                co_return "got " + std::to_string(v);
            } catch (const TimeoutError&) {
                co_return "timeout";
            }
        };
        CHECK(run(loop, getter(q, when)) == "timeout");
        CHECK(q.qsize() == 1);
        CHECK(q.get_nowait() == 7);
        CHECK(elog.count == 0);
    }

    TEST_CASE(
        "a deadline passing as the awaited event is set: TimeoutError, the task not cancelled") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Event ev;
        const double when = loop.time() + 0.01;
        loop.call_at(when, [&ev] { ev.set(); });
        auto main = [](Event& e, double w) -> Task<int> {
            int r = 0;
            try {
                co_await timeout_at(w, e.wait());
                r = 1;
            } catch (const TimeoutError&) {
                r = 2;
            }
            co_await sleep(0.001);  // the scope's cancel request is spent
            co_await e.wait();
            co_return r;
        };
        CHECK(run(loop, main(ev, when)) == 2);
        CHECK(elog.count == 0);
    }
}

TEST_SUITE("timeouts on sockets") {
    TEST_CASE(
        "a read under a timeout scope: TimeoutError, then the late line is still read whole") {
        EventLoop loop;
        ExceptionLog elog(loop);
        SocketPair sp;
        ConnectOptions o;
        o.sock = sp.take_a();
        auto [reader, writer] = run(loop, open_connection("", 0, default_stream_limit, o));
        // Half a line before the deadline, the rest after it.
        REQUIRE(::write(sp.b, "hel", 3) == 3);
        auto first = [](StreamReader r) -> Task<std::string> {
            try {
                co_return co_await timeout(0.02, r.readline());
            } catch (const TimeoutError&) {
                co_return "timeout";
            }
        };
        CHECK(run(loop, first(reader)) == "timeout");
        REQUIRE(::write(sp.b, "lo\n", 3) == 3);
        auto second = [](StreamReader r) -> Task<std::string> {
            co_return co_await timeout(10.0, r.readline());
        };
        CHECK(run(loop, second(reader)) == "hello\n");
        CHECK(elog.count == 0);
    }
}
