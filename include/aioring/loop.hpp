// SPDX-License-Identifier: Apache-2.0
// EventLoop: asyncio's event loop API over one io_uring, for one thread.
// One iteration: submit and wait (one io_uring_enter, bounded by the nearest timer), dispatch
// completions, move due timers to the ready queue, run the callbacks that were ready when the
// phase began (FIFO; callbacks they schedule wait for the next iteration).
#pragma once

#include <aioring/address.hpp>
#include <aioring/callback.hpp>
#include <aioring/datagram.hpp>
#include <aioring/error.hpp>
#include <aioring/future.hpp>
#include <aioring/subprocess.hpp>
#include <aioring/task.hpp>
#include <aioring/transport.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aioring {

namespace detail {
class LoopCore;
struct HandleState;
}  // namespace detail
class Server;
class SslContext;  // <aioring/ssl.hpp>

// What the exception handler receives (asyncio's context dict, as a struct).
struct ExceptionContext {
    std::string message;
    std::exception_ptr exception;              // may be null
    const BaseTransport* transport = nullptr;  // the transport involved, if any
    const BaseProtocol* protocol = nullptr;    // its protocol, when a protocol callback threw
};
using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

// How much a message of the loop's log matters (Python's logging levels).
enum class LogLevel { debug, info, warning, error };
const char* to_string(LogLevel);
// Receives every message the loop logs (the default exception handler's lines, debug-mode
// reports, warnings); runs on the loop's thread.
using LogHandler = std::function<void(LogLevel, std::string_view message)>;

// A scheduled callback; cancel() before it runs and it never runs.
class Handle {
public:
    Handle() = default;
    explicit Handle(std::shared_ptr<detail::HandleState> s) : s_(std::move(s)) {}
    void cancel();
    bool cancelled() const;

protected:
    std::shared_ptr<detail::HandleState> s_;
};

class TimerHandle : public Handle {
public:
    using Handle::Handle;
    // The loop time (EventLoop::time()) at which it is due.
    double when() const;
};

struct AddrInfo {
    int family = 0;
    int socktype = 0;
    int protocol = 0;
    std::string canonname;
    SocketAddress address;
};

// What create_connection and friends return: the transport (kept alive by this handle) and the
// protocol the factory made (owned by the transport).
template <class P = BaseProtocol>
struct Connection {
    std::shared_ptr<Transport> transport;
    P* protocol = nullptr;
    // The protocol as the type the factory made.
    template <class Q>
    Q& as() const {
        return dynamic_cast<Q&>(*protocol);
    }
};

// What create_datagram_endpoint returns: the transport (kept alive by this handle) and the
// protocol the factory made (owned by the transport).
template <class P = DatagramProtocol>
struct DatagramConnection {
    std::shared_ptr<DatagramTransport> transport;
    P* protocol = nullptr;
    // The protocol as the type the factory made.
    template <class Q>
    Q& as() const {
        return dynamic_cast<Q&>(*protocol);
    }
};

using ProtocolFactory = std::function<std::unique_ptr<BaseProtocol>()>;

struct ConnectOptions {
    // Not an aggregate: `ConnectOptions{}` in co_await is safe with GCC 12 (README).
    ConnectOptions() = default;
    int family = AF_UNSPEC;
    int flags = 0;  // getaddrinfo flags
    std::optional<std::pair<std::string, std::uint16_t>> local_addr;
    int sock = -1;        // an already connected socket to wrap
    bool nodelay = true;  // TCP_NODELAY, as asyncio sets it
    // TLS: with `ssl` set the connection completes after the handshake, and the transport is a
    // TLS transport. server_hostname (default: the host) is sent as SNI and checked against the
    // certificate when the context's check_hostname is on.
    std::shared_ptr<SslContext> ssl;
    std::string server_hostname;
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
    // Happy eyeballs (RFC 8305), as asyncio 3.8+: with a delay (seconds; RFC 8305 suggests
    // 0.25) the next address is tried once the latest attempt has been pending that long, or
    // at once when it fails; the first connection wins and the other attempts are cancelled
    // and their sockets closed. Unset: one address after the other. Negative or NaN throws
    // std::invalid_argument.
    std::optional<double> happy_eyeballs_delay;
    // How many addresses of the first family go first before the order alternates between the
    // families (RFC 8305's "First Address Family Count"); 0: getaddrinfo's order. Unset: 1
    // when happy_eyeballs_delay is set, else 0. Negative throws std::invalid_argument.
    std::optional<int> interleave;
};

struct ServerOptions {
    // Not an aggregate: `ServerOptions{}` in co_await is safe with GCC 12 (README).
    ServerOptions() = default;
    int family = AF_UNSPEC;
    int flags = AI_PASSIVE;
    int backlog = 100;
    std::optional<bool> reuse_address;  // default: true on POSIX, as asyncio
    bool reuse_port = false;
    bool start_serving = true;
    // TLS: every accepted connection does the handshake first; the protocol's connection_made
    // follows it. A failed handshake goes to the loop's exception handler as "SSL handshake
    // failed" (the context's transport gives the peername) and the protocol is not used.
    std::shared_ptr<SslContext> ssl;
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
};

// start_tls's parameters (asyncio's keyword arguments).
struct StartTlsOptions {
    // Not an aggregate: `StartTlsOptions{}` in co_await is safe with GCC 12 (README).
    StartTlsOptions() = default;
    bool server_side = false;
    std::string server_hostname;
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
    // Bytes the protocol had already read past the plain-text part: they belong to the TLS
    // stream and are fed to it first.
    std::string initial_data;
};

enum class RingMode { defer_taskrun, coop_taskrun, basic };
const char* to_string(RingMode);

// Where the loop's operations run: io_uring, or an epoll readiness loop that emulates it where
// io_uring cannot be set up (a seccomp profile refusing io_uring_setup, kernel.io_uring_disabled,
// a kernel before 5.19). `automatic` tries io_uring first.
enum class Backend { automatic, io_uring, epoll };
const char* to_string(Backend);

struct LoopOptions {
    // Not an aggregate: `LoopOptions{}` in co_await is safe with GCC 12 (README).
    LoopOptions() = default;
    // AIORING_BACKEND=auto|io_uring|epoll decides where this is left `automatic`.
    Backend backend = Backend::automatic;
    RingMode strongest_ring_mode = RingMode::defer_taskrun;  // AIORING_RING_MODE caps it
    unsigned sq_entries = 256;
    unsigned cq_entries = 16384;
    unsigned buffer_count = 1024;  // provided-buffer ring for multishot receive
    unsigned buffer_size = 16 * 1024;
    // Stream sockets receive into a ring of large buffers that the kernel consumes
    // incrementally (Linux 6.12): a 64-byte message takes 64 bytes of a buffer, a burst fills
    // whole ones, so bulk data needs few completions. Without it (an older kernel,
    // AIORING_NO_INCREMENTAL=1, or false here) streams share the ring above with datagrams.
    bool incremental_buffers = true;
    unsigned stream_buffer_count = 64;
    unsigned stream_buffer_size = 256 * 1024;
    // asyncio's debug mode (README, "Debug mode"): slow callbacks, transports and servers left
    // open, tasks destroyed while pending are logged. AIORING_DEBUG (non-empty, not "0") turns
    // it on for every loop too.
    bool debug = false;
    // In debug mode, a callback or completion that runs at least this long is logged (seconds).
    double slow_callback_duration = 0.1;
};

class EventLoop {
public:
    EventLoop();
    explicit EventLoop(const LoopOptions& options);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // The backend that runs: io_uring or epoll, never automatic.
    Backend backend() const;
    // Why io_uring was not used: empty when it runs, or when epoll was asked for.
    std::string backend_fallback_reason() const;
    // The ring set-up mode the kernel granted (basic with the epoll backend).
    RingMode ring_mode() const;
    // Stream sockets receive into incrementally consumed buffers (LoopOptions::incremental_buffers
    // asked for them and the kernel granted them).
    bool incremental_buffers() const;

    // Monotonic time in seconds.
    double time() const;
    Handle call_soon(Callback cb);
    TimerHandle call_later(double delay, Callback cb);
    TimerHandle call_at(double when, Callback cb);
    // The only method safe to call from another thread.
    void call_soon_threadsafe(Callback cb);

    void run_forever();
    template <class T>
    T run_until_complete(Future<T> f);
    template <class T>
    T run_until_complete(Task<T> t) {
        return run_until_complete(create_task(std::move(t)));
    }
    // Lets the current iteration finish, then run_forever returns.
    void stop();
    // Runs `hook` on the loop after every iteration from now on (an empty one: none) and returns
    // the hook it replaces. A test waits on a condition this way: checked after each
    // iteration, it needs no polling timer, so only real events wake the loop.
    std::function<void()> set_iteration_hook(std::function<void()> hook);
    // Closes the loop: no callback runs after it. Throws if it is running.
    void close();
    bool is_running() const;
    bool is_closed() const;

    template <class T = void>
    Future<T> create_future() {
        return Future<T>(*this);
    }
    // Schedules the task on this loop, which keeps it alive until it is done.
    template <class T>
    Future<T> create_task(Task<T> t) {
        return detail::spawn(*this, std::move(t));
    }

    void set_exception_handler(ExceptionHandler handler);  // empty: back to the default
    const ExceptionHandler& get_exception_handler() const;
    void call_exception_handler(const ExceptionContext& context);
    // Logs the context at LogLevel::error: the message, the exception's what(), and the
    // transport's peer address when there is one.
    void default_exception_handler(const ExceptionContext& context);

    // Replaces where the loop's messages go; empty: back to the default, one line on stderr
    // ("aioring: message", with the level before the message unless it is an error).
    void set_log_handler(LogHandler handler);
    void log(LogLevel level, std::string_view message);

    // asyncio's debug mode (LoopOptions::debug); may be changed at any time.
    bool get_debug() const;
    void set_debug(bool enabled);
    // Seconds; negative or NaN throws std::invalid_argument.
    double slow_callback_duration() const;
    void set_slow_callback_duration(double seconds);

    // The handler runs on the loop (through a signalfd on the ring). Replaces an earlier one.
    void add_signal_handler(int sig, Callback handler);
    bool remove_signal_handler(int sig);

    // Resolves on a worker thread; fails with std::system_error in the EAI category.
    Future<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port, int family = 0,
                                              int type = 0, int protocol = 0, int flags = 0);

    Future<Connection<>> create_connection(ProtocolFactory factory, std::string host,
                                           std::uint16_t port, ConnectOptions options = {});
    Future<Connection<>> create_unix_connection(ProtocolFactory factory, std::string path);
    // The same with options: only the TLS ones apply (ssl, server_hostname, timeouts). With
    // check_hostname on, server_hostname is required.
    Future<Connection<>> create_unix_connection(ProtocolFactory factory, std::string path,
                                                ConnectOptions options);
    // Wraps an already connected (or accepted) socket; the transport takes ownership of `fd`.
    Future<Connection<>> connect_accepted_socket(ProtocolFactory factory, int fd);
    // An empty host: every interface, IPv4 and IPv6.
    Future<std::shared_ptr<Server>> create_server(ProtocolFactory factory, std::string host,
                                                  std::uint16_t port, ServerOptions options = {});
    Future<std::shared_ptr<Server>> create_server(ProtocolFactory factory,
                                                  std::vector<std::string> hosts,
                                                  std::uint16_t port, ServerOptions options = {});
    Future<std::shared_ptr<Server>> create_unix_server(ProtocolFactory factory, std::string path,
                                                       ServerOptions options = {});
    // Upgrades a connected stream transport to TLS in place and completes after the handshake
    // with the TLS transport. The transport's protocol moves over to it (its connection_made is
    // not called again: use the returned handle, not the old one); bytes already received and
    // the paused-writing state carry over. A failed handshake closes the connection, calls the
    // protocol's connection_lost with the error, and fails the future.
    Future<std::shared_ptr<Transport>> start_tls(std::shared_ptr<Transport> transport,
                                                 std::shared_ptr<SslContext> sslcontext,
                                                 StartTlsOptions options = {});
    // A UDP or Unix datagram endpoint; the factory must make a DatagramProtocol.
    Future<DatagramConnection<>> create_datagram_endpoint(ProtocolFactory factory,
                                                          DatagramEndpointOptions options = {});

    // A child process whose standard streams are pipe transports; the factory must make a
    // SubprocessProtocol. A command that cannot be started fails with the errno's
    // std::system_error (ENOENT: "No such file or directory"), leaving no zombie.
    Future<SubprocessConnection> subprocess_exec(ProtocolFactory factory,
                                                 std::vector<std::string> args,
                                                 SubprocessOptions options = {});
    // `/bin/sh -c command`.
    Future<SubprocessConnection> subprocess_shell(ProtocolFactory factory, std::string command,
                                                  SubprocessOptions options = {});
    // A pipe, FIFO, character device (or file) as a read or a write transport; it takes
    // ownership of `fd`. The factory must make a Protocol or a BufferedProtocol. Writing to a
    // pipe whose reader is gone gives EPIPE: these ignore SIGPIPE process-wide (as Python does).
    Future<ReadPipeConnection> connect_read_pipe(ProtocolFactory factory, int fd);
    Future<WritePipeConnection> connect_write_pipe(ProtocolFactory factory, int fd);

    // asyncio's loop.sendfile: sends the regular file `fd` from `offset`, `count` bytes or (0
    // or none) to its end, over a TCP, Unix stream or TLS transport, and completes with the
    // number of bytes sent. It keeps the transport's write order: what was written before goes
    // first, what is written while it runs goes after it. Plain sockets splice the file into
    // the socket through a pipe (no copy to user space); TLS transports, and where the kernel
    // refuses splice, read the file in chunks and write them (with `fallback` false: TLS throws
    // SendfileNotAvailableError at once, a refused splice fails the future with it). The file
    // position ends just past the bytes sent, even on error. Throws std::invalid_argument for
    // a negative offset or count, a file that is not regular or not open for reading, and
    // std::runtime_error for a closing or unsupported transport (pipes) or a second sendfile
    // on the same transport. An abort or a connection error while it runs fails the future
    // with std::system_error; close() waits for it to finish. See the README's "sendfile".
    Future<std::size_t> sendfile(std::shared_ptr<Transport> transport, int fd,
                                 std::int64_t offset = 0,
                                 std::optional<std::int64_t> count = std::nullopt,
                                 bool fallback = true);

    // Internals for transports.
    detail::LoopCore& core() { return *core_; }

private:
    std::unique_ptr<detail::LoopCore> core_;
};

template <class T>
T EventLoop::run_until_complete(Future<T> f) {
    if (!f.done()) {
        // If the loop stops first, the future finishing later must not stop a later run.
        auto armed = std::make_shared<bool>(true);
        f.add_done_callback([this, armed] {
            if (*armed) stop();
        });
        struct Disarm {
            std::shared_ptr<bool> a;
            ~Disarm() { *a = false; }
        } disarm{armed};
        run_forever();
        if (!f.done()) throw LoopError("Event loop stopped before Future completed.");
    }
    if constexpr (std::is_void_v<T>)
        f.result();
    else
        return std::move(f.result());
}

}  // namespace aioring
