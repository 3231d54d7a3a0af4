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

}  // namespace testing
