// SPDX-License-Identifier: Apache-2.0
// Allocations of the coroutine layer in steady state, counted by replacing operator new: the
// awaits of a stream read/write/drain round trip allocate nothing (what remains is the socket
// transport's write queue, a std::deque that takes a new node every 16 writes), a queue
// hand-over no more than the frames of the coroutines it calls, and awaits inside a timeout
// scope or a task group nothing per await.
#include <aioring/sync.hpp>
#include <aioring/task_group.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "support.hpp"

namespace {
std::atomic<long> allocations{0};
}

void* operator new(std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace testing;

namespace {

struct Counter {
    long before = allocations.load();
    long count() const { return allocations.load() - before; }
};

// `rounds` round trips of a 64-byte message through an echo peer task on a socketpair;
// returns the allocations of the last `rounds - warmup` of them.
Task<long> stream_round_trips(StreamReader r, StreamWriter w, int rounds, int warmup) {
    std::string msg(64, 'x');
    std::string buf;
    buf.reserve(64 * 1024);
    Counter c;
    for (int i = 0; i < rounds; ++i) {
        if (i == warmup) c = Counter();
        w.write(msg);
        co_await w.drain();
        std::size_t got = 0;
        while (got < msg.size()) got += co_await r.read_into(buf, 64 * 1024);
    }
    co_return c.count();
}

Task<void> echo(StreamReader r, StreamWriter w) {
    std::string buf;
    buf.reserve(64 * 1024);
    while (co_await r.read_into(buf, 64 * 1024)) {
        w.write(buf);
        co_await w.drain();
    }
}

}  // namespace

TEST_SUITE("allocations") {
    TEST_CASE("the awaits of a stream round trip (read_into, drain) allocate nothing") {
        EventLoop loop;
        ExceptionLog elog(loop);
        SocketPair sp;
        ConnectOptions oa, ob;
        oa.sock = sp.take_a();
        ob.sock = std::exchange(sp.b, -1);
        auto a = run(loop, open_connection("", 0, default_stream_limit, oa));
        auto b = run(loop, open_connection("", 0, default_stream_limit, ob));
        auto peer = loop.create_task(echo(b.reader, b.writer));
        const long n = run(loop, stream_round_trips(a.reader, a.writer, 1200, 200));
        MESSAGE("allocations in 1000 round trips: ", n);
        // A round trip is 2 writes, 2 drains and at least 2 read_into awaits that suspend: one
        // allocation per await would be >= 4000; the write queue's deque nodes are 2000 / 16.
        CHECK(n <= 2000 / 16 + 50);
        a.writer.close();
        run(loop, peer);
        CHECK(elog.count == 0);
    }

    TEST_CASE("awaits inside a timeout scope and a task group allocate nothing per await") {
        EventLoop loop;
        ExceptionLog elog(loop);
        SocketPair sp;
        ConnectOptions oa, ob;
        oa.sock = sp.take_a();
        ob.sock = std::exchange(sp.b, -1);
        auto a = run(loop, open_connection("", 0, default_stream_limit, oa));
        auto b = run(loop, open_connection("", 0, default_stream_limit, ob));
        auto peer = loop.create_task(echo(b.reader, b.writer));
        // The same loop under a scope and inside a group: the scope and the group cost a fixed
        // number of allocations, whatever the number of awaits.
        auto scoped = [](StreamReader r, StreamWriter w, int rounds) -> Task<long> {
            Counter c;
            TaskGroup tg;
            auto body = [&](TaskGroup&) -> Task<long> {
                co_return co_await timeout(60.0, stream_round_trips(r, w, rounds, 0));
            };
            (void)co_await tg.run(body(tg));
            co_return c.count();
        };
        const long few = run(loop, scoped(a.reader, a.writer, 10));
        const long many = run(loop, scoped(a.reader, a.writer, 1010));
        MESSAGE("allocations with 10 round trips: ", few, ", with 1010: ", many);
        CHECK(many - few <= 2000 / 16 + 50);  // the transport's write queue only, as above
        a.writer.close();
        run(loop, peer);
        CHECK(elog.count == 0);
    }

    TEST_CASE("a queue hand-over allocates no more than the frames of put() and get()") {
        EventLoop loop;
        ExceptionLog elog(loop);
        Queue<int> there(1), back(1);
        auto ponger = [](Queue<int>& in, Queue<int>& out, int n) -> Task<void> {
            for (int i = 0; i < n; ++i) co_await out.put(co_await in.get());
        };
        auto pinger = [](Queue<int>& out, Queue<int>& in, int n) -> Task<long> {
            Counter c;
            for (int i = 0; i < n; ++i) {
                co_await out.put(i);
                (void)co_await in.get();
            }
            co_return c.count();
        };
        auto p = loop.create_task(ponger(there, back, 1000));
        const long n = run(loop, pinger(there, back, 1000));
        run(loop, p);
        MESSAGE("allocations in 1000 queue round trips: ", n);
        // Two put() and two get() frames per round trip; besides them only the queues' deque nodes
        // (one per 128 ints) and the first growth of the loop's ready queue.
        CHECK(n <= 4 * 1000 + 64);
        CHECK(elog.count == 0);
    }
}
