// SPDX-License-Identifier: Apache-2.0
// StreamReader and StreamWriter on real sockets: the read family, flow control both ways,
// drain(), cancellation leaving nothing in flight, wait_for on reads, start_server and
// open_connection under 1000 concurrent clients, and client callback failures.
#include <aioring/streams.hpp>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <any>
#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

void settle(EventLoop& loop) { run_iterations(loop, 4); }

// Streams over one end of a socketpair; the other end is returned in `peer`.
StreamPair streams_on_pair(EventLoop& loop, SocketPair& sp,
                           std::size_t limit = default_stream_limit) {
    ConnectOptions o;
    o.sock = sp.take_a();
    return run(loop, open_connection("", 0, limit, o));
}

Task<void> echo_client(StreamReader reader, StreamWriter writer) {
    std::string buf;
    while (co_await reader.read_into(buf, 64 * 1024)) {
        writer.write(buf);
        co_await writer.drain();
    }
    writer.close();
}

std::uint16_t port_of(const std::shared_ptr<Server>& s) { return s->addresses().at(0).port(); }

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

}  // namespace

TEST_SUITE("streams") {
    TEST_CASE("read, readline, readexactly, readuntil and read to EOF over a socketpair") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        const std::string msg = "line one\nline two\nabcdefXYZtail";
        REQUIRE(::write(sp.b, msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
        CHECK(run(loop, reader.readline()) == "line one\n");
        CHECK(run(loop, reader.readuntil("two\n")) == "line two\n");
        CHECK(run(loop, reader.readexactly(3)) == "abc");
        CHECK(run(loop, [](StreamReader r) -> Task<std::string> {
                  co_return co_await r.read(3);
              }(reader)) == "def");
        ::shutdown(sp.b, SHUT_WR);
        CHECK(run(loop, [](StreamReader r) -> Task<std::string> {
                  co_return co_await r.read(-1);
              }(reader)) == "XYZtail");
        CHECK(reader.at_eof());
        CHECK(run(loop, [](StreamReader r) -> Task<std::string> {
                  co_return co_await r.read(10);
              }(reader)) == "");
        CHECK(run(loop, reader.readline()) == "");

        writer.write("bye");
        writer.close();
        run(loop, [](StreamWriter w) -> Task<void> { co_await w.wait_closed(); }(writer));
        CHECK(read_n(sp.b, 10) == "bye");
        CHECK(writer.is_closing());
        CHECK(writer.transport() == nullptr);
        CHECK(log.count == 0);
    }

    TEST_CASE("readexactly and readuntil raise IncompleteReadError with the partial data at EOF") {
        EventLoop loop;
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        REQUIRE(::write(sp.b, "abc", 3) == 3);
        ::shutdown(sp.b, SHUT_WR);
        try {
            run(loop, reader.readexactly(10));
            FAIL("no exception");
        } catch (const IncompleteReadError& e) {
            CHECK(e.partial == "abc");
            CHECK(e.expected == 10);
        }
        SocketPair sp2;
        auto s2 = streams_on_pair(loop, sp2);
        REQUIRE(::write(sp2.b, "no separator", 12) == 12);
        ::shutdown(sp2.b, SHUT_WR);
        try {
            run(loop, s2.reader.readuntil("!"));
            FAIL("no exception");
        } catch (const IncompleteReadError& e) {
            CHECK(e.partial == "no separator");
        }
        writer.close();
        s2.writer.close();
        run(loop, [](StreamWriter a, StreamWriter b) -> Task<void> {
            co_await a.wait_closed();
            co_await b.wait_closed();
        }(writer, s2.writer));
    }

    TEST_CASE("readuntil raises LimitOverrunError; reading pauses over twice the limit") {
        EventLoop loop;
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp, 1024);
        CHECK(reader.limit() == 1024);
        const std::string big(8 * 1024, 'x');
        std::thread peer([&] {
            std::size_t off = 0;
            while (off < big.size()) {
                ssize_t n = ::write(sp.b, big.data() + off, big.size() - off);
                if (n <= 0) break;
                off += static_cast<std::size_t>(n);
            }
        });
        // Over 2 * limit buffered: the transport stops reading.
        REQUIRE(run_until(loop, [&] { return !writer.transport()->is_reading(); }));
        CHECK_THROWS_AS(run(loop, reader.readuntil("\n")), LimitOverrunError);
        // The data stays; consuming it resumes reading, and everything arrives.
        std::size_t total = 0;
        while (total < big.size()) {
            auto chunk =
                run(loop, reader.readexactly(std::min<std::size_t>(1000, big.size() - total)));
            total += chunk.size();
        }
        peer.join();
        CHECK(total == big.size());
        CHECK(writer.transport()->is_reading());
        writer.close();
    }

    TEST_CASE("a transport error surfaces at the next read") {
        EventLoop loop;
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        // Provoke a real error: write to a peer that is gone.
        ::close(sp.b);
        sp.b = -1;
        writer.write("x");
        REQUIRE(run_until(loop, [&] { return writer.transport() == nullptr; }));
        CHECK(reader.exception() != nullptr);
        CHECK_THROWS_AS(run(loop, reader.readline()), std::system_error);
        CHECK_THROWS_AS(run(loop, [](StreamWriter w) -> Task<void> { co_await w.drain(); }(writer)),
                        std::system_error);
    }

    TEST_CASE("cancelling a task in read throws CancelledError and leaves the stream usable") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        bool cancelled = false;
        auto t = loop.create_task([](StreamReader r, bool& c) -> Task<std::string> {
            try {
                co_return co_await r.read(100);
            } catch (const CancelledError&) {
                c = true;
                throw;
            }
        }(reader, cancelled));
        settle(loop);
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK(t.cancelled());
        CHECK(cancelled);
        // No waiter is left behind: a new read works and gets the data.
        REQUIRE(::write(sp.b, "after", 5) == 5);
        CHECK(run(loop, reader.readexactly(5)) == "after");
        writer.close();
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "readexactly gathers across deliveries; cancelled half way, its bytes stay readable") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        StreamReader fed;
        auto t = loop.create_task(fed.readexactly(10));
        settle(loop);
        fed.feed_data("abcd");  // taken by the waiting readexactly, which sleeps on
        settle(loop);
        CHECK(!t.done());
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK(t.cancelled());
        fed.feed_data("efgh");
        CHECK(run(loop, fed.readexactly(8)) == "abcdefgh");
        // Delivered in pieces, it completes with all of them, in order.
        auto whole = loop.create_task(reader.readexactly(6));
        settle(loop);
        REQUIRE(::write(sp.b, "12", 2) == 2);
        settle(loop);
        REQUIRE(::write(sp.b, "3456789", 7) == 7);
        REQUIRE(run_until(loop, [&] { return whole.done(); }));
        CHECK(whole.result() == "123456");
        CHECK(run(loop, [](StreamReader r) -> Task<std::string> {
                  co_return co_await r.read(100);
              }(reader)) == "789");
        writer.close();
        CHECK(log.count == 0);
    }

    TEST_CASE("read_into cancelled after its bytes arrived loses none of them") {
        EventLoop loop;
        ExceptionLog log(loop);
        StreamReader reader;
        std::string buf = "old";
        auto t = loop.create_task([](StreamReader r, std::string& b) -> Task<std::size_t> {
            co_return co_await r.read_into(b, 100);
        }(reader, buf));
        settle(loop);
        // feed_data from user code wakes the reader through the loop, never inside the call: the
        // cancel that comes first wins, and the bytes go back to the buffer.
        reader.feed_data("hello");
        CHECK(!t.done());
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK(t.cancelled());
        std::string again;
        CHECK(run(loop, [](StreamReader r, std::string& b) -> Task<std::size_t> {
                  co_return co_await r.read_into(b, 100);
              }(reader, again)) == 5);
        CHECK(again == "hello");
        CHECK(log.count == 0);
    }

    TEST_CASE("read_view: a waiting read borrows the delivered bytes; echoed, none is copied") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        std::size_t echoed = 0;
        auto t = loop.create_task([](StreamReader r, StreamWriter w, std::size_t& n) -> Task<void> {
            for (;;) {
                const std::string_view v = co_await r.read_view(5);
                if (v.empty()) break;
                n += v.size();
                w.write(v);
                co_await w.drain();
            }
        }(reader, writer, echoed));
        settle(loop);
        // 12 bytes in one delivery: the read takes 5 (borrowed), the rest waits in the buffer.
        std::string back;
        {
            PeerReader peer(loop, sp.b);
            REQUIRE(::write(sp.b, "hello world!", 12) == 12);
            REQUIRE(run_until(loop, [&] {
                peer.take(back);
                return back.size() >= 12;
            }));
        }
        CHECK(echoed == 12);
        CHECK(back == "hello world!");
        const char* multishot = std::getenv("AIORING_NO_MULTISHOT");
        const char* backend = std::getenv("AIORING_BACKEND");
        const auto held =
            std::any_cast<std::uint64_t>(writer.get_extra_info("held_writes", std::uint64_t{0}));
        if ((multishot == nullptr || *multishot != '1') &&
            (backend == nullptr || std::string_view(backend) != "epoll"))
            CHECK(held >= 1);  // the borrowed 5 went out from the receive buffer itself
        ::shutdown(sp.b, SHUT_WR);
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        t.result();
        CHECK(reader.at_eof());
        writer.close();
        CHECK(log.count == 0);
    }

    TEST_CASE("read_view of buffered bytes, up to n; at EOF empty; cancelled, it loses nothing") {
        EventLoop loop;
        ExceptionLog log(loop);
        StreamReader reader;
        reader.feed_data("abcdef");
        auto view = [](StreamReader r, std::size_t n) -> Task<std::string> {
            co_return std::string(co_await r.read_view(n));
        };
        CHECK(run(loop, view(reader, 4)) == "abcd");
        CHECK(run(loop, view(reader, 100)) == "ef");
        // Woken through the loop (user code fed it), the read is cancelled first: the bytes
        // stay in the buffer.
        auto t = loop.create_task(view(reader, 100));
        settle(loop);
        reader.feed_data("ghi");
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK(t.cancelled());
        CHECK(run(loop, view(reader, 100)) == "ghi");
        reader.feed_data("jk");
        reader.feed_eof();
        CHECK(run(loop, view(reader, 100)) == "jk");
        CHECK(run(loop, view(reader, 100)).empty());
        CHECK(reader.at_eof());
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "wait_for on a read that times out raises TimeoutError and leaves the stream usable") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        auto t = loop.create_task(wait_for(reader.read(100), 0.01));
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        CHECK_THROWS_AS(t.result(), TimeoutError);
        auto t2 = loop.create_task(wait_for(reader.readline(), 0.01));
        REQUIRE(::write(sp.b, "par", 3) == 3);
        REQUIRE(run_until(loop, [&] { return t2.done(); }));
        CHECK_THROWS_AS(t2.result(), TimeoutError);
        REQUIRE(::write(sp.b, "tial\n", 5) == 5);
        CHECK(run(loop, wait_for(reader.readline(), 10.0)) == "partial\n");
        writer.close();
        CHECK(log.count == 0);
    }

    TEST_CASE("while writing is paused and no read waits, reading pauses; a read resumes it") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        int small = 4096;
        setsockopt(sp.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(sp.b, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        auto [reader, writer] = streams_on_pair(loop, sp);
        writer.transport()->set_write_buffer_limits(1024);
        const std::string big(256 * 1024, 'w');
        writer.write(big);  // far over the high-water mark: paused
        CHECK(!writer.transport()->is_reading());
        REQUIRE(::write(sp.b, "abc", 3) == 3);
        settle(loop);
        CHECK(!writer.transport()->is_reading());
        // A read that waits lifts the hold, and gets what the peer sent meanwhile.
        auto read = [](StreamReader r) -> Task<std::string> {
            co_return std::string(co_await r.read(100));
        };
        CHECK(run(loop, read(reader)) == "abc");
        CHECK(writer.transport()->is_reading());
        // Nobody reads: writing resumes once the peer takes everything, and so does reading,
        // so that EOF is seen.
        std::string back;
        {
            PeerReader peer(loop, sp.b);
            REQUIRE(::write(sp.b, "def", 3) == 3);
            REQUIRE(run_until(loop, [&] {
                peer.take(back);
                return back.size() == big.size();
            }));
            ::shutdown(sp.b, SHUT_WR);
            REQUIRE(run_until(loop, [&] { return writer.transport()->is_reading(); }));
        }
        CHECK(back == big);
        CHECK(run(loop, [](StreamReader r) -> Task<std::string> {
                  co_return co_await r.read();
              }(reader)) == "def");
        CHECK(reader.at_eof());
        writer.close();
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "drain waits while writing is paused; every waiter resumes; cancel leaves none behind") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        int small = 4096;
        setsockopt(sp.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(sp.b, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        auto [reader, writer] = streams_on_pair(loop, sp);
        writer.transport()->set_write_buffer_limits(1024);
        writer.write(std::string(1 << 20, 'd'));  // far over the high-water mark: paused
        int resumed = 0;
        auto drainer = [](StreamWriter w, int& n) -> Task<void> {
            co_await w.drain();
            ++n;
        };
        auto d1 = loop.create_task(drainer(writer, resumed));
        auto d2 = loop.create_task(drainer(writer, resumed));
        auto d3 = loop.create_task(drainer(writer, resumed));
        settle(loop);
        CHECK(resumed == 0);
        d2.cancel();
        REQUIRE(run_until(loop, [&] { return d2.done(); }));
        CHECK(d2.cancelled());
        // The peer reads everything: writing resumes and both remaining waiters wake.
        std::atomic<bool> peer_done{false};
        std::thread peer([&] {
            read_n(sp.b, 1 << 20);
            peer_done = true;
            loop.call_soon_threadsafe([] {});  // run_until sees the flag after a loop iteration
        });
        REQUIRE(run_until(loop, [&] { return d1.done() && d3.done() && peer_done; }));
        peer.join();
        CHECK(resumed == 2);
        writer.close();
        CHECK(log.count == 0);
    }

    TEST_CASE("drain raises the connection's error, also to waiters already suspended") {
        EventLoop loop;
        SocketPair sp;
        int small = 4096;
        setsockopt(sp.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        auto [reader, writer] = streams_on_pair(loop, sp);
        writer.write(std::string(1 << 20, 'd'));
        auto d1 =
            loop.create_task([](StreamWriter w) -> Task<void> { co_await w.drain(); }(writer));
        auto d2 =
            loop.create_task([](StreamWriter w) -> Task<void> { co_await w.drain(); }(writer));
        settle(loop);
        CHECK(!d1.done());
        ::close(sp.b);  // the peer goes away with data unread: the send fails
        sp.b = -1;
        REQUIRE(run_until(loop, [&] { return d1.done() && d2.done(); }));
        CHECK_THROWS_AS(d1.result(), std::system_error);
        CHECK_THROWS_AS(d2.result(), std::system_error);
    }

    TEST_CASE("drain on a closing transport yields, then raises once the connection is lost") {
        EventLoop loop;
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        writer.write("last words");
        writer.close();
        auto d = loop.create_task([](StreamWriter w) -> Task<void> { co_await w.drain(); }(writer));
        CHECK(!d.done());
        REQUIRE(run_until(loop, [&] { return d.done(); }));
        CHECK_THROWS_AS(d.result(), std::system_error);
        CHECK(read_n(sp.b, 10) == "last words");
    }

    TEST_CASE(
        "64 MiB written with drain after each write never buffers more than high-water + one "
        "write") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        constexpr std::size_t total = 64u << 20, chunk = 48 * 1024;
        std::atomic<std::size_t> received{0};
        std::thread peer([&] {
            char buf[1 << 16];
            for (;;) {
                ssize_t n = ::read(sp.b, buf, sizeof buf);
                if (n <= 0) break;
                received += static_cast<std::size_t>(n);
            }
        });
        auto writer_task = [](StreamWriter w, std::size_t total_bytes,
                              std::size_t chunk_size) -> Task<std::size_t> {
            const std::string data(chunk_size, 'w');
            const std::size_t high = w.transport()->get_write_buffer_limits().second;
            std::size_t worst = 0;
            for (std::size_t sent = 0; sent < total_bytes; sent += chunk_size) {
                w.write(data);
                const std::size_t buffered = w.transport()->get_write_buffer_size();
                worst = std::max(worst, buffered);
                if (buffered > high + chunk_size) throw std::runtime_error("over the bound");
                co_await w.drain();
            }
            w.close();
            co_await w.wait_closed();
            co_return worst;
        };
        auto worst = run(loop, writer_task(writer, total, chunk), 120);
        peer.join();
        CHECK(worst <= default_high_water + chunk);
        CHECK(received.load() >= total);
        CHECK(log.count == 0);
    }

    TEST_CASE("1000 concurrent tasks echo through start_server and open_connection") {
        raise_fd_limit();
        EventLoop loop;
        ExceptionLog log(loop);
        ServerOptions options;
        options.backlog = 1024;
        auto server =
            run(loop, start_server(echo_client, "127.0.0.1", 0, default_stream_limit, options));
        const auto port = port_of(server);
        auto client = [](std::uint16_t p, int i) -> Task<bool> {
            auto [r, w] = co_await open_connection("127.0.0.1", p);
            const std::string line = "hello " + std::to_string(i) + "\n";
            w.write(line);
            co_await w.drain();
            std::string echoed = co_await r.readline();
            w.close();
            co_await w.wait_closed();
            co_return echoed == line;
        };
        std::vector<Task<bool>> tasks;
        for (int i = 0; i < 1000; ++i) tasks.push_back(client(port, i));
        auto results = run(loop, gather(std::move(tasks)), 60);
        CHECK(std::count(results.begin(), results.end(), true) == 1000);
        server->close();
        run(loop, server->wait_closed());
        settle(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "an exception in a client callback reaches the handler and closes only that connection") {
        EventLoop loop;
        ExceptionLog log(loop);
        auto cb = [](StreamReader r, StreamWriter w) -> Task<void> {
            std::string line = co_await r.readline();
            if (line == "boom\n") throw std::runtime_error("client callback failed");
            w.write(line);
            co_await w.drain();
            line = co_await r.readline();
            w.write(line);
            w.close();
        };
        auto server = run(loop, start_server(cb, "127.0.0.1", 0));
        const auto port = port_of(server);
        auto good = run(loop, open_connection("127.0.0.1", port));
        auto bad = run(loop, open_connection("127.0.0.1", port));
        good.writer.write("one\n");
        CHECK(run(loop, good.reader.readline()) == "one\n");
        bad.writer.write("boom\n");
        // The failing connection is closed by the server: EOF.
        CHECK(run(loop, [](StreamReader r) -> Task<std::string> {
                  co_return co_await r.read(100);
              }(bad.reader)) == "");
        REQUIRE(run_until(loop, [&] { return log.count == 1; }));
        CHECK(log.messages[0].find("client_connected_cb") != std::string::npos);
        CHECK(log.messages[0].find("client callback failed") != std::string::npos);
        // The other one still works.
        good.writer.write("two\n");
        CHECK(run(loop, good.reader.readline()) == "two\n");
        good.writer.close();
        bad.writer.close();
        server->close();
        run(loop, server->wait_closed());
        settle(loop);
        CHECK(log.count == 1);
    }

    TEST_CASE("cancelling open_connection while connecting leaves nothing in flight") {
        EventLoop loop;
        ExceptionLog log(loop);
        // A listener whose accept queue is full: the kernel drops further SYNs, so a connect stays
        // in flight.
        int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(lfd, 0) == 0);
        socklen_t len = sizeof a;
        getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
        const auto port = ntohs(a.sin_port);
        std::vector<int> fillers;
        for (int i = 0; i < 4; ++i) {
            int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
            fillers.push_back(fd);
        }
        bool cancelled = false;
        auto t = loop.create_task([](std::uint16_t p, bool& c) -> Task<void> {
            try {
                auto s = co_await open_connection("127.0.0.1", p);
            } catch (const CancelledError&) {
                c = true;
                throw;
            }
        }(port, cancelled));
        settle(loop);
        const bool was_pending = !t.done();
        t.cancel();
        REQUIRE(run_until(loop, [&] { return t.done(); }));
        if (was_pending) {
            CHECK(t.cancelled());
            CHECK(cancelled);
        } else {
            MESSAGE("the connect finished before the cancel; nothing to check");
        }
        for (int fd : fillers) ::close(fd);
        ::close(lfd);
        settle(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE("Unix streams: start_unix_server and open_unix_connection; get_extra_info") {
        EventLoop loop;
        ExceptionLog log(loop);
        std::string path = "/tmp/aioring-streams-" + std::to_string(::getpid()) + ".sock";
        auto server = run(loop, start_unix_server(echo_client, path));
        auto [r, w] = run(loop, open_unix_connection(path));
        w.write("unix\n");
        CHECK(run(loop, r.readline()) == "unix\n");
        CHECK(w.can_write_eof());
        w.write_eof();
        CHECK(run(loop, [](StreamReader rr) -> Task<std::string> {
                  co_return co_await rr.read();
              }(r)) == "");
        CHECK(r.at_eof());
        w.close();
        run(loop, [](StreamWriter ww) -> Task<void> { co_await ww.wait_closed(); }(w));
        auto peer = w.extra<SocketAddress>("peername");
        REQUIRE(peer);
        CHECK(peer->to_string() == path);
        server->close();
        run(loop, server->wait_closed());
        ::unlink(path.c_str());
        settle(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE("closing the loop with a task suspended in a read frees everything") {
        SocketPair sp;
        StreamReader kept_reader;
        {
            EventLoop loop;
            auto s = streams_on_pair(loop, sp);
            kept_reader = s.reader;
            auto t = loop.create_task([](StreamReader r) -> Task<std::string> {
                co_return co_await r.read(10);
            }(s.reader));
            auto d = loop.create_task([](StreamWriter w) -> Task<void> {
                w.write(std::string(1 << 20, 'x'));
                co_await w.drain();
            }(s.writer));
            settle(loop);
            CHECK(!t.done());
            loop.close();  // the pending tasks' frames go; their waiters unlink themselves
        }
        CHECK(!kept_reader.at_eof());
    }

    TEST_CASE("the last StreamWriter handle going away closes the connection") {
        EventLoop loop;
        SocketPair sp;
        {
            auto s = streams_on_pair(loop, sp);
            s.writer.write("x");
        }
        settle(loop);
        CHECK(read_n(sp.b, 10) == "x");  // then EOF: read_n returns at EOF
    }
}

TEST_SUITE("streams: server handlers and separators") {
    TEST_CASE("Server::close cancels every start_server handler; wait_closed returns after them") {
        EventLoop loop;
        ExceptionLog log(loop);
        int started = 0, cancelled = 0;
        auto cb = [&started, &cancelled](StreamReader r, StreamWriter w) -> Task<void> {
            ++started;
            w.write("hello\n");
            try {
                (void)co_await r.read(100);  // the clients never send anything
            } catch (const CancelledError&) {
                ++cancelled;
                throw;
            }
        };
        auto server = run(loop, start_server(cb, "127.0.0.1", 0));
        const auto port = port_of(server);
        int c1 = tcp_connect(port), c2 = tcp_connect(port);
        REQUIRE(c1 >= 0);
        REQUIRE(c2 >= 0);
        CHECK(peer_read(loop, c1, 6) == "hello\n");
        CHECK(peer_read(loop, c2, 6) == "hello\n");
        server->close();
        run(loop, server->wait_closed());
        CHECK(started == 2);
        CHECK(cancelled == 2);
        // Each handler closed its connection as it unwound: the clients read EOF.
        CHECK(peer_read_to_eof(loop, c1) == "");
        CHECK(peer_read_to_eof(loop, c2) == "");
        ::close(c1);
        ::close(c2);
        CHECK(log.count == 0);
    }

    TEST_CASE("readuntil with several separators returns the shortest chunk ending with one") {
        EventLoop loop;
        ExceptionLog log(loop);
        StreamReader r;
        r.feed_data("abc\r\ndef\nxyz");
        auto main = [](StreamReader rd) -> Task<std::vector<std::string>> {
            std::vector<std::string> out;
            std::vector<std::string> seps{"\n", "\r\n"};
            out.push_back(co_await rd.readuntil(seps));
            out.push_back(co_await rd.readuntil(seps));
            std::vector<std::string> other{"z", "xy"};
            out.push_back(co_await rd.readuntil(other));  // "xy" ends first
            rd.feed_eof();
            try {
                (void)co_await rd.readuntil(seps);
            } catch (const IncompleteReadError& e) {
                out.push_back("incomplete:" + e.partial);
            }
            co_return out;
        };
        CHECK(run(loop, main(r)) ==
              std::vector<std::string>{"abc\r\n", "def\n", "xy", "incomplete:z"});
        CHECK(log.count == 0);
    }

    TEST_CASE("readuntil with several separators: a separator split across feeds, the limit") {
        EventLoop loop;
        ExceptionLog log(loop);
        StreamReader r(8);
        auto main = [](StreamReader rd) -> Task<std::string> {
            std::vector<std::string> seps{"--END--", "!"};
            std::string first = co_await rd.readuntil(seps);
            std::string over;
            try {
                (void)co_await rd.readuntil(seps);
            } catch (const LimitOverrunError& e) {
                over = "overrun";
            }
            co_return first + "|" + over;
        };
        auto f = loop.create_task(main(r));
        settle(loop);
        r.feed_data("ab--E");
        settle(loop);
        r.feed_data("ND--");
        settle(loop);
        r.feed_data("0123456789abcdef");  // no separator within the limit of 8
        CHECK(run(loop, f) == "ab--END--|overrun");
        // The data stays buffered after LimitOverrunError (asyncio's readuntil).
        auto rest = [](StreamReader rd) -> Task<std::string> { co_return co_await rd.read(100); };
        CHECK(run(loop, rest(r)) == "0123456789abcdef");
        CHECK(log.count == 0);
    }

    TEST_CASE("StreamWriter::wait_closed completes after close once the connection is lost") {
        EventLoop loop;
        ExceptionLog log(loop);
        SocketPair sp;
        auto [reader, writer] = streams_on_pair(loop, sp);
        writer.write("bye");
        writer.close();
        CHECK(writer.is_closing());
        run(loop, [](StreamWriter w) -> Task<void> { co_await w.wait_closed(); }(writer));
        CHECK(writer.transport() == nullptr);
        CHECK(read_n(sp.b, 3) == "bye");
        CHECK(log.count == 0);
    }
}
