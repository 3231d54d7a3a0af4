// SPDX-License-Identifier: Apache-2.0
// A server at the process's fd limit: accept() fails with EMFILE; the server keeps its listening
// socket, retries on a timer (no busy loop), reports the error once per interval with the count
// of failed retries in between, and accepts the waiting connection once an fd is free.
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <vector>

#include "support.hpp"

using namespace testing;

namespace {

// Takes every fd the process may still open, under a soft limit lowered to just above the fds in
// use; gives them back (and the limit) when it goes.
class FdExhaustion {
public:
    FdExhaustion() {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        int highest = ::dup(0);
        REQUIRE(highest >= 0);
        ::close(highest);
        rlimit low = saved_;
        low.rlim_cur = static_cast<rlim_t>(highest) + 16;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
        for (;;) {
            int fd = ::dup(0);
            if (fd < 0) {
                REQUIRE(errno == EMFILE);
                break;
            }
            fillers_.push_back(fd);
        }
    }
    ~FdExhaustion() {
        release(fillers_.size());
        ::setrlimit(RLIMIT_NOFILE, &saved_);
    }
    void release(std::size_t n) {
        for (; n > 0 && !fillers_.empty(); --n) {
            ::close(fillers_.back());
            fillers_.pop_back();
        }
    }

private:
    rlimit saved_{};
    std::vector<int> fillers_;
};

// The N of "(N more since the last report)", or -1.
long more_since(const std::string& message) {
    auto pos = message.find(" (");
    long n = -1;
    while (pos != std::string::npos) {
        if (std::sscanf(message.c_str() + pos, " (%ld more since the last report)", &n) == 1)
            return n;
        pos = message.find(" (", pos + 1);
    }
    return -1;
}

}  // namespace

TEST_SUITE("accept at the fd limit") {
    TEST_CASE("EMFILE on accept: retried on a timer, reported once per interval, then recovered") {
        EventLoop loop;
        ExceptionLog log(loop);
        Events ev;
        auto server =
            run(loop, loop.create_server([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", 0));
        const auto addr = server->addresses().front();
        const int client =
            ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // before the fds run out
        REQUIRE(client >= 0);
        {
            FdExhaustion exhausted;
            // The kernel completes the handshake from its backlog; the server's accept() has no fd.
            REQUIRE(::connect(client, addr.get(), addr.length) == 0);
            REQUIRE(run_until(loop, [&] { return log.count >= 1; }));
            CHECK(log.messages[0].find("Too many open files") != std::string::npos);
            CHECK(more_since(log.messages[0]) == -1);  // the first report counts nothing
            CHECK(ev.made == 0);
            // The next report comes one interval (5 s) later and counts the retries in between:
            // at least one, and no more than one per 0.25 s retry delay allows (a retry storm, or
            // an accept re-armed at once, would count thousands). The loop turns in between are
            // counted too: a retry costs a timer and an accept, a few turns each; an accept
            // re-armed on every completion would spin through thousands.
            long turns = 0;
            REQUIRE(run_until(loop, [&] {
                ++turns;
                return log.count >= 2;
            }));
            CHECK(log.count == 2);
            CAPTURE(turns);
            CHECK(turns <= 10 * (5.0 / 0.25 + 1));
            const long retries = more_since(log.messages[1]);
            CAPTURE(log.messages[1]);
            CHECK(retries >= 1);
            CHECK(retries <= 5.0 / 0.25 + 1);
            CHECK(ev.made == 0);
            // An fd comes free: the next retry accepts the waiting connection.
            exhausted.release(2);
            REQUIRE(run_until(loop, [&] { return ev.made == 1; }));
        }
        const char msg[] = "after the limit";
        REQUIRE(::send(client, msg, sizeof msg - 1, 0) == static_cast<ssize_t>(sizeof msg - 1));
        REQUIRE(run_until(loop, [&] { return ev.data == msg; }));
        ::close(client);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 2);  // no report after the recovery
        CHECK(ev.order_ok);
        server->close();
        run(loop, server->wait_closed());
    }
}
