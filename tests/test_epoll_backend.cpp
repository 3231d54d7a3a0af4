// SPDX-License-Identifier: Apache-2.0
// The epoll backend: chosen by LoopOptions::backend or AIORING_BACKEND, reported by
// EventLoop::backend(), and taken by itself where io_uring_setup is refused (a seccomp filter
// in a child process, as Docker's default profile has, or a kernel older than 5.19). The
// transports' behaviour on it is the whole suite's: every suite runs once more with
// AIORING_BACKEND=epoll (tests/CMakeLists.txt).
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cstddef>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

#include "support.hpp"

using namespace testing;

namespace {

Task<void> echo_client(StreamReader reader, StreamWriter writer) {
    std::string buf;
    while (co_await reader.read_into(buf, 64 * 1024)) {
        writer.write(buf);
        co_await writer.drain();
    }
    writer.close();
}

// A TCP echo server on 127.0.0.1 and a client of it on `loop`: what the client reads back.
std::string echo_round_trip(EventLoop& loop, const std::string& message) {
    auto server = run(loop, start_server(echo_client, "127.0.0.1", 0));
    const std::uint16_t port = server->addresses().at(0).port();
    auto reply = run(loop, [](std::uint16_t p, std::string m) -> Task<std::string> {
        auto [r, w] = co_await open_connection("127.0.0.1", p);
        w.write(m);
        co_await w.drain();
        w.write_eof();
        std::string got = co_await r.read(-1);
        w.close();
        co_await w.wait_closed();
        co_return got;
    }(port, message));
    server->close();
    run(loop, server->wait_closed());
    return reply;
}

#if defined(__x86_64__)
constexpr std::uint32_t audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t audit_arch = AUDIT_ARCH_AARCH64;
#endif

// Docker's default seccomp profile in miniature: io_uring_setup fails with EPERM, every other
// system call is allowed. Raw prctl, no libseccomp.
bool refuse_io_uring_setup() {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// The child's verdicts, as exit codes.
enum ChildExit {
    served = 0,
    no_filter = 10,
    setup_allowed,
    not_epoll,
    no_reason,
    wrong_echo,
    threw
};

}  // namespace

TEST_SUITE("epoll backend") {
    TEST_CASE("LoopOptions::backend forces a backend and backend() reports it") {
        ScopedEnv env("AIORING_BACKEND", nullptr);
        {
            LoopOptions o;
            o.backend = Backend::epoll;
            EventLoop loop(o);
            CHECK(loop.backend() == Backend::epoll);
            CHECK(loop.backend_fallback_reason().empty());  // asked for, not fallen back to
            CHECK_FALSE(loop.incremental_buffers());        // not emulated
            CHECK(echo_round_trip(loop, "over epoll") == "over epoll");
        }
        {
            LoopOptions o;
            o.backend = Backend::io_uring;
            EventLoop loop(o);
            CHECK(loop.backend() == Backend::io_uring);
            CHECK(loop.backend_fallback_reason().empty());
        }
        EventLoop loop;
        CHECK(loop.backend() == Backend::io_uring);  // automatic, where the kernel has io_uring
        CHECK(std::string(to_string(Backend::epoll)) == "epoll");
        CHECK(std::string(to_string(loop.backend())) == "io_uring");
    }

    TEST_CASE("AIORING_BACKEND decides where the options leave it automatic") {
        {
            ScopedEnv env("AIORING_BACKEND", "epoll");
            EventLoop loop;
            CHECK(loop.backend() == Backend::epoll);
            LoopOptions o;
            o.backend = Backend::io_uring;  // an explicit choice wins over the environment
            EventLoop forced(o);
            CHECK(forced.backend() == Backend::io_uring);
        }
        {
            ScopedEnv env("AIORING_BACKEND", "io_uring");
            EventLoop loop;
            CHECK(loop.backend() == Backend::io_uring);
        }
        {
            ScopedEnv env("AIORING_BACKEND", "kqueue");
            std::string what;
            try {
                EventLoop loop;
            } catch (const std::invalid_argument& e) {
                what = e.what();
            }
            CHECK(what.find("AIORING_BACKEND must be auto, io_uring or epoll, not 'kqueue'") !=
                  std::string::npos);
        }
    }

    TEST_CASE("a kernel before 5.19 falls back to epoll unless io_uring is asked for") {
        ScopedEnv env("AIORING_BACKEND", nullptr);
        ScopedEnv kernel("AIORING_PRETEND_KERNEL", "5.10");
        {
            EventLoop loop;
            CHECK(loop.backend() == Backend::epoll);
            CHECK(loop.backend_fallback_reason().find("aioring needs Linux 5.19 or later") !=
                  std::string::npos);
            CHECK(echo_round_trip(loop, "old kernel") == "old kernel");
        }
        LoopOptions o;
        o.backend = Backend::io_uring;
        std::string what;
        try {
            EventLoop refused(o);
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what.find("this kernel is 5.10") != std::string::npos);
    }

    TEST_CASE(
        "io_uring_setup refused by a seccomp filter: the loop falls back to epoll and serves") {
        ScopedEnv env("AIORING_BACKEND", nullptr);
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int code = served;
            try {
                io_uring_params p{};
                if (!refuse_io_uring_setup())
                    code = no_filter;
                else if (::syscall(__NR_io_uring_setup, 4, &p) >= 0 || errno != EPERM)
                    code = setup_allowed;
                else {
                    EventLoop loop;
                    if (loop.backend() != Backend::epoll)
                        code = not_epoll;
                    else if (loop.backend_fallback_reason().find("Operation not permitted") ==
                             std::string::npos)
                        code = no_reason;
                    else if (echo_round_trip(loop, std::string(100000, 'x')) !=
                             std::string(100000, 'x'))
                        code = wrong_echo;
                }
            } catch (...) {
                code = threw;
            }
            ::_exit(code);
        }
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == served);
    }
}
