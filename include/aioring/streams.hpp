// SPDX-License-Identifier: Apache-2.0
// asyncio's streams: StreamReader and StreamWriter over any stream transport, through a
// protocol adapter (StreamReaderProtocol); open_connection, start_server and the Unix variants.
// StreamWriter::drain() is pause_writing/resume_writing turned into an awaitable.
//
// Lifetimes: StreamReader and StreamWriter are cheap, copyable handles sharing one connection
// state, so a coroutine that takes them by value (as start_server's callback does) can never
// see them dangle. The connection stays open until closed, or until the last StreamWriter
// handle goes away (then it is closed, as asyncio does for a forgotten writer).
#pragma once

#include <aioring/address.hpp>
#include <aioring/coro.hpp>
#include <aioring/loop.hpp>
#include <aioring/server.hpp>
#include <aioring/task.hpp>
#include <aioring/transport.hpp>

#include <any>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace aioring {

constexpr std::size_t default_stream_limit = 64 * 1024;

namespace detail {
struct HandlerSet;

// Where a waiting read(), read_into() or readexactly() wants its bytes: the data that arrives
// while it waits is copied straight there, not through the reader's buffer.
// read_view() has no destination: it borrows the transport's bytes (`view`), and only when its
// task is resumed at once from data_received (see StreamState::resume_reader), while they are
// still valid.
struct ReadTarget {
    std::string* out = nullptr;
    std::size_t max = 0;  // out may grow to this size
    bool append = false;  // readexactly: add to out; read and read_into: replace it
    std::size_t got = 0;  // bytes placed in out (or borrowed into view) while waiting
    bool borrow = false;  // read_view: no out, `view` instead
    std::string_view view;
};

// One connection's stream state, shared by its StreamReader and StreamWriter handles and fed by
// its StreamReaderProtocol. Defined here so that the awaiters' fast paths (data already
// buffered, nothing to drain) are inline; what waits or wakes is in streams.cpp.
class StreamState {
public:
    explicit StreamState(std::size_t limit);

    // ---- reader side
    std::size_t buffered() const { return buf_.size() - pos_; }
    std::string_view view() const { return std::string_view(buf_).substr(pos_); }

    // `from_transport`: called by StreamReaderProtocol::data_received, where the waiting reader
    // may be resumed directly (see resume_reader).
    void feed_data(std::string_view d, bool from_transport = false);
    // StreamReaderProtocol::data_received: feed_data(d, true), with the ping-pong's case first
    // (a read_view waits on an empty buffer and takes all of `d`).
    void feed_from_transport(std::string_view d);
    void pause_over_limit();

    // While writing is paused and no task waits to read, reading pauses too: what the peer
    // sends meanwhile waits in the transport (a socket transport keeps a few receive buffers as
    // they are) instead of being copied into the reader's buffer, and an echo's read then gets
    // it from the transport's buffer, which its write sends without a copy. A read that waits,
    // resume_writing, start_tls and the connection's end lift it, so reading never stays paused
    // for a task that reads. Only on a plain stream transport, socket or pipe (can_hold_): a TLS
    // transport must go on reading for its handshake (and the protocol's own records) to let
    // writes out.
    void hold_for_writer();
    void release_writer_hold();

    // Resumes the waiting reader now, on this stack, instead of through the loop's ready queue.
    // The rule that makes this safe: it happens only from data_received (a completion's own
    // dispatch), never while another direct resumption of this reader runs (resuming_), and the
    // reader's task then runs as if it were that data_received: everything it can do
    // synchronously (write, pause or resume reading, close, abort, start_tls) is something a
    // protocol may do inside data_received, and no transport calls back into data_received from
    // inside such a call (resume_reading delivers what it held from the loop). So the protocol
    // callback is never re-entered. Wake-ups from anywhere else (feed_data called by user code,
    // EOF, errors, connection_lost) go through the ready queue as before.
    bool can_resume_here() const;
    void resume_reader();
    void feed_eof();
    void set_exception(std::exception_ptr e);
    // After the reader took bytes: reuse the buffer and resume reading below the limit.
    // `lent`: read_view's bytes, which must stay where they are until it next suspends (the
    // next feed_data resets the buffer then).
    void consume(std::size_t n, bool lent = false);
    void throw_if_error() const {
        if (error_) std::rethrow_exception(error_);
    }

    // ---- the connection
    void attach(Transport& t);
    void lost(std::error_code ec);
    [[noreturn]] void throw_lost() const;

    std::string buf_;
    std::size_t pos_ = 0;
    std::size_t limit_;
    bool eof_ = false;
    bool read_paused_ = false;
    bool writer_hold_ = false;  // reading paused by hold_for_writer
    bool can_hold_ = false;     // a plain stream transport (socket or pipe), not TLS
    std::exception_ptr error_;
    WaitList readers_;
    ReadTarget* target_ = nullptr;  // the waiting reader's destination, if it has one
    bool resuming_ = false;         // inside resume_reader()

    Transport* transport_ = nullptr;  // valid from connection_made until connection_lost
    EventLoop* loop_ = nullptr;
    SocketAddress peername_;
    SocketAddress sockname_;
    bool write_paused_ = false;
    bool lost_ = false;
    std::error_code lost_error_;
    WaitList drainers_;
    WaitList closers_;
    int writer_handles_ = 0;
    bool server_side_ = false;            // made by start_server: start_tls takes the server side
    std::weak_ptr<HandlerSet> handlers_;  // start_server's, which close() cancels
};

// The awaiters' checks: inline where nothing waits, wakes or fails (the ping-pong's path);
// the rest is out of line (the *_slow and *_fail functions in streams.cpp).
inline bool read_ready(const StreamState& s) { return s.error_ || s.eof_ || s.buffered() != 0; }
void read_wait_slow(StreamState& s, Waiter& w, std::coroutine_handle<> h, TaskContext& ctx,
                    ReadTarget* t);
// Suspends a read until data, EOF or an error. With a target, what arrives meanwhile goes there.
inline void read_wait(StreamState& s, Waiter& w, std::coroutine_handle<> h, TaskContext& ctx,
                      ReadTarget* t) {
    // Another reader waiting (an error), or reading paused: the slow path sorts them out.
    if (!s.readers_.empty() || s.read_paused_ || s.writer_hold_)
        return read_wait_slow(s, w, h, ctx, t);
    w.suspend(s.readers_, h, ctx);
    if (t != nullptr && s.buffered() == 0) s.target_ = t;
}
// A read's awaiter destroyed while it waits (its task's frame went away): forget its target.
inline void read_forget(StreamState& s, ReadTarget& t) {
    if (s.target_ == &t) s.target_ = nullptr;
}
[[noreturn]] void read_fail(StreamState& s, bool cancelled, ReadTarget* t);
// After a wait, or at once: throws CancelledError (if the task was cancelled) or the error the
// transport reported; bytes that went to `t` meanwhile are put back into the reader's buffer.
inline void read_check(StreamState& s, Waiter* w, ReadTarget* t) {
    if (t != nullptr) read_forget(s, *t);
    const bool cancelled = w && w->resumed();
    if (cancelled || s.error_) read_fail(s, cancelled, t);
}
std::string read_take(StreamState& s, std::size_t n);
std::size_t read_take_into(StreamState& s, std::string& out, std::size_t n);
std::string_view read_take_view(StreamState& s, std::size_t n);
Task<std::string> read_all(std::shared_ptr<StreamState> s);

enum class WriterWait { drain, closed };
inline bool writer_ready(const StreamState& s, WriterWait kind) {
    if (s.lost_) return true;
    if (kind == WriterWait::closed) return s.transport_ == nullptr;
    if (s.transport_ == nullptr) return true;  // a reader-only state: nothing to drain
    // A closing transport never resumes writing: wait for connection_lost, then raise
    // (asyncio#263: a drain that never yields spins forever).
    if (s.transport_->is_closing()) return false;
    return !s.write_paused_;
}
void writer_wait(StreamState& s, WriterWait kind, Waiter& w, std::coroutine_handle<> h,
                 TaskContext& ctx);
void writer_check_slow(StreamState& s, WriterWait kind, Waiter* w);
inline void writer_check(StreamState& s, WriterWait kind, Waiter* w) {
    // Not waited and not lost: nothing to raise (lost_error_ is only set once lost_ is).
    if (w != nullptr || s.lost_) writer_check_slow(s, kind, w);
}
}  // namespace detail

// `co_await reader.read(n)`: up to n bytes (at least one unless at EOF); n < 0 reads to EOF.
class [[nodiscard]] ReadAwaiter {
public:
    ReadAwaiter(std::shared_ptr<detail::StreamState> s, std::ptrdiff_t n)
        : s_(std::move(s)), n_(n) {}
    ReadAwaiter(ReadAwaiter&&) = default;  // before it suspends
    ReadAwaiter& operator=(ReadAwaiter&&) = delete;
    ~ReadAwaiter() {
        if (waiting_) detail::read_forget(*s_, t_);
    }
    bool await_ready() const { return n_ >= 0 && (n_ == 0 || detail::read_ready(*s_)); }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) {
        if (n_ < 0) {  // a loop of reads: delegate to a task
            all_ = detail::read_all(s_);
            return typename Task<std::string>::Awaiter{all_.handle()}.await_suspend(h);
        }
        t_ = {&result_, static_cast<std::size_t>(n_), false, 0};
        detail::read_wait(*s_, w_, h, detail::require_context(h, "StreamReader::read()"), &t_);
        waiting_ = true;
        return std::noop_coroutine();
    }
    std::string await_resume() {
        if (all_.valid()) return typename Task<std::string>::Awaiter{all_.handle()}.await_resume();
        const bool waited = std::exchange(waiting_, false);
        detail::read_check(*s_, waited ? &w_ : nullptr, waited ? &t_ : nullptr);
        if (n_ == 0) return {};
        if (t_.got != 0) return std::move(result_);
        return detail::read_take(*s_, static_cast<std::size_t>(n_));
    }

private:
    std::shared_ptr<detail::StreamState> s_;
    std::ptrdiff_t n_;
    detail::Waiter w_;
    detail::ReadTarget t_;
    bool waiting_ = false;
    std::string result_;
    Task<std::string> all_;
};

// `co_await reader.read_into(buf, n)`: read(n) into `buf` (replacing its contents, reusing its
// memory); returns the byte count, 0 at EOF. The allocation-free form of read() for loops:
// bytes that arrive while it waits are copied from the transport straight into `buf`, and when
// it takes all the reader holds, `buf` and the reader's buffer trade memory instead of copying.
// If it raises, no byte is lost (they go back to the reader) but `buf`'s contents are
// unspecified.
class [[nodiscard]] ReadIntoAwaiter {
public:
    ReadIntoAwaiter(detail::StreamState& s, std::string& out, std::size_t n)
        : s_(&s), out_(&out), n_(n) {}
    ReadIntoAwaiter(const ReadIntoAwaiter&) = default;  // before it suspends
    ReadIntoAwaiter& operator=(const ReadIntoAwaiter&) = delete;
    ~ReadIntoAwaiter() {
        if (waiting_) detail::read_forget(*s_, t_);
    }
    bool await_ready() const { return n_ == 0 || detail::read_ready(*s_); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        t_ = {out_, n_, false, 0};
        detail::read_wait(*s_, w_, h, detail::require_context(h, "StreamReader::read_into()"), &t_);
        waiting_ = true;
    }
    std::size_t await_resume() {
        const bool waited = std::exchange(waiting_, false);
        detail::read_check(*s_, waited ? &w_ : nullptr, waited ? &t_ : nullptr);
        if (t_.got != 0) return t_.got;
        return detail::read_take_into(*s_, *out_, n_);
    }

private:
    detail::StreamState* s_;
    std::string* out_;
    std::size_t n_;
    detail::Waiter w_;
    detail::ReadTarget t_;
    bool waiting_ = false;
};

// `co_await reader.read_view(n)`: read(n) without a copy: a view of up to n bytes (empty at
// EOF) that stays valid until the task next suspends or uses the reader again. When the read
// waited, it is resumed from the transport's data_received with a view of the bytes being
// delivered (a receive buffer of the transport's), so a write() of it before the next
// suspension is a write from that buffer, which the socket transport sends without copying;
// otherwise it is a view of the reader's buffer. Raising, it loses no byte.
class [[nodiscard]] ReadViewAwaiter {
public:
    ReadViewAwaiter(detail::StreamState& s, std::size_t n) : s_(&s), n_(n) {}
    ReadViewAwaiter(const ReadViewAwaiter&) = default;  // before it suspends
    ReadViewAwaiter& operator=(const ReadViewAwaiter&) = delete;
    ~ReadViewAwaiter() {
        if (waiting_) detail::read_forget(*s_, t_);
    }
    bool await_ready() const { return n_ == 0 || detail::read_ready(*s_); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        t_.max = n_;
        t_.borrow = true;
        detail::read_wait(*s_, w_, h, detail::require_context(h, "StreamReader::read_view()"), &t_);
        waiting_ = true;
    }
    std::string_view await_resume() {
        const bool waited = std::exchange(waiting_, false);
        detail::read_check(*s_, waited ? &w_ : nullptr, waited ? &t_ : nullptr);
        if (t_.got != 0) return t_.view;
        return detail::read_take_view(*s_, n_);
    }

private:
    detail::StreamState* s_;
    std::size_t n_;
    detail::Waiter w_;
    detail::ReadTarget t_;
    bool waiting_ = false;
};

// `co_await writer.drain()` / `co_await writer.wait_closed()`.
class [[nodiscard]] WriterAwaiter {
public:
    WriterAwaiter(detail::StreamState& s, detail::WriterWait kind) : s_(&s), kind_(kind) {}
    bool await_ready() const { return detail::writer_ready(*s_, kind_); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        waited_ = true;
        detail::writer_wait(*s_, kind_, w_, h, detail::require_context(h, "StreamWriter"));
    }
    void await_resume() { detail::writer_check(*s_, kind_, waited_ ? &w_ : nullptr); }

private:
    detail::StreamState* s_;
    detail::WriterWait kind_;
    detail::Waiter w_;
    bool waited_ = false;
};

// The awaiters of read_into, read_view, drain and wait_closed refer to the connection state
// through the handle that made them: await them in the expression that makes them (as in
// `co_await reader.read_view(n)`), or while that handle, or a copy of it, lives.
//
// StreamReader: a buffer fed by the transport. Reads raise the transport's error (once the
// connection was lost with one) before anything else, as asyncio's do. Reading from the
// transport pauses while the buffer holds more than 2 * limit bytes and resumes once it is
// consumed down to the limit. Only one task may wait in a read at a time.
class StreamReader {
public:
    // A reader without a transport, fed with feed_data/feed_eof.
    explicit StreamReader(std::size_t limit = default_stream_limit);
    explicit StreamReader(std::shared_ptr<detail::StreamState> s) : s_(std::move(s)) {}

    // Up to n bytes, waiting for at least one; n < 0: everything up to EOF; "" at EOF.
    ReadAwaiter read(std::ptrdiff_t n = -1) const { return ReadAwaiter(s_, n); }
    ReadIntoAwaiter read_into(std::string& out, std::size_t n) const {
        return ReadIntoAwaiter(*s_, out, n);
    }
    // read(n) as a view of the bytes, valid until the task next suspends or uses the reader:
    // an echo's `write(co_await reader.read_view(n))` copies nothing (see ReadViewAwaiter).
    ReadViewAwaiter read_view(std::size_t n) const { return ReadViewAwaiter(*s_, n); }
    // Up to and including "\n"; at EOF what is left (maybe ""). Over the limit:
    // LimitOverrunError (the line is discarded).
    Task<std::string> readline() const;
    // Exactly n bytes, or IncompleteReadError (with the partial data) at EOF.
    Task<std::string> readexactly(std::size_t n) const;
    // Up to and including `separator`. LimitOverrunError if the limit is reached without it
    // (the data stays buffered), IncompleteReadError (with all of it) at EOF.
    Task<std::string> readuntil(std::string separator = "\n") const;
    // asyncio 3.13: several separators; the shortest chunk ending with any of them.
    Task<std::string> readuntil(std::vector<std::string> separators) const;
    // EOF was fed and the buffer is empty.
    bool at_eof() const;
    std::exception_ptr exception() const;
    std::size_t limit() const;

    void feed_data(std::string_view data) const;
    void feed_eof() const;
    void set_exception(std::exception_ptr e) const;

    const std::shared_ptr<detail::StreamState>& state() const { return s_; }

private:
    std::shared_ptr<detail::StreamState> s_;
};

// StreamWriter: writes go to the transport's buffer at once; drain() waits while the transport
// has paused writing (every waiter resumes at resume_writing), and raises the connection's
// error once it is lost (a closing transport: drain yields until connection_lost, then raises).
class StreamWriter {
public:
    StreamWriter() = default;
    explicit StreamWriter(std::shared_ptr<detail::StreamState> s);
    StreamWriter(const StreamWriter& o);
    StreamWriter(StreamWriter&& o) noexcept : s_(std::move(o.s_)) {}
    StreamWriter& operator=(StreamWriter o) noexcept {
        std::swap(s_, o.s_);
        return *this;
    }
    ~StreamWriter();

    void write(std::string_view data) const {
        if (s_->transport_) s_->transport_->write(data);
    }
    void write(std::string&& data) const;
    void write(const char* data) const { write(std::string_view(data)); }
    void writelines(std::span<const std::string_view> chunks) const;
    void writelines(std::initializer_list<std::string_view> chunks) const {
        writelines(std::span<const std::string_view>(chunks.begin(), chunks.size()));
    }
    WriterAwaiter drain() const { return WriterAwaiter(*s_, detail::WriterWait::drain); }
    void write_eof() const;
    bool can_write_eof() const;
    void close() const;
    bool is_closing() const;
    // Done once the connection is lost; raises the error it was lost with, if any.
    WriterAwaiter wait_closed() const { return WriterAwaiter(*s_, detail::WriterWait::closed); }
    // The transport's extra info (peername, sockname, ...); peername and sockname stay
    // available after the connection is lost.
    std::any get_extra_info(std::string_view name, std::any default_value = {}) const;
    template <class T>
    std::optional<T> extra(std::string_view name) const {
        std::any v = get_extra_info(name);
        if (auto* p = std::any_cast<T>(&v)) return *p;
        return std::nullopt;
    }
    // The transport; null once the connection is lost (the pointer is valid until then).
    Transport* transport() const;
    // asyncio 3.11's start_tls: upgrades the connection to TLS in place, completing after the
    // handshake; this writer and its reader then carry plaintext over TLS (the transport is the
    // TLS one from the call on: writes made during the handshake go out after it). A connection
    // from start_server takes the server side, as asyncio infers it; others the client side
    // unless options.server_side. The reader must hold no unread bytes, or std::logic_error:
    // they came in plaintext and must not pass for part of the TLS session (the STARTTLS
    // injection bug). A failed handshake closes the connection and throws SslError; cancelling
    // aborts the connection.
    Task<void> start_tls(std::shared_ptr<SslContext> sslcontext,
                         StartTlsOptions options = {}) const;

    // asyncio's loop.sendfile on this writer's transport (EventLoop::sendfile): the bytes
    // sent. What was written before goes first, what is written meanwhile after it.
    Task<std::size_t> sendfile(int fd, std::int64_t offset = 0,
                               std::optional<std::int64_t> count = std::nullopt,
                               bool fallback = true) const;

    const std::shared_ptr<detail::StreamState>& state() const { return s_; }

private:
    std::shared_ptr<detail::StreamState> s_;
};

struct StreamPair {
    StreamReader reader;
    StreamWriter writer;
};

// start_server's callback: called for each connection, in a task of its own, with handles to
// that connection. An exception escaping it goes to the loop's exception handler and closes
// that connection only.
using ClientConnected = std::function<Task<void>(StreamReader, StreamWriter)>;

// The StreamReader's protocol: feeds the reader, turns pause/resume_writing into drain(), and
// for a server, runs the client callback once connected.
class StreamReaderProtocol final : public Protocol {
public:
    StreamReaderProtocol(std::shared_ptr<detail::StreamState> s,
                         std::shared_ptr<const ClientConnected> client_connected = nullptr);
    ~StreamReaderProtocol() override;
    void connection_made(Transport& transport) override;
    void data_received(std::string_view data) override;
    bool eof_received() override;
    void connection_lost(std::error_code ec) override;
    void pause_writing() override;
    void resume_writing() override;

private:
    std::shared_ptr<detail::StreamState> s_;
    std::shared_ptr<const ClientConnected> client_connected_;
};

// `auto [reader, writer] = co_await open_connection(host, port);`
Task<StreamPair> open_connection(std::string host, std::uint16_t port,
                                 std::size_t limit = default_stream_limit,
                                 ConnectOptions options = {});
Task<StreamPair> open_unix_connection(std::string path, std::size_t limit = default_stream_limit);
// Returns the same Server as create_server.
Task<std::shared_ptr<Server>> start_server(ClientConnected client_connected, std::string host,
                                           std::uint16_t port,
                                           std::size_t limit = default_stream_limit,
                                           ServerOptions options = {});
Task<std::shared_ptr<Server>> start_unix_server(ClientConnected client_connected, std::string path,
                                                std::size_t limit = default_stream_limit,
                                                ServerOptions options = {});

}  // namespace aioring
