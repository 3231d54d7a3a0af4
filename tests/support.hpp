// SPDX-License-Identifier: Apache-2.0
// Test support: run the loop until a condition holds (with a deadline that only exists to fail
// the test), a recording protocol that checks asyncio's callback order, and blocking peers.
#pragma once

#include <doctest/doctest.h>
#include <aioring/aioring.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace testing {

using namespace aioring;

// Runs `loop` until `pred()` is true; false if `timeout` seconds pass first. The predicate is
// checked after every loop iteration, and nothing else wakes the loop: the deadline only exists
// to fail the test, so a missing wake-up fails it instead of being hidden by a polling timer.
// A condition that changes outside the loop (another thread, a child) must wake it, e.g. with
// call_soon_threadsafe.
inline bool run_until(EventLoop& loop, std::function<bool()> pred, double timeout = 20.0) {
    if (pred()) return true;
    bool ok = false, late = false;
    auto saved = loop.set_iteration_hook([&] {
        // Once the deadline has fired, a condition that comes true in the same iteration (the
        // deadline's own wake-up let it through) is a failure too.
        if (!ok && !late && pred()) {
            ok = true;
            loop.stop();
        }
    });
    struct Restore {
        EventLoop& loop;
        std::function<void()> saved;
        ~Restore() { loop.set_iteration_hook(std::move(saved)); }
    } restore{loop, std::move(saved)};
    auto deadline = loop.call_later(timeout, [&] {
        late = true;
        loop.stop();
    });
    loop.run_forever();
    deadline.cancel();
    return ok;
}

// As run_until, for a condition that another process makes true and that nothing can make
// wake the loop (a child's exit seen by waitpid, its output read by the test): checked every
// millisecond. Not for anything the loop itself must wake up for.
inline bool run_until_polling(EventLoop& loop, std::function<bool()> pred, double timeout = 20.0) {
    TimerHandle next;
    std::function<void()> tick = [&] { next = loop.call_later(0.001, [&] { tick(); }); };
    tick();
    const bool ok = run_until(loop, pred, timeout);
    next.cancel();
    return ok;
}

// Runs exactly `iterations` loop iterations without blocking in the kernel (lets started tasks
// run until they suspend).
inline void run_iterations(EventLoop& loop, int iterations) {
    int left = iterations;
    std::function<void()> step = [&] {
        if (--left > 0)
            loop.call_soon([&] { step(); });
        else
            loop.stop();
    };
    loop.call_soon([&] { step(); });
    loop.run_forever();
}

// Runs a future to completion with a deadline; fails the test on timeout.
template <class T>
T run(EventLoop& loop, Future<T> f, double timeout = 20.0) {
    REQUIRE(run_until(
        loop, [&] { return f.done(); }, timeout));
    if constexpr (std::is_void_v<T>)
        f.result();
    else
        return std::move(f.result());
}
template <class T>
T run(EventLoop& loop, Task<T> t, double timeout = 20.0) {
    return run(loop, loop.create_task(std::move(t)), timeout);
}

// Counts exception-handler calls; a test checks `count` at the end.
// Sets (or, with nullptr, unsets) an environment variable for one scope, then restores the
// earlier value.
struct ScopedEnv {
    std::string name;
    std::optional<std::string> old;
    ScopedEnv(const char* n, const char* value) : name(n) {
        if (const char* v = std::getenv(n)) old = v;
        if (value)
            ::setenv(n, value, 1);
        else
            ::unsetenv(n);
    }
    ~ScopedEnv() {
        if (old)
            ::setenv(name.c_str(), old->c_str(), 1);
        else
            ::unsetenv(name.c_str());
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
};

struct ExceptionLog {
    int count = 0;
    std::vector<std::string> messages;
    explicit ExceptionLog(EventLoop& loop) {
        loop.set_exception_handler([this](EventLoop&, const ExceptionContext& c) {
            ++count;
            std::string m = c.message;
            if (c.exception) {
                try {
                    std::rethrow_exception(c.exception);
                } catch (const std::exception& e) {
                    m += std::string(": ") + e.what();
                } catch (...) {
                }
            }
            messages.push_back(m);
        });
    }
};

// Fails the test on every exception-handler call it was not told to expect: each unexpected
// call is a failed check at once, with its message; at the end (the destructor) the expected
// ones must all have come. Declare it right after the EventLoop.
class ExceptionGuard {
public:
    explicit ExceptionGuard(EventLoop& loop) : loop_(loop) {
        loop.set_exception_handler([this](EventLoop&, const ExceptionContext& c) {
            std::string m = c.message;
            if (c.exception) {
                try {
                    std::rethrow_exception(c.exception);
                } catch (const std::exception& e) {
                    m += std::string(": ") + e.what();
                } catch (...) {
                }
            }
            ++count;
            messages.push_back(m);
            last_transport = c.transport;
            last_protocol = c.protocol;
            if (count > expected_) FAIL_CHECK("unexpected exception-handler call: " << m);
        });
    }
    ExceptionGuard(const ExceptionGuard&) = delete;
    ExceptionGuard& operator=(const ExceptionGuard&) = delete;
    ~ExceptionGuard() {
        CHECK_MESSAGE(count == expected_, "exception-handler calls: expected " << expected_);
        if (!loop_.is_closed()) loop_.set_exception_handler({});
    }
    // The test provokes `n` more calls.
    void expect(int n) { expected_ += n; }

    int count = 0;
    std::vector<std::string> messages;
    const BaseTransport* last_transport = nullptr;
    const BaseProtocol* last_protocol = nullptr;

private:
    EventLoop& loop_;
    int expected_ = 0;
};

// Records every callback and checks asyncio's order:
// connection_made -> data_received* -> eof_received? -> connection_lost, each once.
struct Events {
    int made = 0, eof = 0, lost = 0, pauses = 0, resumes = 0, destroyed = 0;
    std::string data;
    std::error_code lost_error;
    bool order_ok = true;
    Transport* transport = nullptr;
};

class RecordingProtocol : public Protocol {
public:
    explicit RecordingProtocol(Events& e, bool keep_open_on_eof = false)
        : e_(e), keep_open_(keep_open_on_eof) {}
    ~RecordingProtocol() override { ++e_.destroyed; }
    void connection_made(Transport& t) override {
        if (e_.made || e_.lost) e_.order_ok = false;
        ++e_.made;
        e_.transport = &t;
    }
    void data_received(std::string_view d) override {
        if (!e_.made || e_.eof || e_.lost) e_.order_ok = false;
        e_.data.append(d);
        if (on_data) on_data(d);
    }
    bool eof_received() override {
        if (!e_.made || e_.eof || e_.lost) e_.order_ok = false;
        ++e_.eof;
        return keep_open_;
    }
    void connection_lost(std::error_code ec) override {
        if (!e_.made || e_.lost) e_.order_ok = false;
        ++e_.lost;
        e_.lost_error = ec;
    }
    void pause_writing() override {
        if (e_.pauses != e_.resumes) e_.order_ok = false;
        ++e_.pauses;
    }
    void resume_writing() override {
        if (e_.pauses != e_.resumes + 1) e_.order_ok = false;
        ++e_.resumes;
    }
    std::function<void(std::string_view)> on_data;

private:
    Events& e_;
    bool keep_open_;
};

// A connected pair of Unix stream sockets.
struct SocketPair {
    int a = -1, b = -1;
    SocketPair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        a = fds[0];
        b = fds[1];
    }
    ~SocketPair() {
        if (a >= 0) ::close(a);
        if (b >= 0) ::close(b);
    }
    int take_a() { return std::exchange(a, -1); }
};

// Reads from a blocking fd until `n` bytes or EOF.
inline std::string read_n(int fd, std::size_t n) {
    std::string out;
    char buf[65536];
    while (out.size() < n) {
        ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
        if (r <= 0) break;
        out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
}

inline void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads a peer fd on a thread of its own while the loop runs, and wakes the loop (with
// call_soon_threadsafe) whenever it got something, so that run_until sees it without polling.
class PeerReader {
public:
    PeerReader(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {
        set_nonblocking(fd_);
        REQUIRE(::pipe2(stop_, O_CLOEXEC) == 0);
        thread_ = std::thread([this] { run(); });
    }
    ~PeerReader() {
        char c = 0;
        [[maybe_unused]] auto r = ::write(stop_[1], &c, 1);
        thread_.join();
        ::close(stop_[0]);
        ::close(stop_[1]);
    }
    PeerReader(const PeerReader&) = delete;
    PeerReader& operator=(const PeerReader&) = delete;
    // Appends what was read since the last call to `out`; true once EOF was read.
    bool take(std::string& out) {
        std::lock_guard lock(mutex_);
        out.append(got_);
        got_.clear();
        return eof_;
    }

private:
    void run() {
        char buf[65536];
        for (;;) {
            pollfd p[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
            if (::poll(p, 2, -1) < 0) continue;
            if (p[1].revents) return;
            ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                n = 0;  // an error ends the stream as EOF does
            }
            {
                std::lock_guard lock(mutex_);
                if (n > 0)
                    got_.append(buf, static_cast<std::size_t>(n));
                else
                    eof_ = true;
            }
            try {
                loop_.call_soon_threadsafe([] {});
            } catch (const LoopError&) {  // the loop closed: nobody waits any more
            }
            if (n == 0) return;
        }
    }
    EventLoop& loop_;
    int fd_;
    int stop_[2] = {-1, -1};
    std::mutex mutex_;
    std::string got_;
    bool eof_ = false;
    std::thread thread_;
};

// Reads what a peer fd has into `out` while the loop runs; true once `pred(out)` holds. `eof`,
// when given, is set at end of stream.
inline bool read_while_running(EventLoop& loop, int fd, std::string& out,
                               std::function<bool(const std::string&)> pred, bool* eof = nullptr,
                               double timeout = 20.0) {
    bool ok;
    {
        PeerReader reader(loop, fd);
        ok = run_until(
            loop,
            [&] {
                const bool at_eof = reader.take(out);
                if (at_eof && eof) *eof = true;
                return pred(out);
            },
            timeout);
        if (reader.take(out) && eof) *eof = true;  // what came after the last check
    }
    return ok;
}

// Reads from the peer fd until `n` bytes have come (the loop runs meanwhile).
inline std::string peer_read(EventLoop& loop, int fd, std::size_t n) {
    std::string out;
    CHECK(read_while_running(loop, fd, out, [n](const std::string& s) { return s.size() >= n; }));
    return out;
}

// Runs the loop until the peer fd reads EOF; returns what came before it.
inline std::string peer_read_to_eof(EventLoop& loop, int fd) {
    std::string out;
    bool eof = false;
    CHECK(read_while_running(
        loop, fd, out, [&](const std::string&) { return eof; }, &eof));
    return out;
}

// A plain listening TCP socket on 127.0.0.1 (an independent peer for client transports).
struct TcpListener {
    int fd = -1;
    std::uint16_t port = 0;
    TcpListener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 16) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~TcpListener() { ::close(fd); }
    int accept() { return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC); }
};

// A blocking TCP client socket connected to 127.0.0.1:port (or -1).
inline int tcp_connect(std::uint16_t port, int family = AF_INET) {
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int rc;
    if (family == AF_INET) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
        a.sin6_port = htons(port);
        rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// `n` pseudo-random bytes, the same for the same seed (a linear congruential generator): a
// test that checks every byte of a stream sees any reordering, loss or duplication.
inline std::string lcg_bytes(std::size_t n, std::uint32_t seed = 12345) {
    std::string s(n, '\0');
    std::uint32_t x = seed;
    for (auto& c : s) {
        x = x * 1103515245 + 12345;
        c = static_cast<char>(x >> 16);
    }
    return s;
}

// A protocol that writes back what it receives.
struct EchoProtocol : Protocol {
    Transport* t = nullptr;
    void connection_made(Transport& tr) override { t = &tr; }
    void data_received(std::string_view d) override { t->write(d); }
};

}  // namespace testing
