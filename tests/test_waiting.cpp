// SPDX-License-Identifier: Apache-2.0
// Waiting on many: wait() with FIRST_COMPLETED / FIRST_EXCEPTION / ALL_COMPLETED and a
// timeout, as_completed, and shield.
#include <aioring/coro.hpp>
#include <aioring/sync.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

Task<int> value_after(double delay, int v) {
    co_await sleep(delay);
    co_return v;
}

// Done only once `go` is set: a task that cannot finish first, however late the loop runs.
Task<int> value_when(Event& go, int v) {
    co_await go.wait();
    co_return v;
}

Task<int> fail_after(double delay, std::string message) {
    co_await sleep(delay);
    throw std::runtime_error(message);
}

std::vector<int> results(const std::vector<Future<int>>& fs) {
    std::vector<int> out;
    for (auto& f : fs) out.push_back(f.result());
    return out;
}

}  // namespace

TEST_SUITE("wait") {
    TEST_CASE("ALL_COMPLETED returns once every future is done, errors included") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<void> {
            std::vector<Future<int>> fs;
            fs.push_back(l.create_task(value_after(0.02, 1)));
            fs.push_back(l.create_task(fail_after(0.01, "bad")));
            fs.push_back(l.create_task(value_after(0, 3)));
            auto r = co_await wait(std::move(fs));
            CHECK(r.done.size() == 3);
            CHECK(r.pending.empty());
            CHECK(r.done[0].result() == 1);
            CHECK_THROWS_WITH_AS(r.done[1].result(), "bad", std::runtime_error);
        };
        run(loop, main(loop));
        CHECK(elog.count == 0);
    }

    TEST_CASE("FIRST_COMPLETED returns at the first done; the others keep running") {
        // The slow one waits for an event set after the check (two timers 45 ms apart both
        // came due in one iteration on a loaded machine).
        Event go;
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l, Event& slow_go) -> Task<void> {
            std::vector<Future<int>> fs;
            fs.push_back(l.create_task(value_when(slow_go, 1)));
            fs.push_back(l.create_task(value_after(0.005, 2)));
            auto r = co_await wait(std::move(fs), FIRST_COMPLETED);
            CHECK(results(r.done) == std::vector<int>{2});
            REQUIRE(r.pending.size() == 1);
            CHECK_FALSE(r.pending[0].cancelled());
            slow_go.set();
            const int last = co_await r.pending[0];
            CHECK(last == 1);
        };
        run(loop, main(loop, go));
        CHECK(elog.count == 0);
    }

    TEST_CASE("FIRST_EXCEPTION returns at the first error; a cancelled future does not count") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<void> {
            std::vector<Future<int>> fs;
            fs.push_back(l.create_task(value_after(0.001, 1)));
            fs.push_back(l.create_task(value_after(3600, 2)));
            fs.push_back(l.create_task(fail_after(0.02, "bad")));
            fs.push_back(l.create_task(value_after(3600, 4)));
            fs[1].cancel();
            auto r = co_await wait(fs, FIRST_EXCEPTION);
            CHECK(r.done.size() == 3);
            CHECK(r.pending.size() == 1);
            CHECK(fs[1].cancelled());
            CHECK(fs[2].exception() != nullptr);
            fs[3].cancel();
        };
        run(loop, main(loop));
        CHECK(elog.count == 0);
    }

    TEST_CASE("a timeout returns what is done so far and cancels nothing") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<void> {
            std::vector<Future<int>> fs;
            fs.push_back(l.create_task(value_after(0.001, 1)));
            fs.push_back(l.create_task(value_after(3600, 2)));
            auto r = co_await wait(fs, ALL_COMPLETED, 0.02);
            CHECK(r.done.size() == 1);
            REQUIRE(r.pending.size() == 1);
            CHECK_FALSE(r.pending[0].done());
            r.pending[0].cancel();
            // A timeout of 0 returns at once.
            auto r0 = co_await wait(fs, ALL_COMPLETED, 0.0);
            CHECK(r0.done.size() + r0.pending.size() == 2);
            try {
                co_await fs[1];
            } catch (const CancelledError&) {
            }
        };
        run(loop, main(loop));
        CHECK(elog.count == 0);
    }

    TEST_CASE("cancelling the waiting task raises CancelledError and leaves the futures running") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto inner = loop.create_task(value_after(0.05, 9));
        auto waiter = [](Future<int> f) -> Task<void> {
            std::vector<Future<int>> fs{f};
            (void)co_await wait(std::move(fs));
        };
        auto w = loop.create_task(waiter(inner));
        run_iterations(loop, 3);
        w.cancel();
        CHECK_THROWS_AS(run(loop, w), CancelledError);
        CHECK_FALSE(inner.done());
        CHECK(run(loop, inner) == 9);
        CHECK(elog.count == 0);
    }

    TEST_CASE("an empty list is an error") {
        EventLoop loop;
        auto main = []() -> Task<void> {
            std::vector<Future<int>> none;
            (void)co_await wait(std::move(none));
        };
        CHECK_THROWS_AS(run(loop, main()), std::invalid_argument);
    }
}

TEST_SUITE("as_completed") {
    TEST_CASE("yields results in the order the futures finish, errors in their place") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<std::vector<std::string>> {
            std::vector<Future<int>> fs;
            fs.push_back(l.create_task(value_after(0.03, 3)));
            fs.push_back(l.create_task(value_after(0.01, 1)));
            fs.push_back(l.create_task(fail_after(0.02, "two")));
            std::vector<std::string> out;
            AsCompleted<int> ac = as_completed(std::move(fs));
            while (ac.has_next()) {
                try {
                    out.push_back(std::to_string(co_await ac.next()));
                } catch (const std::runtime_error& e) {
                    out.push_back(e.what());
                }
            }
            co_return out;
        };
        CHECK(run(loop, main(loop)) == std::vector<std::string>{"1", "two", "3"});
        CHECK(elog.count == 0);
    }

    TEST_CASE("once the timeout passes, next() raises TimeoutError") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<std::string> {
            std::vector<Future<int>> fs;
            fs.push_back(l.create_task(value_after(0.001, 1)));
            fs.push_back(l.create_task(value_after(3600, 2)));
            Future<int> slow = fs[1];
            AsCompleted<int> ac = as_completed(std::move(fs), 0.02);
            std::string out = std::to_string(co_await ac.next());
            try {
                (void)co_await ac.next();
            } catch (const TimeoutError&) {
                out += " timeout";
            }
            CHECK_FALSE(slow.done());  // nothing cancelled
            slow.cancel();
            co_return out;
        };
        CHECK(run(loop, main(loop)) == "1 timeout");
        CHECK(elog.count == 0);
    }
}

TEST_SUITE("shield") {
    TEST_CASE("cancelling the task awaiting a shielded future leaves the future running") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto inner = loop.create_task(value_after(0.03, 5));
        bool cancelled = false;
        auto waiter = [](Future<int> f, bool& c) -> Task<int> {
            try {
                auto outer = shield(f);
                co_return co_await outer;
            } catch (const CancelledError&) {
                c = true;
                throw;
            }
        };
        auto w = loop.create_task(waiter(inner, cancelled));
        run_iterations(loop, 3);
        w.cancel();
        CHECK_THROWS_AS(run(loop, w), CancelledError);
        CHECK(cancelled);
        CHECK_FALSE(inner.cancelled());
        CHECK(run(loop, inner) == 5);
        CHECK(elog.count == 0);
    }

    TEST_CASE("a shielded future passes on the result, the error and the inner cancellation") {
        EventLoop loop;
        ExceptionLog elog(loop);
        auto main = [](EventLoop& l) -> Task<void> {
            auto ok = shield(l, value_after(0.001, 1));
            const int v = co_await ok;
            CHECK(v == 1);
            auto bad = shield(l, fail_after(0.001, "bad"));
            std::string what;
            try {
                (void)co_await bad;
            } catch (const std::runtime_error& e) {
                what = e.what();
            }
            CHECK(what == "bad");
            auto inner = l.create_task(value_after(3600, 3));
            auto outer = shield(inner);
            inner.cancel();
            bool cancelled = false;
            try {
                (void)co_await outer;
            } catch (const CancelledError&) {
                cancelled = true;
            }
            CHECK(cancelled);
        };
        run(loop, main(loop));
        CHECK(elog.count == 0);
    }
}
