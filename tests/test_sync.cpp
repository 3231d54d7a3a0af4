// Event, Lock, Semaphore and Queue: FIFO wake-ups, mutual exclusion, maxsize, and what a
// cancelled waiter leaves behind.
#include <aioring/sync.hpp>

#include <string>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

void settle(EventLoop& loop) {
    run_iterations(loop, 4);
}

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
