// SPDX-License-Identifier: Apache-2.0
// TLS transport: OpenSSL layered over the plain stream transport below it through a BIO that
// reads the lower transport's received bytes in place and writes records straight into the
// lower transport's write buffer (one copy each way beyond OpenSSL's own work).
#pragma once

#include <aioring/loop.hpp>
#include <aioring/ssl.hpp>
#include <aioring/transport.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/loop_core.hpp"
#include "src/socket_transport.hpp"
#include "src/transport_base.hpp"
#include "src/write_flow.hpp"

namespace aioring::detail {

struct SslParams {
    std::shared_ptr<SslContext> context;
    bool server_side = false;
    std::string server_hostname;
    double handshake_timeout = 60.0;
    double shutdown_timeout = 30.0;
};

// Ownership: the loop owns the SslTransport (TransportBase: adopted when the lower transport's
// connection_made attaches it, released after the lower connection_lost), and so does the
// SslLowerProtocol the lower (plain) transport owns; the SslTransport owns the application's
// protocol and points at the lower transport from its connection_made to its connection_lost,
// or until the loop closes (loop_closed() lets go of the lower transport before that can be
// freed). User handles are std::shared_ptr<Transport> to the SslTransport and stay
// safe after the connection is lost and after the loop is closed.
//
// Closing: close() sends close_notify after the buffered application data; connection_lost
// follows once the peer answers (or closes TCP), or ssl_shutdown_timeout passes (with
// SslErrc::shutdown_timeout). abort() closes TCP at once. The peer's
// close_notify: eof_received (its return value is ignored, as asyncio does under TLS), then our
// close_notify, then TCP closes and connection_lost is clean. TCP EOF without close_notify:
// connection_lost(SslErrc::eof_without_close_notify).
//
// Flow control is on application bytes, as asyncio's sslproto: the write buffer is the
// plaintext write() took that has not left through the socket yet, that is the plaintext
// waiting for the handshake (or for a blocked SSL_write) plus that of the records still in the
// lower transport's buffer, counted out as the lower transport reports its sends. It has its own
// WriteFlow and limits; the lower transport's pause/resume is not passed on.
class SslTransport final : public Transport,
                           public TransportBase,
                           private SendObserver,
                           public std::enable_shared_from_this<SslTransport> {
public:
    using HandshakeDone = std::function<void(std::exception_ptr)>;

    // `app_made`: the protocol already had connection_made (start_tls).
    SslTransport(LoopCore& core, std::unique_ptr<BaseProtocol> app, SslParams params,
                 bool app_made);
    ~SslTransport() override;

    // Runs once: after connection_made on success, or with the handshake's error.
    void set_on_handshake(HandshakeDone cb) { on_handshake_ = std::move(cb); }
    void set_app(std::unique_ptr<BaseProtocol> app) { protocol_ = std::move(app); }
    // Starts the handshake over `lower` (connected); `initial` is fed to TLS first. What `lower`
    // still buffers counts as this transport's (start_tls), and `lower_paused` says whether
    // the protocol was last told pause_writing.
    void attach(SocketTransport& lower, bool lower_paused, std::string initial);

    // From the lower transport (through SslLowerProtocol).
    void on_lower_data(std::string_view data);
    bool on_lower_eof();
    void on_lower_lost(std::error_code ec);

    // BaseTransport
    void close() override;
    bool is_closing() const override { return closing_; }
    std::any get_extra_info(std::string_view name, std::any default_value) const override;
    void set_protocol(std::unique_ptr<BaseProtocol> protocol) override;
    BaseProtocol* get_protocol() const override { return protocol_.get(); }
    EventLoop& get_loop() const override { return core_.loop; }
    // ReadTransport
    bool is_reading() const override { return reading_ && !closing_; }
    void pause_reading() override;
    void resume_reading() override;
    // WriteTransport
    void write(std::string_view data) override;
    void write(std::string&& data) override { write(std::string_view(data)); }
    void writelines(std::span<const std::string_view> chunks) override;
    void write_eof() override;
    bool can_write_eof() const override { return false; }
    void abort() override;
    std::size_t get_write_buffer_size() const override { return flow_.size(); }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return {flow_.low(), flow_.high()};
    }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override;

    // The plain transport below, from attach() to its connection_lost (sendfile waits on it).
    SocketTransport* lower() const { return lower_; }
    // sendfile's fallback: while held, write() keeps the plaintext back (in the write buffer
    // all the same) and write_through() passes; release_writes() (or close()) sends it.
    void hold_writes() { write_hold_ = true; }
    bool writes_held() const { return write_hold_; }
    void write_through(std::string_view data);
    void release_writes();

    // LoopResource: the loop closed with this transport open; calls on it are ignored from now.
    void loop_closed() override;

    // The BIO's side.
    std::size_t take_input(char* out, std::size_t len);
    void put_output(const char* data, std::size_t len);

private:
    enum class State : unsigned char { unwrapped, handshaking, wrapped, shutdown, closed };

    void do_handshake();
    void handshake_done();
    void handshake_failed(std::exception_ptr e, std::error_code ec, bool abort_lower);
    std::exception_ptr handshake_error();
    void process();
    void read_app();
    bool read_failed(int ret);  // true: go on reading
    void on_close_notify();
    void begin_shutdown();
    void shutdown_input();
    void finish_shutdown();
    void ssl_write(std::string_view data);
    void retry_pending_write();
    void drop_pending_writes();
    // WriteFlow::Owner: the protocol hears nothing before its connection_made.
    bool flow_closing() const override { return closing_ || !made_; }
    // SendObserver: the lower transport sent `n` bytes of records.
    void bytes_sent(std::size_t n) override;
    void protocol_failed(const std::string& what);
    // TransportBase: a failed callback aborts with ECONNABORTED; nothing is armed here (the
    // lower transport owns the operations).
    void abort_after_failure() override;
    bool busy() const override { return false; }
    StreamProtocolBase* stream() const { return static_cast<StreamProtocolBase*>(protocol_.get()); }

    SslParams params_;
    ssl_st* ssl_ = nullptr;
    SocketTransport* lower_ = nullptr;  // from attach() to the lower connection_lost
    bool write_hold_ = false;           // sendfile: see hold_writes()
    std::string held_plain_;
    State state_ = State::unwrapped;
    HandshakeDone on_handshake_;
    TimerHandle handshake_timer_;
    TimerHandle shutdown_timer_;
    std::error_code error_;  // why the connection ended, if not cleanly
    SocketAddress peername_, sockname_;

    // Input: the lower transport's bytes of the current data_received, read in place by the
    // BIO; what TLS did not consume (a partial record, or reading paused) waits in backlog_.
    std::string_view in_view_;
    std::string backlog_;
    std::size_t backlog_off_ = 0;
    std::string pending_plain_;  // application bytes SSL_write could not take yet

    // Output: what went to the lower transport's buffer, in order, as (record bytes, plaintext
    // bytes they carry); a circular queue, so steady writing allocates nothing.
    struct Sent {
        std::size_t cipher;
        std::size_t plain;
    };
    std::vector<Sent> sent_;
    std::size_t sent_head_ = 0;
    std::size_t sent_count_ = 0;
    bool sent_open_ = false;  // inside SSL_write: its records go to the back entry
    Sent& sent_back() { return sent_[(sent_head_ + sent_count_ - 1) % sent_.size()]; }
    void sent_push(std::size_t cipher, std::size_t plain);
    WriteFlow flow_{*this};

    int ssl_depth_ = 0;  // inside an OpenSSL call: protocol callbacks wait for it to return
    bool reading_ = true;
    bool in_read_ = false;
    bool process_scheduled_ = false;
    bool eof_called_ = false;
};

// The lower transport's protocol: forwards everything to the SslTransport it keeps alive.
class SslLowerProtocol final : public Protocol {
public:
    explicit SslLowerProtocol(std::shared_ptr<SslTransport> t) : t_(std::move(t)) {}
    // The lower transport is always a SocketTransport (make_socket_transport).
    void connection_made(Transport& lower) override {
        t_->attach(static_cast<SocketTransport&>(lower), false, {});
    }
    void data_received(std::string_view data) override { t_->on_lower_data(data); }
    bool eof_received() override { return t_->on_lower_eof(); }
    void connection_lost(std::error_code ec) override { t_->on_lower_lost(ec); }
    // The TLS transport keeps its own flow control: the lower one's is not passed on.
    void pause_writing() override {}
    void resume_writing() override {}
    // The TLS transport above (StreamWriter::start_tls points its stream at it at once).
    const std::shared_ptr<SslTransport>& tls() const { return t_; }

private:
    std::shared_ptr<SslTransport> t_;
};

// create_server(ssl=...): a factory whose protocols do the handshake, then hand over to the
// protocol `factory` makes.
ProtocolFactory ssl_server_factory(LoopCore& core, ProtocolFactory factory,
                                   const ServerOptions& options);
// create_connection(ssl=...): wraps the connected `fd` and completes after the handshake.
Future<Connection<>> ssl_connect(LoopCore& core, int fd, ProtocolFactory& factory,
                                 const ConnectOptions& options, const std::string& host);

// OpenSSL's error queue as one line (and emptied).
std::string openssl_error_string();

}  // namespace aioring::detail
