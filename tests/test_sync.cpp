// SPDX-License-Identifier: Apache-2.0
// Event, Lock, Semaphore and Queue: FIFO wake-ups, mutual exclusion, maxsize, and what a
// cancelled waiter leaves behind.
#include <aioring/sync.hpp>

#include <string>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

void settle(EventLoop& loop) { run_iterations(loop, 4); }

Task<void> wait_event(Event& ev, std::vector<int>& log, int id) {
    co_await ev.wait();
    log.push_back(id);
}

Task<void> critical(Lock& lock, std::vector<std::string>& log, int id) {
    co_await lock.acquire();
    log.push_back("in " + std::to_string(id));
    co_await sleep(0.001);
    log.push_back("out " + std::to_string(id));
    lock.release();
}

Task<void> limited(Semaphore& sem, int& inside, int& max_inside) {
    co_await sem.acquire();
    ++inside;
    max_inside = std::max(max_inside, inside);
    co_await sleep(0.001);
    --inside;
    sem.release();
}

Task<void> producer(Queue<int>& q, int n, std::vector<std::size_t>& sizes) {
    for (int i = 0; i < n; ++i) {
        co_await q.put(i);
        sizes.push_back(q.qsize());
    }
}

Task<std::vector<int>> consumer(Queue<int>& q, int n) {
    std::vector<int> got;
    for (int i = 0; i < n; ++i) {
        got.push_back(co_await q.get());
        q.task_done();
        co_await sleep(0);
    }
    co_return got;
}

}  // namespace

TEST_SUITE("sync") {
    TEST_CASE("Event.set wakes every waiter, in the order they waited") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Event ev;
        std::vector<int> log;
        auto a = loop.create_task(wait_event(ev, log, 1));
        auto b = loop.create_task(wait_event(ev, log, 2));
        settle(loop);
        CHECK(log.empty());
        ev.set();
        CHECK(ev.is_set());
        run(loop, a);
        run(loop, b);
        CHECK(log == std::vector<int>{1, 2});
        run(loop, wait_event(ev, log, 3));  // already set: no wait
        ev.clear();
        CHECK(!ev.is_set());
        CHECK(elog.count == 0);
    }

    TEST_CASE("a cancelled Event waiter gets CancelledError and the others still wake") {
        EventLoop loop;
        Event ev;
        std::vector<int> log;
        auto a = loop.create_task(wait_event(ev, log, 1));
        auto b = loop.create_task(wait_event(ev, log, 2));
        settle(loop);
        a.cancel();
        REQUIRE(run_until(loop, [&] { return a.done(); }));
        CHECK(a.cancelled());
        ev.set();
        run(loop, b);
        CHECK(log == std::vector<int>{2});
    }

    TEST_CASE("Lock excludes, and hands the lock to waiters in FIFO order") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Lock lock;
        std::vector<std::string> log;
        std::vector<Task<void>> tasks;
        for (int i = 0; i < 3; ++i) tasks.push_back(critical(lock, log, i));
        run(loop, gather(std::move(tasks)));
        CHECK(log == std::vector<std::string>{"in 0", "out 0", "in 1", "out 1", "in 2", "out 2"});
        CHECK(!lock.locked());
        CHECK_THROWS_AS(lock.release(), std::logic_error);
        CHECK(elog.count == 0);
    }

    TEST_CASE("cancelling a Lock waiter throws CancelledError and the lock goes to the next one") {
        EventLoop loop;
        Lock lock;
        std::vector<std::string> log;
        run(loop, lock.acquire());
        auto w1 = loop.create_task(critical(lock, log, 1));
        auto w2 = loop.create_task(critical(lock, log, 2));
        settle(loop);
        w1.cancel();
        REQUIRE(run_until(loop, [&] { return w1.done(); }));
        CHECK(w1.cancelled());
        lock.release();
        run(loop, w2);
        CHECK(log == std::vector<std::string>{"in 2", "out 2"});
        CHECK(!lock.locked());

        // Cancelled after release() handed it the lock but before it ran: it passes the lock on.
        auto a = loop.create_task(lock.acquire());
        run(loop, a);
        REQUIRE(lock.locked());
        auto b = loop.create_task(lock.acquire());
        auto c = loop.create_task(lock.acquire());
        settle(loop);
        lock.release();  // hands it to b
        b.cancel();
        REQUIRE(run_until(loop, [&] { return b.done() && c.done(); }));
        CHECK(b.cancelled());
        CHECK(!c.cancelled());
        CHECK(lock.locked());  // c holds it
        lock.release();
        CHECK(!lock.locked());
    }

    TEST_CASE("Semaphore lets at most value tasks in") {
        EventLoop loop;
        Semaphore sem(2);
        int inside = 0, max_inside = 0;
        std::vector<Task<void>> tasks;
        for (int i = 0; i < 6; ++i) tasks.push_back(limited(sem, inside, max_inside));
        run(loop, gather(std::move(tasks)));
        CHECK(max_inside == 2);
        CHECK(sem.value() == 2);
    }

    TEST_CASE("Queue with maxsize: put waits while full, get while empty, FIFO") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Queue<int> q(2);
        std::vector<std::size_t> sizes;
        auto p = loop.create_task(producer(q, 10, sizes));
        settle(loop);
        CHECK(q.full());
        CHECK(!p.done());
        CHECK_THROWS_AS(q.put_nowait(99), QueueFull);
        auto c = loop.create_task(consumer(q, 10));
        auto j = loop.create_task(q.join());
        std::vector<int> expected;
        for (int i = 0; i < 10; ++i) expected.push_back(i);
        CHECK(run(loop, c) == expected);
        run(loop, p);
        run(loop, j);
        for (auto s : sizes) CHECK(s <= 2);
        CHECK(q.empty());
        CHECK_THROWS_AS(q.get_nowait(), QueueEmpty);
        CHECK(elog.count == 0);
    }

    TEST_CASE("cancelling a Queue get leaves the item for the next getter") {
        EventLoop loop;
        Queue<std::string> q;
        auto g1 = loop.create_task(q.get());
        auto g2 = loop.create_task(q.get());
        settle(loop);
        q.put_nowait("item");  // wakes g1
        g1.cancel();           // before it ran: the wake-up passes to g2
        REQUIRE(run_until(loop, [&] { return g1.done() && g2.done(); }));
        CHECK(g1.cancelled());
        CHECK(g2.result() == "item");
    }
}

namespace {

Task<void> cond_waiter(Condition& c, int& value, int want, std::vector<int>& log, int id) {
    co_await c.acquire();
    auto pred = [&value, want] { return value >= want; };
    (void)co_await c.wait_for(pred);
    log.push_back(id);
    CHECK(c.locked());
    c.release();
}

Task<std::size_t> at_barrier(Barrier& b, std::vector<std::string>& log, std::string name) {
    log.push_back(name + " arrives");
    std::size_t i = co_await b.wait();
    log.push_back(name + " passes");
    co_return i;
}

}  // namespace

TEST_SUITE("sync: more") {
    TEST_CASE("Condition: wait releases the lock, notify(n) wakes n waiters, who retake it") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Condition c;
        int value = 0;
        std::vector<int> log;
        auto a = loop.create_task(cond_waiter(c, value, 1, log, 1));
        auto b = loop.create_task(cond_waiter(c, value, 1, log, 2));
        auto d = loop.create_task(cond_waiter(c, value, 2, log, 3));
        settle(loop);
        CHECK_FALSE(c.locked());  // every waiter released it
        CHECK_THROWS_AS(c.notify(), std::logic_error);
        auto notifier = [](Condition& cond, int& v) -> Task<void> {
            co_await cond.acquire();
            v = 1;
            cond.notify(1);  // only the first waiter
            cond.release();
            co_await sleep(0.005);
            co_await cond.acquire();
            v = 2;
            cond.notify_all();
            cond.release();
        };
        run(loop, notifier(c, value));
        run(loop, a);
        run(loop, b);
        run(loop, d);
        CHECK(log == std::vector<int>{1, 2, 3});
        CHECK(elog.count == 0);
    }

    TEST_CASE("Condition: a waiter cancelled while notified retakes the lock and passes it on") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Condition c;
        int value = 0;
        std::vector<int> log;
        bool cancelled_held_lock = false;
        auto victim = [](Condition& cond, bool& held) -> Task<void> {
            co_await cond.acquire();
            try {
                co_await cond.wait();
            } catch (const CancelledError&) {
                held = cond.locked();
                cond.release();
                throw;
            }
            cond.release();
        };
        auto v = loop.create_task(victim(c, cancelled_held_lock));
        auto other = loop.create_task(cond_waiter(c, value, 1, log, 7));
        settle(loop);
        // Notify the victim (first in line) and cancel it in the same turn: the notification
        // goes on to the other waiter.
        auto notify_and_cancel = [](Condition& cond, int& val,
                                    Future<void> victim_task) -> Task<void> {
            co_await cond.acquire();
            val = 1;
            cond.notify(1);
            victim_task.cancel();
            cond.release();
        };
        run(loop, notify_and_cancel(c, value, v));
        CHECK_THROWS_AS(run(loop, v), CancelledError);
        run(loop, other);
        CHECK(cancelled_held_lock);
        CHECK(log == std::vector<int>{7});
        CHECK(elog.count == 0);
    }

    TEST_CASE("Barrier: releases the tasks together with their arrival index, then refills") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Barrier b(3);
        std::vector<std::string> log;
        auto x = loop.create_task(at_barrier(b, log, "x"));
        auto y = loop.create_task(at_barrier(b, log, "y"));
        settle(loop);
        CHECK(b.n_waiting() == 2);
        CHECK(log == std::vector<std::string>{"x arrives", "y arrives"});
        auto z = loop.create_task(at_barrier(b, log, "z"));
        CHECK(run(loop, x) + run(loop, y) + run(loop, z) == 0u + 1u + 2u);
        CHECK(log.size() == 6);
        CHECK(b.n_waiting() == 0);
        // A second round works the same.
        auto p = loop.create_task(at_barrier(b, log, "p"));
        auto q = loop.create_task(at_barrier(b, log, "q"));
        auto r = loop.create_task(at_barrier(b, log, "r"));
        CHECK(run(loop, p) + run(loop, q) + run(loop, r) == 3u);
        CHECK(elog.count == 0);
    }

    TEST_CASE("Barrier: abort breaks it for waiters and later arrivals; reset wakes waiters") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Barrier b(3);
        std::vector<std::string> log;
        auto x = loop.create_task(at_barrier(b, log, "x"));
        settle(loop);
        b.reset();
        CHECK_THROWS_AS(run(loop, x), BrokenBarrierError);
        CHECK_FALSE(b.broken());
        auto y = loop.create_task(at_barrier(b, log, "y"));
        settle(loop);
        b.abort();
        CHECK(b.broken());
        CHECK_THROWS_AS(run(loop, y), BrokenBarrierError);
        CHECK_THROWS_AS(run(loop, at_barrier(b, log, "late")), BrokenBarrierError);
        CHECK(elog.count == 0);
    }

    TEST_CASE("Barrier: a cancelled waiter leaves without breaking it") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Barrier b(2);
        std::vector<std::string> log;
        auto x = loop.create_task(at_barrier(b, log, "x"));
        settle(loop);
        x.cancel();
        CHECK_THROWS_AS(run(loop, x), CancelledError);
        CHECK(b.n_waiting() == 0);
        auto y = loop.create_task(at_barrier(b, log, "y"));
        auto z = loop.create_task(at_barrier(b, log, "z"));
        CHECK(run(loop, y) + run(loop, z) == 1u);
        CHECK(elog.count == 0);
    }

    TEST_CASE("LifoQueue and PriorityQueue: last in first out, smallest first") {
        EventLoop loop;
        ExceptionLog elog(loop);
        LifoQueue<int> lifo;
        PriorityQueue<int> prio(3);
        auto main = [](LifoQueue<int>& l, PriorityQueue<int>& p) -> Task<void> {
            for (int v : {1, 2, 3}) co_await l.put(v);
            for (int v : {5, 1, 3}) co_await p.put(v);
            CHECK(p.full());
            std::vector<int> out;
            for (int i = 0; i < 3; ++i) out.push_back(co_await l.get());
            for (int i = 0; i < 3; ++i) out.push_back(co_await p.get());
            CHECK(out == std::vector<int>{3, 2, 1, 1, 3, 5});
        };
        run(loop, main(lifo, prio));
        CHECK(elog.count == 0);
    }

    TEST_CASE("Queue.join returns once every item put was marked done") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Queue<int> q(2);
        std::vector<int> handled;
        bool joined = false;
        auto worker = [](Queue<int>& queue, std::vector<int>& h) -> Task<void> {
            for (;;) {
                int v = co_await queue.get();
                co_await sleep(0.001);
                h.push_back(v);
                queue.task_done();
            }
        };
        auto joiner = [](Queue<int>& queue, bool& j) -> Task<void> {
            for (int i = 0; i < 5; ++i) co_await queue.put(i);
            co_await queue.join();
            j = true;
        };
        auto w = loop.create_task(worker(q, handled));
        run(loop, joiner(q, joined));
        CHECK(joined);
        CHECK(handled == std::vector<int>{0, 1, 2, 3, 4});
        CHECK_THROWS_AS(q.task_done(), std::logic_error);
        w.cancel();
        CHECK_THROWS_AS(run(loop, w), CancelledError);
        CHECK(elog.count == 0);
    }
}
