// Test support: run the loop until a condition holds (with a deadline that only exists to fail
// the test), a recording protocol that checks asyncio's callback order, and blocking peers.
#pragma once

#include <aioring/aioring.hpp>
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

namespace testing {

using namespace aioring;

// Runs `loop` until `pred()` is true; false if `timeout` seconds pass first.
inline bool run_until(EventLoop& loop, std::function<bool()> pred, double timeout = 20.0) {
    if (pred()) return true;
    const double deadline = loop.time() + timeout;
    bool ok = false;
    std::function<void()> tick;
    tick = [&] {
        if (pred()) {
            ok = true;
            loop.stop();
        } else if (loop.time() > deadline) {
            loop.stop();
        } else {
            loop.call_later(0.0005, [&] { tick(); });
        }
    };
    loop.call_soon([&] { tick(); });
    loop.run_forever();
    return ok;
}

// Runs a future to completion with a deadline; fails the test on timeout.
template <class T>
T run(EventLoop& loop, Future<T> f, double timeout = 20.0) {
    REQUIRE(run_until(loop, [&] { return f.done(); }, timeout));
    if constexpr (std::is_void_v<T>) f.result();
    else return std::move(f.result());
}
template <class T>
T run(EventLoop& loop, Task<T> t, double timeout = 20.0) {
    return run(loop, loop.create_task(std::move(t)), timeout);
}

// Counts exception-handler calls; a test checks `count` at the end.
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

// Reads what a non-blocking peer fd has into `out` while the loop runs; true once `pred(out)`
// holds. `eof`, when given, is set at end of stream.
inline bool read_while_running(EventLoop& loop, int fd, std::string& out,
                               std::function<bool(const std::string&)> pred, bool* eof = nullptr,
                               double timeout = 20.0) {
    set_nonblocking(fd);
    return run_until(loop, [&] {
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n > 0) {
                out.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0 && eof) *eof = true;
            break;
        }
        return pred(out);
    }, timeout);
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
    CHECK(read_while_running(loop, fd, out, [&](const std::string&) { return eof; }, &eof));
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

// A protocol that writes back what it receives.
struct EchoProtocol : Protocol {
    Transport* t = nullptr;
    void connection_made(Transport& tr) override { t = &tr; }
    void data_received(std::string_view d) override { t->write(d); }
};

}  // namespace testing
