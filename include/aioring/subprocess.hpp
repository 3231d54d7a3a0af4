// SPDX-License-Identifier: Apache-2.0
// Subprocesses and pipes, as asyncio has them: SubprocessTransport and SubprocessProtocol
// (loop.subprocess_exec/subprocess_shell), the options for the child's standard streams, and
// what connect_read_pipe/connect_write_pipe return.
#pragma once

#include <aioring/protocol.hpp>
#include <aioring/transport.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace aioring {

// Where a child's standard stream goes (asyncio.subprocess's constants; any value >= 0 is an fd
// of ours that the child gets as that stream).
namespace subprocess {
constexpr int PIPE = -1;     // a pipe to a pipe transport of the SubprocessTransport
constexpr int STDOUT = -2;   // stderr only: the same as the child's stdout
constexpr int DEVNULL = -3;  // /dev/null
constexpr int INHERIT = -4;  // ours (asyncio's None)
}  // namespace subprocess

// How subprocess_exec/subprocess_shell start the child. It is started with posix_spawn (no
// fork of the parent's memory), with the default signal mask, and SIGPIPE and SIGXFSZ set back
// to their default action (as Python's restore_signals).
struct SubprocessOptions {
    // Not an aggregate: `SubprocessOptions{}` in co_await is safe with GCC 12 (README).
    SubprocessOptions() = default;
    int stdin = subprocess::PIPE;
    int stdout = subprocess::PIPE;
    int stderr = subprocess::PIPE;
    std::optional<std::string> cwd;                         // empty: ours
    std::optional<std::map<std::string, std::string>> env;  // replaces the environment
    bool close_fds = true;  // close every fd above 2 in the child (ours are O_CLOEXEC anyway)
    // close() asks a running child to stop with SIGTERM, and sends SIGKILL if it still runs
    // this many seconds later (0: SIGKILL at once). Negative, NaN or infinite:
    // std::invalid_argument.
    double kill_grace = 3.0;
};

// The protocol of a subprocess; the transport owns it. Call order:
//   connection_made -> (pipe_data_received | pipe_connection_lost | process_exited)* ->
//   connection_lost
// pipe_connection_lost comes once per pipe; process_exited once, before or after the pipes'
// pipe_connection_lost (asyncio documents both orders); connection_lost comes last, after all
// of them, with no error. pause_writing/resume_writing follow the stdin pipe's write buffer.
class SubprocessProtocol : public BaseProtocol {
public:
    virtual void connection_made(SubprocessTransport& /*transport*/) {}
    // `fd` is 1 (stdout) or 2 (stderr); `data` is valid only for the call.
    virtual void pipe_data_received(int /*fd*/, std::string_view /*data*/) {}
    // `fd` 0 (stdin): its transport closed, or broke (EPIPE when the child stopped reading);
    // 1 or 2: EOF (no error) or a read error.
    virtual void pipe_connection_lost(int /*fd*/, std::error_code /*ec*/) {}
    virtual void process_exited() {}
    Kind kind() const final { return Kind::subprocess; }
};

// A running (or exited) child process. The loop keeps it alive until connection_lost has run;
// a handle the user keeps stays safe to call afterwards. The child is reaped exactly once,
// through a pidfd polled on the ring (no SIGCHLD handler, no thread).
class SubprocessTransport : public BaseTransport {
public:
    virtual int get_pid() const = 0;
    // 0: the stdin pipe (a WriteTransport), 1 and 2: the stdout and stderr pipes
    // (ReadTransports); null when that stream is not a pipe. Valid as long as this transport.
    virtual BaseTransport* get_pipe_transport(int fd) const = 0;
    // get_pipe_transport as the type it is: pipe_transport<WriteTransport>(0).
    template <class T>
    T* pipe_transport(int fd) const {
        return dynamic_cast<T*>(get_pipe_transport(fd));
    }
    // Empty until the child exited; -N when signal N killed it (as asyncio).
    virtual std::optional<int> get_returncode() const = 0;
    // Through the pidfd, so never to a recycled pid. Ignored once the child has exited.
    virtual void send_signal(int sig) = 0;
    virtual void terminate() = 0;  // SIGTERM
    virtual void kill() = 0;       // SIGKILL
    // Closes the pipes and, if the child still runs, asks it to stop (terminate(): SIGTERM),
    // then kills it (SIGKILL) when it has not exited after SubprocessOptions::kill_grace
    // seconds. process_exited and connection_lost follow once it has exited and the pipes are
    // closed, whichever signal ended it.
    void close() override = 0;
};

// What subprocess_exec, subprocess_shell, connect_read_pipe and connect_write_pipe return: the
// transport (kept alive by this handle) and the protocol the factory made (owned by the
// transport). `auto [transport, protocol] = co_await loop.subprocess_exec(...)`.
template <class T, class P = BaseProtocol>
struct TransportAndProtocol {
    std::shared_ptr<T> transport;
    P* protocol = nullptr;
    template <class Q>
    Q& as() const {
        return dynamic_cast<Q&>(*protocol);
    }
};
using SubprocessConnection = TransportAndProtocol<SubprocessTransport, SubprocessProtocol>;
using ReadPipeConnection = TransportAndProtocol<ReadTransport>;
using WritePipeConnection = TransportAndProtocol<WriteTransport>;

}  // namespace aioring
