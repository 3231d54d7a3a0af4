// SPDX-License-Identifier: Apache-2.0
// The coroutine API for subprocesses, as asyncio.subprocess has it: create_subprocess_exec and
// create_subprocess_shell return a Process whose pipes are a StreamWriter (stdin) and
// StreamReaders (stdout, stderr). (Apart from subprocess.hpp, which loop.hpp includes.)
#pragma once

#include <aioring/coro.hpp>
#include <aioring/loop.hpp>
#include <aioring/streams.hpp>
#include <aioring/subprocess.hpp>
#include <aioring/task.hpp>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace aioring {

namespace detail {
struct ProcessState;
}

// As SubprocessOptions, but each stream defaults to INHERIT (asyncio's None), and `limit` is the
// StreamReaders' buffer limit.
struct ProcessOptions : SubprocessOptions {
    ProcessOptions() {
        stdin = subprocess::INHERIT;
        stdout = subprocess::INHERIT;
        stderr = subprocess::INHERIT;
    }
    std::size_t limit = default_stream_limit;
};

// A child process (a handle: copies share it). stdin, stdout and stderr are set for the streams
// that are PIPEs. Dropping every StreamWriter handle to stdin closes the child's stdin.
class Process {
public:
    std::optional<StreamWriter> stdin;
    std::optional<StreamReader> stdout;
    std::optional<StreamReader> stderr;
    int pid = -1;

    // Empty until the child exited; -N when signal N killed it.
    std::optional<int> returncode() const;
    // Waits for the child to exit (and its pipes to close, as asyncio) and returns its
    // returncode. With stdout or stderr a PIPE that nobody reads, the child may block on a full
    // pipe: use communicate() (as asyncio warns).
    Task<int> wait() const;
    // Writes `input` to stdin (then closes it), reads stdout and stderr to EOF, all at once (no
    // deadlock however large each is), waits for the exit; returns (stdout, stderr) — empty for
    // a stream that is not a PIPE. A child that stops reading its stdin is not an error.
    // Cancelling it cancels all three and leaves no operation in flight.
    Task<std::pair<std::string, std::string>> communicate(std::string input = {}) const;
    // Ignored once the child has exited.
    void send_signal(int sig) const;
    void terminate() const;
    void kill() const;
    SubprocessTransport& transport() const { return *transport_; }

    Process(std::shared_ptr<SubprocessTransport> t, std::shared_ptr<detail::ProcessState> s)
        : transport_(std::move(t)), s_(std::move(s)) {}

private:
    std::shared_ptr<SubprocessTransport> transport_;
    std::shared_ptr<detail::ProcessState> s_;
};

// `Process p = co_await create_subprocess_exec({"ls", "-l"}, options);` Fails as
// subprocess_exec does (std::system_error with the errno) when the command cannot start.
Task<Process> create_subprocess_exec(std::vector<std::string> args, ProcessOptions options = {});
// `/bin/sh -c command`.
Task<Process> create_subprocess_shell(std::string command, ProcessOptions options = {});

}  // namespace aioring
