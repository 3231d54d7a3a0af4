// SPDX-License-Identifier: Apache-2.0
// Runs a program as a child with pipes, for tests that check a program's printed lines and exit
// status from outside, as a user would.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

extern char** environ;

namespace testing {

class Process {
public:
    explicit Process(std::vector<std::string> argv) {
        int out[2], err[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        REQUIRE(posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) == 0);
        posix_spawn_file_actions_destroy(&fa);
        ::close(out[1]);
        ::close(err[1]);
        out_ = out[0];
        err_ = err[0];
    }
    ~Process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(out_);
        ::close(err_);
    }
    // Reads stdout until it contains `text` (true) or `timeout` seconds pass / EOF (false).
    bool wait_for_output(const std::string& text, double timeout = 10) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
        while (out.find(text) == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            if (!pump(static_cast<int>(left.count()))) return out.find(text) != std::string::npos;
        }
        return true;
    }
    // Waits for exit (collecting output); the exit status, 128+N for signal N, -1 on timeout.
    int wait(double timeout = 10) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
        while (pump(50) || std::chrono::steady_clock::now() < deadline) {
            int st = 0;
            pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                while (pump(0)) {
                }
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            if (std::chrono::steady_clock::now() >= deadline) break;
        }
        return -1;
    }
    void signal(int sig) { ::kill(pid_, sig); }
    // The port from a "Serving on HOST:PORT" line.
    int serving_port() {
        if (!wait_for_output("Serving on ")) return -1;
        wait_for_output("\n");
        auto pos = out.find("Serving on ");
        auto eol = out.find('\n', pos);
        auto colon = out.rfind(':', eol);
        return std::stoi(out.substr(colon + 1, eol - colon - 1));
    }

    std::string out, err;

private:
    // Reads what is available on stdout/stderr; false once both are at EOF.
    bool pump(int timeout_ms) {
        pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
        int n = ::poll(p, 2, timeout_ms);
        if (n <= 0) return n == 0;
        bool open = false;
        char buf[4096];
        for (int i = 0; i < 2; ++i) {
            if (p[i].revents == 0) {
                open = true;
                continue;
            }
            ssize_t r = ::read(p[i].fd, buf, sizeof buf);
            if (r > 0) {
                (i == 0 ? out : err).append(buf, static_cast<std::size_t>(r));
                open = true;
            }
        }
        return open;
    }
    pid_t pid_ = -1;
    int out_ = -1, err_ = -1;
};

inline std::string example(const std::string& name) {
    return std::string(AIORING_EXAMPLES_DIR) + "/" + name;
}

}  // namespace testing
