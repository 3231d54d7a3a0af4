// SPDX-License-Identifier: Apache-2.0
// Streams over the public Transport API: the connection state shared by StreamReader and
// StreamWriter handles, the StreamReaderProtocol feeding it, and the stream openers.
#include <aioring/streams.hpp>

#include <algorithm>
#include <cassert>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "src/sendfile.hpp"
#include "src/transport_handle.hpp"

namespace aioring {
namespace detail {

// start_server's handler tasks, cancelled by Server::close().
struct HandlerSet {
    std::vector<std::shared_ptr<FutureStateBase>> tasks;
    bool closed = false;
};

StreamState::StreamState(std::size_t limit) : limit_(limit) {
    if (limit == 0) throw std::invalid_argument("limit must be positive");
}

void StreamState::feed_data(std::string_view d, bool from_transport) {
    if (d.empty()) return;
    if (eof_) throw std::logic_error("feed_data after feed_eof");
    bool wake = true;
    if (ReadTarget* t = target_; t != nullptr && t->borrow) {
        // read_view: lend it the bytes, only when they are still valid when it runs (it
        // is resumed below, on this stack); otherwise they go to the buffer.
        if (buffered() == 0 && from_transport && can_resume_here()) {
            const std::size_t k = std::min(t->max, d.size());
            t->view = std::string_view(d.data(), k);
            t->got = k;
            d.remove_prefix(k);
            target_ = nullptr;
        }
    } else if (t != nullptr && buffered() == 0) {
        // A reader waits with its own destination: copy there, not into the buffer.
        const std::size_t room = t->append ? t->max - t->out->size() : t->max;
        const std::size_t k = std::min(room, d.size());
        if (t->append)
            t->out->append(d.data(), k);
        else
            t->out->assign(d.data(), k);
        t->got += k;
        d.remove_prefix(k);
        // readexactly sleeps on until its destination is full.
        if (!t->append || t->out->size() == t->max)
            target_ = nullptr;
        else
            wake = false;
    }
    if (!d.empty()) {
        // Reuse the buffer: drop what was consumed before appending, moving what is left
        // to the front only when the append would not fit otherwise (growing copies too).
        if (pos_ == buf_.size()) {
            buf_.clear();
            pos_ = 0;
        } else if (pos_ != 0 && buf_.size() + d.size() > buf_.capacity()) {
            buf_.erase(0, pos_);
            pos_ = 0;
        }
        buf_.append(d);
    }
    if (wake) {
        if (from_transport && !resuming_)
            resume_reader();
        else
            readers_.wake_one();
    }
    pause_over_limit();
}

// Reading pauses while the buffer holds more than twice the limit.
void StreamState::pause_over_limit() {
    if (transport_ && !read_paused_ && buffered() > 2 * limit_) {
        read_paused_ = true;
        if (!writer_hold_) transport_->pause_reading();
    }
}

void StreamState::feed_from_transport(std::string_view d) {
    ReadTarget* t = target_;
    if (t == nullptr || !t->borrow || d.empty() || d.size() > t->max || buffered() != 0 || eof_ ||
        !can_resume_here())
        return feed_data(d, true);
    // What feed_data does here, without its general cases: lend every byte, resume the reader.
    t->view = d;
    t->got = d.size();
    target_ = nullptr;
    Waiter* w = readers_.take_one();
    resuming_ = true;
    w->h.resume();  // a task's coroutine: its exceptions stay in its promise
    resuming_ = false;
    pause_over_limit();
}

void StreamState::hold_for_writer() {
    if (!can_hold_ || writer_hold_ || read_paused_ || !transport_ || !readers_.empty() ||
        !transport_->is_reading())
        return;
    writer_hold_ = true;
    transport_->pause_reading();
}

void StreamState::release_writer_hold() {
    if (!std::exchange(writer_hold_, false)) return;
    if (transport_ && !read_paused_) transport_->resume_reading();
}

bool StreamState::can_resume_here() const {
    const Waiter* w = readers_.front();
    return !resuming_ && w != nullptr && w->ctx->loop == loop_;
}

void StreamState::resume_reader() {
    Waiter* w = readers_.take_one();
    if (w == nullptr) return;
    if (w->ctx->loop != loop_) {  // not this connection's loop: never resume it here
        post_resume(*w->ctx->loop, w->h);
        return;
    }
    resuming_ = true;
    w->h.resume();  // a task's coroutine: its exceptions stay in its promise
    resuming_ = false;
}

void StreamState::feed_eof() {
    eof_ = true;
    readers_.wake_all();
}

void StreamState::set_exception(std::exception_ptr e) {
    error_ = std::move(e);
    readers_.wake_all();
}

void StreamState::consume(std::size_t n, bool lent) {
    pos_ += n;
    if (pos_ == buf_.size() && !lent) {
        buf_.clear();
        pos_ = 0;
    }
    if (read_paused_ && buffered() <= limit_ && transport_) {
        read_paused_ = false;
        if (!writer_hold_) transport_->resume_reading();
    }
}

void StreamState::attach(Transport& t) {
    transport_ = &t;
    loop_ = &t.get_loop();
    // Only the plain stream transports (socket, pipe) report held writes; TLS does not.
    can_hold_ = t.get_extra_info("held_writes").has_value();
    if (auto a = t.extra<SocketAddress>("peername")) peername_ = *a;
    if (auto a = t.extra<SocketAddress>("sockname")) sockname_ = *a;
}

void StreamState::lost(std::error_code ec) {
    if (ec)
        set_exception(std::make_exception_ptr(std::system_error(ec)));
    else
        feed_eof();
    transport_ = nullptr;
    writer_hold_ = false;
    lost_ = true;
    lost_error_ = ec;
    drainers_.wake_all();
    closers_.wake_all();
}

void StreamState::throw_lost() const {
    throw std::system_error(
        lost_error_ ? lost_error_ : std::make_error_code(std::errc::connection_reset),
        "Connection lost");
}

// ---- read awaiters

// Waits for something new (data, EOF, error). A reader that waits for more while its buffer
// is over the limit would wait forever with reading paused: resume it first.
static void wait_new(StreamState& s, Waiter& w, std::coroutine_handle<> h, TaskContext& ctx) {
    if (!s.readers_.empty())
        throw std::logic_error(
            "read() called while another coroutine is already waiting for incoming data");
    if (s.read_paused_ && s.transport_) {
        s.read_paused_ = false;
        if (!s.writer_hold_) s.transport_->resume_reading();
    }
    s.release_writer_hold();
    w.suspend(s.readers_, h, ctx);
}

void read_wait_slow(StreamState& s, Waiter& w, std::coroutine_handle<> h, TaskContext& ctx,
                    ReadTarget* t) {
    wait_new(s, w, h, ctx);
    if (t != nullptr && s.buffered() == 0) s.target_ = t;
}

// Bytes a read took while it waited, back to the front of the buffer: a read that raises
// instead of returning them loses nothing.
static void unread(StreamState& s, std::string_view bytes) {
    if (bytes.empty()) return;
    s.buf_.erase(0, s.pos_);
    s.pos_ = 0;
    s.buf_.insert(0, bytes);
}

// read_check's way out: cancelled, or the transport reported an error.
void read_fail(StreamState& s, bool cancelled, ReadTarget* t) {
    if (t != nullptr && t->got != 0) {
        unread(s, t->borrow ? t->view : std::string_view(*t->out).substr(0, t->got));
        t->got = 0;
    }
    if (cancelled) throw CancelledError();  // the data stays buffered
    std::rethrow_exception(s.error_);
}

std::string read_take(StreamState& s, std::size_t n) {
    const std::size_t k = std::min(n, s.buffered());
    std::string out(s.buf_.data() + s.pos_, k);
    s.consume(k);
    return out;
}

std::size_t read_take_into(StreamState& s, std::string& out, std::size_t n) {
    const std::size_t k = std::min(n, s.buffered());
    if (s.pos_ == 0 && k == s.buf_.size() && k != 0) {
        // All of the buffer: hand it over and keep the caller's memory for the next bytes.
        out.swap(s.buf_);
        s.buf_.clear();
        s.consume(0);
        return k;
    }
    out.assign(s.buf_.data() + s.pos_, k);
    s.consume(k);
    return k;
}

std::string_view read_take_view(StreamState& s, std::size_t n) {
    const std::size_t k = std::min(n, s.buffered());
    const std::string_view out(s.buf_.data() + s.pos_, k);
    s.consume(k, true);
    return out;
}

namespace {

// Suspends until the reader gets something new: the building block of the read loops.
// With a target, what arrives meanwhile goes there (see ReadTarget).
struct NewData {
    explicit NewData(StreamState& st, ReadTarget* target = nullptr) : s(st), t(target) {}
    NewData(const NewData&) = delete;
    NewData& operator=(const NewData&) = delete;
    ~NewData() {
        if (t) read_forget(s, *t);
    }
    StreamState& s;
    ReadTarget* t;
    Waiter w;
    bool await_ready() const { return s.error_ || s.eof_; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        read_wait(s, w, h, require_context(h, "StreamReader"), t);
    }
    void await_resume() {
        if (t) read_forget(s, *t);
        if (w.ctx && w.resumed()) throw CancelledError();
    }
};

// asyncio 3.13: with several separators, the shortest chunk that ends with any of them; for
// the limit checks the shortest separator counts.
Task<std::string> readuntil_task(std::shared_ptr<StreamState> s, std::vector<std::string> seps) {
    if (seps.empty()) throw std::invalid_argument("readuntil needs a separator");
    std::size_t min_len = std::string::npos, max_len = 0;
    for (const auto& sep : seps) {
        if (sep.empty())
            throw std::invalid_argument("Separator should be at least one-byte string");
        min_len = std::min(min_len, sep.size());
        max_len = std::max(max_len, sep.size());
    }
    std::size_t offset = 0;
    std::size_t end = std::string_view::npos;  // one past the match
    std::size_t isep = 0;                      // where the matched separator starts
    for (;;) {
        s->throw_if_error();
        const std::string_view data = s->view();
        if (data.size() >= min_len) {
            for (const auto& sep : seps) {
                const std::size_t i = data.find(sep, offset);
                if (i != std::string_view::npos &&
                    (end == std::string_view::npos || i + sep.size() < end)) {
                    end = i + sep.size();
                    isep = i;
                }
            }
            if (end != std::string_view::npos) break;
            offset = data.size() + 1 - std::min(data.size() + 1, max_len);
            if (offset > s->limit_)
                throw LimitOverrunError("Separator is not found, and chunk exceed the limit",
                                        offset);
        }
        if (s->eof_) {
            std::string partial(data);
            s->consume(data.size());
            throw IncompleteReadError(std::move(partial), 0);
        }
        co_await NewData(*s);
    }
    if (isep > s->limit_)
        throw LimitOverrunError("Separator is found, but chunk is longer than limit", isep);
    std::string out(s->view().substr(0, end));
    s->consume(out.size());
    co_return out;
}

Task<std::string> readuntil_task(std::shared_ptr<StreamState> s, std::string sep) {
    std::vector<std::string> seps;
    seps.push_back(std::move(sep));
    co_return co_await readuntil_task(std::move(s), std::move(seps));
}

Task<std::string> readline_task(std::shared_ptr<StreamState> s) {
    std::string line;
    std::optional<LimitOverrunError> overrun;
    try {
        std::string sep = "\n";
        line = co_await readuntil_task(s, std::move(sep));
    } catch (IncompleteReadError& e) {
        line = std::move(e.partial);
    } catch (const LimitOverrunError& e) {
        // Discard the over-long line (up to its separator if it is already here).
        const std::string_view data = s->view();
        if (data.substr(e.consumed, 1) == "\n")
            s->consume(e.consumed + 1);
        else
            s->consume(data.size());
        overrun.emplace(e);
    }
    if (overrun) throw *overrun;
    co_return line;
}

// What arrives while it waits is appended straight to the result, which wakes it only once
// complete (or at EOF, or on an error).
Task<std::string> readexactly_task(std::shared_ptr<StreamState> s, std::size_t n) {
    s->throw_if_error();
    if (s->buffered() >= n) {
        std::string out(s->view().substr(0, n));
        s->consume(n);
        co_return out;
    }
    std::string out;
    ReadTarget t{&out, n, true, 0};
    try {
        for (;;) {
            const std::size_t k = std::min(n - out.size(), s->buffered());
            out.append(s->view().substr(0, k));
            s->consume(k);
            if (out.size() == n || s->eof_) break;
            co_await NewData(*s, &t);
            s->throw_if_error();
        }
    } catch (...) {
        unread(*s, out);  // cancelled or failed: the bytes stay readable
        throw;
    }
    if (out.size() < n) throw IncompleteReadError(std::move(out), n);
    co_return out;
}

}  // namespace

Task<std::string> read_all(std::shared_ptr<StreamState> s) {
    std::string out;
    for (;;) {
        s->throw_if_error();
        // Consume as it comes, so that reading never pauses.
        out.append(s->view());
        s->consume(s->buffered());
        if (s->eof_) break;
        co_await NewData(*s);
    }
    co_return out;
}

// ---- writer awaiters

void writer_wait(StreamState& s, WriterWait kind, Waiter& w, std::coroutine_handle<> h,
                 TaskContext& ctx) {
    w.suspend(kind == WriterWait::drain ? s.drainers_ : s.closers_, h, ctx);
}

void writer_check_slow(StreamState& s, WriterWait kind, Waiter* w) {
    if (w && w->resumed()) throw CancelledError();
    if (kind == WriterWait::drain) {
        if (s.lost_) s.throw_lost();
    } else if (s.lost_error_) {
        throw std::system_error(s.lost_error_);
    }
}

namespace {

Task<void> run_client(std::shared_ptr<const ClientConnected> cb, std::shared_ptr<StreamState> s) {
    StreamReader reader(s);
    StreamWriter writer(s);
    try {
        co_await (*cb)(reader, writer);
    } catch (const CancelledError&) {
        if (s->transport_) s->transport_->close();
        throw;
    } catch (...) {
        // asyncio: reported, and that connection only is closed.
        if (s->loop_)
            s->loop_->call_exception_handler(
                ExceptionContext{"Unhandled exception in client_connected_cb",
                                 std::current_exception(), s->transport_});
        if (s->transport_) s->transport_->close();
    }
}

}  // namespace
}  // namespace detail

// ---- StreamReader

StreamReader::StreamReader(std::size_t limit) : s_(std::make_shared<detail::StreamState>(limit)) {}
Task<std::string> StreamReader::readline() const { return detail::readline_task(s_); }
Task<std::string> StreamReader::readexactly(std::size_t n) const {
    return detail::readexactly_task(s_, n);
}
Task<std::string> StreamReader::readuntil(std::vector<std::string> separators) const {
    return detail::readuntil_task(s_, std::move(separators));
}
Task<std::string> StreamReader::readuntil(std::string separator) const {
    return detail::readuntil_task(s_, std::move(separator));
}
bool StreamReader::at_eof() const { return s_->eof_ && s_->buffered() == 0; }
std::exception_ptr StreamReader::exception() const { return s_->error_; }
std::size_t StreamReader::limit() const { return s_->limit_; }
void StreamReader::feed_data(std::string_view data) const { s_->feed_data(data); }
void StreamReader::feed_eof() const { s_->feed_eof(); }
void StreamReader::set_exception(std::exception_ptr e) const { s_->set_exception(std::move(e)); }

// ---- StreamWriter

StreamWriter::StreamWriter(std::shared_ptr<detail::StreamState> s) : s_(std::move(s)) {
    if (s_) ++s_->writer_handles_;
}
StreamWriter::StreamWriter(const StreamWriter& o) : s_(o.s_) {
    if (s_) ++s_->writer_handles_;
}
StreamWriter::~StreamWriter() {
    if (!s_) return;
    // The last handle gone: nobody can write or close any more, so close (asyncio closes a
    // StreamWriter that is garbage-collected open).
    if (--s_->writer_handles_ == 0 && s_->transport_ && !s_->loop_->is_closed())
        s_->transport_->close();
}
void StreamWriter::write(std::string&& data) const {
    if (s_->transport_) s_->transport_->write(std::move(data));
}
void StreamWriter::writelines(std::span<const std::string_view> chunks) const {
    if (s_->transport_) s_->transport_->writelines(chunks);
}
void StreamWriter::write_eof() const {
    if (s_->transport_) s_->transport_->write_eof();
}
bool StreamWriter::can_write_eof() const {
    return s_->transport_ && s_->transport_->can_write_eof();
}
void StreamWriter::close() const {
    if (s_->transport_) s_->transport_->close();
}
bool StreamWriter::is_closing() const { return !s_->transport_ || s_->transport_->is_closing(); }
std::any StreamWriter::get_extra_info(std::string_view name, std::any default_value) const {
    if (s_->transport_) return s_->transport_->get_extra_info(name, std::move(default_value));
    if (name == "peername" && !s_->peername_.empty()) return s_->peername_;
    if (name == "sockname" && !s_->sockname_.empty()) return s_->sockname_;
    return default_value;
}
Transport* StreamWriter::transport() const { return s_->transport_; }

Task<std::size_t> StreamWriter::sendfile(int fd, std::int64_t offset,
                                         std::optional<std::int64_t> count, bool fallback) const {
    if (!s_->transport_) throw std::runtime_error("sendfile: the transport is closing");
    Future<std::size_t> sent = detail::start_sendfile(*s_->transport_, fd, offset, count, fallback);
    co_return co_await sent;
}

namespace {
Task<void> start_tls_task(std::shared_ptr<detail::StreamState> s,
                          std::shared_ptr<SslContext> sslcontext, StartTlsOptions options) {
    if (!s->transport_) throw std::logic_error("start_tls: the connection is closed");
    if (s->writer_hold_) {
        // What the transport held for the paused writer came before TLS: let it reach the
        // reader's buffer first, so that the check below sees it.
        s->release_writer_hold();
        co_await sleep(0);
        if (!s->transport_) throw std::logic_error("start_tls: the connection is closed");
    }
    if (s->buffered() != 0)
        throw std::logic_error("start_tls: the StreamReader holds " +
                               std::to_string(s->buffered()) +
                               " unread bytes that came before TLS; read them first");
    options.server_side = options.server_side || s->server_side_;
    // No suspension from these checks to the swap, so no plaintext can slip into the reader in
    // between (which is also why there is no drain() first, as asyncio has: the paused-writing
    // state carries over to the TLS transport, and drain() then waits on that).
    Transport& lower = *s->transport_;
    auto done =
        s->loop_->start_tls(detail::shared_transport(lower), std::move(sslcontext), options);
    // The StreamReaderProtocol now sits under the TLS transport (no second connection_made);
    // everything the stream does goes through it from here on, the handshake's failure too.
    if (!s->lost_) s->transport_ = detail::upgraded_transport(lower).get();
    s->can_hold_ = false;
    assert(s->lost_ || s->transport_ != nullptr);
    try {
        co_await done;
    } catch (const CancelledError&) {
        // A half-upgraded connection is of no use to anyone: asyncio closes it too.
        if (s->transport_) s->transport_->abort();
        throw;
    }
}
}  // namespace

Task<void> StreamWriter::start_tls(std::shared_ptr<SslContext> sslcontext,
                                   StartTlsOptions options) const {
    return start_tls_task(s_, std::move(sslcontext), std::move(options));
}

// ---- StreamReaderProtocol

StreamReaderProtocol::StreamReaderProtocol(std::shared_ptr<detail::StreamState> s,
                                           std::shared_ptr<const ClientConnected> cb)
    : s_(std::move(s)), client_connected_(std::move(cb)) {}

StreamReaderProtocol::~StreamReaderProtocol() {
    if (!s_->lost_) s_->transport_ = nullptr;  // the transport is going away with us
}

void StreamReaderProtocol::connection_made(Transport& transport) {
    s_->attach(transport);
    if (client_connected_) {
        // The task keeps itself alive; run_client handles every exception.
        auto task = transport.get_loop().create_task(detail::run_client(client_connected_, s_));
        if (auto h = s_->handlers_.lock()) {
            if (h->closed) {
                task.cancel();  // accepted as the server closed: never runs
                return;
            }
            detail::FutureStateBase* t = task.state().get();
            h->tasks.push_back(task.state());
            std::weak_ptr<detail::HandlerSet> w = h;
            task.add_done_callback([w, t] {
                auto hs = w.lock();
                if (!hs) return;
                auto it = std::find_if(hs->tasks.rbegin(), hs->tasks.rend(),
                                       [t](const auto& p) { return p.get() == t; });
                if (it == hs->tasks.rend()) return;
                *it = std::move(hs->tasks.back());
                hs->tasks.pop_back();
            });
        }
    }
}

void StreamReaderProtocol::data_received(std::string_view data) { s_->feed_from_transport(data); }

bool StreamReaderProtocol::eof_received() {
    s_->feed_eof();
    return true;  // keep the transport open for writing: the writer decides when to close
}

void StreamReaderProtocol::connection_lost(std::error_code ec) { s_->lost(ec); }

void StreamReaderProtocol::pause_writing() {
    s_->write_paused_ = true;
    s_->hold_for_writer();
}

void StreamReaderProtocol::resume_writing() {
    s_->write_paused_ = false;
    s_->drainers_.wake_all();
    // After the wake-ups: the drained task runs first (and usually waits to read again) before
    // what the transport held is delivered.
    s_->release_writer_hold();
}

// ---- openers

namespace {
ProtocolFactory stream_factory(std::shared_ptr<detail::StreamState> s) {
    return [s] { return std::make_unique<StreamReaderProtocol>(s); };
}
ProtocolFactory server_factory(ClientConnected cb, std::size_t limit,
                               std::shared_ptr<detail::HandlerSet> handlers) {
    if (!cb) throw std::invalid_argument("start_server needs a client_connected callback");
    if (limit == 0) throw std::invalid_argument("limit must be positive");
    auto shared = std::make_shared<const ClientConnected>(std::move(cb));
    return [shared, limit, handlers] {
        auto s = std::make_shared<detail::StreamState>(limit);
        s->server_side_ = true;
        s->handlers_ = handlers;
        return std::make_unique<StreamReaderProtocol>(std::move(s), shared);
    };
}

// start_server's Server: the listening one, plus the handler tasks it owns. close() stops
// listening and cancels every handler (each closes its connection as it unwinds), so that
// wait_closed(), done once every connection is lost, also means every handler has ended.
class StreamServer final : public Server {
public:
    StreamServer(std::shared_ptr<Server> inner, std::shared_ptr<detail::HandlerSet> h)
        : inner_(std::move(inner)), handlers_(std::move(h)) {}
    void close() override {
        inner_->close();
        handlers_->closed = true;
        for (auto& t : handlers_->tasks)
            if (!t->done()) t->cancel();
    }
    void close_clients() override { inner_->close_clients(); }
    void abort_clients() override { inner_->abort_clients(); }
    Future<void> wait_closed() override { return inner_->wait_closed(); }
    bool is_serving() const override { return inner_->is_serving(); }
    void start_serving() override { inner_->start_serving(); }
    Future<void> serve_forever() override { return inner_->serve_forever(); }
    std::vector<int> sockets() const override { return inner_->sockets(); }
    std::vector<SocketAddress> addresses() const override { return inner_->addresses(); }
    EventLoop& get_loop() const override { return inner_->get_loop(); }

private:
    std::shared_ptr<Server> inner_;
    std::shared_ptr<detail::HandlerSet> handlers_;
};
}  // namespace

namespace {
Task<StreamPair> open_connection_task(std::string host, std::uint16_t port, std::size_t limit,
                                      ConnectOptions options) {
    EventLoop& loop = co_await get_running_loop();
    auto s = std::make_shared<detail::StreamState>(limit);
    StreamWriter writer(s);  // if cancelled once connected, dropping it closes the connection
    auto connected = loop.create_connection(stream_factory(s), std::move(host), port, options);
    co_await connected;
    co_return StreamPair{StreamReader(s), std::move(writer)};
}

Task<std::shared_ptr<Server>> start_server_task(ClientConnected client_connected, std::string host,
                                                std::uint16_t port, std::size_t limit,
                                                ServerOptions options) {
    EventLoop& loop = co_await get_running_loop();
    auto handlers = std::make_shared<detail::HandlerSet>();
    auto started = loop.create_server(server_factory(std::move(client_connected), limit, handlers),
                                      std::move(host), port, options);
    std::shared_ptr<Server> inner = co_await started;
    co_return std::make_shared<StreamServer>(std::move(inner), std::move(handlers));
}

Task<std::shared_ptr<Server>> start_unix_server_task(ClientConnected client_connected,
                                                     std::string path, std::size_t limit,
                                                     ServerOptions options) {
    EventLoop& loop = co_await get_running_loop();
    auto handlers = std::make_shared<detail::HandlerSet>();
    auto started = loop.create_unix_server(
        server_factory(std::move(client_connected), limit, handlers), std::move(path), options);
    std::shared_ptr<Server> inner = co_await started;
    co_return std::make_shared<StreamServer>(std::move(inner), std::move(handlers));
}
}  // namespace

Task<StreamPair> open_connection(std::string host, std::uint16_t port, std::size_t limit,
                                 ConnectOptions options) {
    return open_connection_task(std::move(host), port, limit, std::move(options));
}

Task<StreamPair> open_unix_connection(std::string path, std::size_t limit) {
    EventLoop& loop = co_await get_running_loop();
    auto s = std::make_shared<detail::StreamState>(limit);
    StreamWriter writer(s);
    auto connected = loop.create_unix_connection(stream_factory(s), std::move(path));
    co_await connected;
    co_return StreamPair{StreamReader(s), std::move(writer)};
}

Task<std::shared_ptr<Server>> start_server(ClientConnected client_connected, std::string host,
                                           std::uint16_t port, std::size_t limit,
                                           ServerOptions options) {
    return start_server_task(std::move(client_connected), std::move(host), port, limit,
                             std::move(options));
}

Task<std::shared_ptr<Server>> start_unix_server(ClientConnected client_connected, std::string path,
                                                std::size_t limit, ServerOptions options) {
    return start_unix_server_task(std::move(client_connected), std::move(path), limit,
                                  std::move(options));
}

}  // namespace aioring
