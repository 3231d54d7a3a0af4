// SPDX-License-Identifier: Apache-2.0
// TaskGroup (asyncio 3.11 semantics): children awaited at the end, the first failure cancels the
// rest and the body, every error reported in an ExceptionGroup, the parent's cancellation
// cancelling the children; and Task.cancel(msg), cancelling() and uncancel().
#include <aioring/sync.hpp>
#include <aioring/task_group.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

struct Log {
    std::vector<std::string> lines;
    void add(std::string s) { lines.push_back(std::move(s)); }
    bool has(const std::string& s) const {
        for (auto& l : lines)
            if (l == s) return true;
        return false;
    }
};

Task<int> value_after(double delay, int v, Log& log, std::string name) {
    try {
        co_await sleep(delay);
    } catch (const CancelledError&) {
        log.add(name + " cancelled");
        throw;
    }
    log.add(name + " done");
    co_return v;
}

Task<void> fail_after(double delay, std::string message) {
    co_await sleep(delay);
    throw std::runtime_error(message);
}

Task<void> fail_on(Event& ev, std::string message) {
    co_await ev.wait();
    throw std::runtime_error(message);
}

// Cancelled, it cleans up for `cleanup` seconds and then raises `message` (if any).
Task<void> slow_to_cancel(double cleanup, std::string message, Log& log) {
    try {
        co_await sleep(3600);
    } catch (const CancelledError&) {
        log.add("slow cancelled");
    }
    co_await sleep(cleanup);
    log.add("slow cleaned up");
    if (!message.empty()) throw std::runtime_error(message);
    throw CancelledError();
}

std::vector<std::string> messages(const ExceptionGroup& g) {
    std::vector<std::string> out;
    for (auto& e : g.exceptions()) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            out.push_back(x.what());
        }
    }
    return out;
}

Task<int> sum_of_three(Log& log) {
    TaskGroup tg;
    Future<int> a, b, c;
    auto body = [&](TaskGroup& g) -> Task<void> {
        a = g.create_task(value_after(0.02, 1, log, "a"));
        b = g.create_task(value_after(0.01, 2, log, "b"));
        c = g.create_task(value_after(0, 3, log, "c"));
        co_return;
    };
    co_await tg.run(body(tg));
    // Every child is done once run() returns.
    co_return a.result() + b.result() + c.result();
}

Task<std::string> first_failure(Log& log, bool& body_cancelled) {
    TaskGroup tg;
    auto body = [&](TaskGroup& g) -> Task<void> {
        (void)g.create_task(value_after(3600, 1, log, "long"));
        (void)g.create_task(fail_after(0.01, "boom"));
        try {
            co_await sleep(3600);
        } catch (const CancelledError&) {
            body_cancelled = true;
            throw;
        }
    };
    try {
        co_await tg.run(body(tg));
    } catch (const ExceptionGroup& e) {
        co_return std::string(e.what()) + " | " + messages(e).at(0);
    }
    co_return "no error";
}

}  // namespace

TEST_SUITE("task group") {
    TEST_CASE("tasks created in a group are awaited when the group ends") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        CHECK(run(loop, sum_of_three(log)) == 6);
        CHECK(log.lines == std::vector<std::string>{"c done", "b done", "a done"});
        CHECK(elog.count == 0);
    }

    TEST_CASE("the first failure cancels the other children and the body; the group raises it") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        bool body_cancelled = false;
        CHECK(run(loop, first_failure(log, body_cancelled)) ==
              "unhandled errors in a TaskGroup (1 sub-exception) | boom");
        CHECK(body_cancelled);
        CHECK(log.has("long cancelled"));
        CHECK(elog.count == 0);
    }

    TEST_CASE("errors of children failing together are all reported") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop&) -> Task<std::vector<std::string>> {
            TaskGroup tg;
            Event go;
            auto body = [&go](TaskGroup& g) -> Task<void> {
                // Both wake in the same loop turn and fail before the group hears of either.
                (void)g.create_task(fail_on(go, "one"));
                (void)g.create_task(fail_on(go, "two"));
                co_await sleep(0);
                go.set();
            };
            try {
                co_await tg.run(body(tg));
            } catch (const ExceptionGroup& e) {
                co_return messages(e);
            }
            co_return std::vector<std::string>{};
        };
        CHECK(run(loop, main(loop)) == std::vector<std::string>{"one", "two"});
        CHECK(elog.count == 0);
    }

    TEST_CASE("a child failing while another is being cancelled: both errors are reported") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        auto main = [](Log& l) -> Task<std::vector<std::string>> {
            TaskGroup tg;
            auto body = [&l](TaskGroup& g) -> Task<void> {
                // `slow` takes 20 ms to unwind its cancellation and fails doing so, after the
                // group had already recorded `first` and was aborting.
                (void)g.create_task(slow_to_cancel(0.02, "cleanup failed", l));
                (void)g.create_task(fail_after(0.001, "first"));
                (void)g.create_task(value_after(3600, 0, l, "idle"));
                co_return;
            };
            try {
                co_await tg.run(body(tg));
            } catch (const ExceptionGroup& e) {
                co_return messages(e);
            }
            co_return std::vector<std::string>{};
        };
        CHECK(run(loop, main(log)) == std::vector<std::string>{"first", "cleanup failed"});
        CHECK(log.has("slow cancelled"));
        CHECK(log.has("slow cleaned up"));
        CHECK(log.has("idle cancelled"));
        CHECK(elog.count == 0);
    }

    TEST_CASE("cancelling the parent cancels the children and the group raises CancelledError") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        bool cancelled = false;
        auto main = [](Log& l, bool& c) -> Task<void> {
            TaskGroup tg;
            auto body = [&l](TaskGroup& g) -> Task<void> {
                (void)g.create_task(value_after(3600, 1, l, "x"));
                (void)g.create_task(value_after(3600, 2, l, "y"));
                co_return;  // the parent waits at the end of the group
            };
            try {
                co_await tg.run(body(tg));
            } catch (const CancelledError& e) {
                c = true;
                CHECK(e.message() == "shutdown");
                throw;
            }
        };
        auto f = loop.create_task(main(log, cancelled));
        run_iterations(loop, 4);
        CHECK(f.cancel("shutdown"));
        CHECK(f.cancelling() == 1);
        CHECK_THROWS_AS(run(loop, f), CancelledError);
        CHECK(cancelled);
        CHECK(log.has("x cancelled"));
        CHECK(log.has("y cancelled"));
        CHECK(f.cancelled());
        CHECK(elog.count == 0);
    }

    TEST_CASE("the body raising cancels the children; its error is in the group") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        auto main = [](Log& l) -> Task<std::vector<std::string>> {
            TaskGroup tg;
            auto body = [&l](TaskGroup& g) -> Task<void> {
                (void)g.create_task(value_after(3600, 1, l, "child"));
                co_await sleep(0.005);
                throw std::logic_error("body failed");
            };
            try {
                co_await tg.run(body(tg));
            } catch (const ExceptionGroup& e) {
                co_return messages(e);
            }
            co_return std::vector<std::string>{};
        };
        CHECK(run(loop, main(log)) == std::vector<std::string>{"body failed"});
        CHECK(log.has("child cancelled"));
        CHECK(elog.count == 0);
    }

    TEST_CASE("a failure while the parent is cancelled from outside: errors win, cancel stays") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        bool next_await_cancelled = false;
        auto main = [](Log& l, bool& next) -> Task<void> {
            TaskGroup tg;
            auto body = [&l](TaskGroup& g) -> Task<void> {
                (void)g.create_task(slow_to_cancel(0.01, "failed while cancelled", l));
                co_return;
            };
            try {
                co_await tg.run(body(tg));
            } catch (const ExceptionGroup& e) {
                CHECK(messages(e) == std::vector<std::string>{"failed while cancelled"});
            }
            // The outside cancel request is still pending: the next await raises it.
            try {
                co_await sleep(0);
            } catch (const CancelledError&) {
                next = true;
                throw;
            }
        };
        auto f = loop.create_task(main(log, next_await_cancelled));
        run_iterations(loop, 4);
        f.cancel();
        CHECK_THROWS_AS(run(loop, f), CancelledError);
        CHECK(next_await_cancelled);
        CHECK(elog.count == 0);
    }

    TEST_CASE("nested groups: the inner group's ExceptionGroup is an error of the outer one") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto inner = []() -> Task<void> {
            TaskGroup tg;
            auto body = [](TaskGroup& g) -> Task<void> {
                (void)g.create_task(fail_after(0.001, "deep"));
                co_return;
            };
            co_await tg.run(body(tg));
        };
        auto main = [&inner]() -> Task<bool> {
            TaskGroup tg;
            auto body = [&inner](TaskGroup& g) -> Task<void> {
                (void)g.create_task(inner());
                co_return;
            };
            try {
                co_await tg.run(body(tg));
            } catch (const ExceptionGroup& e) {
                CHECK(e.exceptions().size() == 1);
                const auto* deep = e.find<std::runtime_error>();
                co_return deep != nullptr&& std::string(deep->what()) == "deep" &&
                    e.find<ExceptionGroup>() != nullptr;
            }
            co_return false;
        };
        CHECK(run(loop, main()));
        CHECK(elog.count == 0);
    }

    TEST_CASE("wait(): tasks created before the group is awaited; a cancelled child is no error") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        auto main = [](EventLoop& l, Log& lg) -> Task<int> {
            TaskGroup tg(l);
            auto a = tg.create_task(value_after(0.01, 5, lg, "a"));
            auto b = tg.create_task(value_after(3600, 6, lg, "b"));
            CHECK(tg.size() == 2);
            b.cancel();
            co_await tg.wait();
            CHECK(tg.size() == 0);
            CHECK(b.cancelled());
            // A finished group takes no more tasks.
            CHECK_THROWS_AS((void)tg.create_task(value_after(0, 1, lg, "c")), std::logic_error);
            co_return a.result();
        };
        CHECK(run(loop, main(loop, log)) == 5);
        CHECK(elog.count == 0);
    }

    TEST_CASE("a group without a loop takes tasks only once entered") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Log log;
        TaskGroup tg;
        CHECK_THROWS_AS((void)tg.create_task(value_after(0, 1, log, "x")), std::logic_error);
        CHECK(elog.count == 0);
    }

    TEST_CASE("a loop closed with a group waiting frees the group and its children") {
        Log log;
        {
            EventLoop loop;
            auto main = [](Log& l) -> Task<void> {
                TaskGroup tg;
                auto body = [&l](TaskGroup& g) -> Task<void> {
                    (void)g.create_task(value_after(3600, 1, l, "x"));
                    co_return;
                };
                co_await tg.run(body(tg));
            };
            auto f = loop.create_task(main(log));
            run_iterations(loop, 4);
            CHECK_FALSE(f.done());
            loop.close();
        }
        CHECK(log.lines.empty());  // nothing ran after close; ASan checks nothing leaked
    }
}

TEST_SUITE("task cancel") {
    TEST_CASE("cancel(msg) comes with the CancelledError; cancelling() counts the requests") {
        EventLoop loop;
        ExceptionLog elog(loop);
        std::string seen;
        auto sleeper = [](std::string& s) -> Task<void> {
            try {
                co_await sleep(3600);
            } catch (const CancelledError& e) {
                s = e.message();
                throw;
            }
        };
        auto f = loop.create_task(sleeper(seen));
        run_iterations(loop, 3);
        CHECK(f.cancelling() == 0);
        CHECK(f.cancel("first"));
        CHECK(f.cancel("second"));
        CHECK(f.cancelling() == 2);
        CHECK(f.uncancel() == 1);
        CHECK_THROWS_AS(run(loop, f), CancelledError);
        CHECK(seen == "second");
        try {
            f.result();
        } catch (const CancelledError& e) {
            CHECK(e.message() == "second");
        }
        CHECK_FALSE(f.cancel());
        CHECK(elog.count == 0);
    }

    TEST_CASE("uncancel() to zero withdraws a request the task has not seen yet") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto quick = []() -> Task<int> {
            co_await sleep(0.001);
            co_return 7;
        };
        auto f = loop.create_task(quick());
        // Not started yet: the request is pending, then withdrawn.
        CHECK(f.cancel());
        CHECK(f.uncancel() == 0);
        CHECK(run(loop, f) == 7);
        CHECK(elog.count == 0);
    }
}
