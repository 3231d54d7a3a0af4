// SPDX-License-Identifier: Apache-2.0
// TLS transport over a plain stream transport: handshake, application data in both directions,
// close_notify exchange with its timeout (start_tls itself: src/loop_tls.cpp). OpenSSL talks to
// the lower transport through the BIO of src/ssl_bio.cpp, so there is no memory BIO to copy
// through; the peer certificate is described by src/ssl_cert.cpp.
#include "src/ssl_transport.hpp"
#include "src/write_flow.hpp"

#include <fmt/core.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <tuple>

#include "src/op_awaiter.hpp"
#include "src/socket_transport.hpp"
#include "src/socket_util.hpp"
#include "src/ssl_bio.hpp"
#include "src/ssl_cert.hpp"

namespace aioring::detail {

namespace {

constexpr std::size_t record_size = 16 * 1024;  // the most plaintext one TLS record carries

// Decrypted bytes for a Protocol go through here (data_received gets a view of it); one per
// thread, as there is one loop per thread and data_received cannot re-enter the read loop.
char* scratch() {
    thread_local std::unique_ptr<char[]> buf = std::make_unique<char[]>(record_size);
    return buf.get();
}

}  // namespace

// ---- set-up ----------------------------------------------------------------------------------

SslTransport::SslTransport(LoopCore& core, std::unique_ptr<BaseProtocol> app, SslParams params,
                           bool app_made)
    : TransportBase(core, *this, std::move(app)), params_(std::move(params)) {
    made_ = app_made;
    if (!params_.context) throw std::invalid_argument("ssl: no SslContext");
    if (protocol_ && protocol_->kind() != BaseProtocol::Kind::stream &&
        protocol_->kind() != BaseProtocol::Kind::buffered)
        throw std::invalid_argument("a TLS transport needs a Protocol or a BufferedProtocol");
    ssl_ = SSL_new(params_.context->native_handle());
    if (!ssl_) throw SslError(SslErrc::protocol_error, "SSL_new: " + openssl_error_string());
    BIO* bio = BIO_new(bio_method());
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);
    if (params_.server_side) {
        SSL_set_accept_state(ssl_);
    } else {
        SSL_set_connect_state(ssl_);
        const std::string& host = params_.server_hostname;
        const bool ip = !host.empty() && is_numeric_host(host);
        // SNI carries host names only (RFC 6066), never IP literals.
        if (!host.empty() && !ip) SSL_set_tlsext_host_name(ssl_, host.c_str());
        if (params_.context->check_hostname()) {
            if (ip)
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str());
            else {
                SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                SSL_set1_host(ssl_, host.c_str());
            }
        }
    }
}

SslTransport::~SslTransport() { SSL_free(ssl_); }

void SslTransport::attach(SocketTransport& lower, bool lower_paused, std::string initial) {
    adopt(shared_from_this());  // the loop's reference, until the lower connection is lost
    lower_ = &lower;
    lower.set_send_observer(this);
    if (made_) {
        // start_tls: the limits the protocol had set, the bytes it wrote that are still below
        // and its paused state carry over.
        auto [l, h] = lower.get_write_buffer_limits();
        const std::size_t below = lower.get_write_buffer_size();
        if (below != 0) sent_push(below, below);
        flow_.take_over(below, lower_paused, h, l);
    }
    peername_ = lower.extra<SocketAddress>("peername").value_or(SocketAddress{});
    sockname_ = lower.extra<SocketAddress>("sockname").value_or(SocketAddress{});
    backlog_ = std::move(initial);
    state_ = State::handshaking;
    if (params_.handshake_timeout > 0)
        handshake_timer_ =
            core_.call_at(core_.time() + params_.handshake_timeout, [w = weak_from_this()] {
                auto s = w.lock();
                if (!s || s->state_ != State::handshaking) return;
                s->handshake_failed(std::make_exception_ptr(
                                        SslError(SslErrc::handshake_timeout,
                                                 fmt::format("SSL handshake is taking longer than "
                                                             "{} seconds: aborting the connection",
                                                             s->params_.handshake_timeout))),
                                    SslErrc::handshake_timeout, true);
            });
    do_handshake();
}

// ---- the BIO's side ---------------------------------------------------------------------------

std::size_t SslTransport::take_input(char* out, std::size_t len) {
    if (backlog_off_ < backlog_.size()) {
        std::size_t n = std::min(len, backlog_.size() - backlog_off_);
        std::memcpy(out, backlog_.data() + backlog_off_, n);
        backlog_off_ += n;
        if (backlog_off_ == backlog_.size()) {
            backlog_.clear();
            backlog_off_ = 0;
        }
        return n;
    }
    std::size_t n = std::min(len, in_view_.size());
    if (n == 0) return 0;
    std::memcpy(out, in_view_.data(), n);
    in_view_.remove_prefix(n);
    return n;
}

void SslTransport::put_output(const char* data, std::size_t len) {
    // Records go straight into the lower transport's write buffer, in order; after the lower
    // transport started closing there is nobody to send them to.
    if (!lower_ || lower_->is_closing() || len == 0) return;
    lower_->write(std::string_view(data, len));
    // Records written outside SSL_write (handshake, alerts, tickets, close_notify) carry no
    // application bytes.
    if (sent_open_ || (sent_count_ != 0 && sent_back().plain == 0))
        sent_back().cipher += len;
    else
        sent_push(len, 0);
}

void SslTransport::sent_push(std::size_t cipher, std::size_t plain) {
    if (sent_count_ == sent_.size()) [[unlikely]] {
        std::vector<Sent> grown;
        grown.reserve(std::max<std::size_t>(16, 2 * sent_.size()));
        for (std::size_t i = 0; i < sent_count_; ++i)
            grown.push_back(sent_[(sent_head_ + i) % sent_.size()]);
        grown.resize(grown.capacity());
        sent_ = std::move(grown);
        sent_head_ = 0;
    }
    ++sent_count_;
    sent_back() = Sent{cipher, plain};
}

void SslTransport::bytes_sent(std::size_t n) {
    // The lower transport sent `n` record bytes, oldest first: the plaintext of the records
    // that are now wholly out leaves the write buffer.
    std::size_t plain = 0;
    while (n != 0 && sent_count_ != 0) {
        Sent& f = sent_[sent_head_];
        if (n < f.cipher) {
            f.cipher -= n;
            break;
        }
        n -= f.cipher;
        plain += f.plain;
        sent_head_ = (sent_head_ + 1) % sent_.size();
        --sent_count_;
    }
    if (plain != 0) flow_.sub(plain);
}

// ---- handshake ----------------------------------------------------------------------------------

void SslTransport::do_handshake() {
    ERR_clear_error();
    ++ssl_depth_;
    int r = SSL_do_handshake(ssl_);
    --ssl_depth_;
    if (r == 1) return handshake_done();
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    std::exception_ptr ex = handshake_error();
    std::error_code ec = SSL_get_verify_result(ssl_) != X509_V_OK
                             ? make_error_code(SslErrc::certificate_verify_failed)
                             : make_error_code(SslErrc::handshake_failed);
    // close, not abort: the alert OpenSSL just wrote tells the peer why.
    handshake_failed(ex, ec, false);
}

std::exception_ptr SslTransport::handshake_error() {
    std::string errors = openssl_error_string();
    long v = SSL_get_verify_result(ssl_);
    if (v != X509_V_OK) {
        std::string m = std::string("SSL handshake failed: certificate verify failed: ") +
                        X509_verify_cert_error_string(v);
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            m += ", certificate is not valid for '" + params_.server_hostname + "'";
        return std::make_exception_ptr(SslError(SslErrc::certificate_verify_failed, m));
    }
    return std::make_exception_ptr(
        SslError(SslErrc::handshake_failed, "SSL handshake failed: " + errors));
}

void SslTransport::handshake_done() {
    state_ = State::wrapped;
    handshake_timer_.cancel();
    auto self = shared_from_this();  // the callbacks below may drop every other reference
    if (!made_) {
        made_ = true;
        try {
            stream()->connection_made(*this);
        } catch (...) {
            callback_failed(std::current_exception(), "protocol connection_made() failed");
        }
    }
    if (auto cb = std::exchange(on_handshake_, {})) cb(nullptr);
    retry_pending_write();
    flow_.update();  // writes made before connection_made (StreamWriter::start_tls) may pause
    // Application data may have come right behind the peer's Finished.
    if (state_ == State::wrapped) read_app();
}

void SslTransport::handshake_failed(std::exception_ptr e, std::error_code ec, bool abort_lower) {
    if (state_ == State::closed) return;
    auto self = shared_from_this();
    state_ = State::closed;
    closing_ = true;
    error_ = ec;
    handshake_timer_.cancel();
    // A server has nobody waiting for the handshake: the loop's exception handler hears of it.
    if (auto cb = std::exchange(on_handshake_, {}))
        cb(e);
    else
        report(core_, e, "SSL handshake failed", this);
    if (lower_) {
        if (abort_lower)
            lower_->abort();
        else
            lower_->close();
    }
}

// ---- reading ------------------------------------------------------------------------------------

void SslTransport::on_lower_data(std::string_view data) {
    if (state_ == State::closed || state_ == State::unwrapped) return;
    auto self = shared_from_this();
    in_view_ = data;
    process();
    if (!in_view_.empty() && state_ != State::closed) {
        // Not consumed (a partial record, or reading is paused): keep it for later.
        if (backlog_off_ != 0) {
            backlog_.erase(0, backlog_off_);
            backlog_off_ = 0;
        }
        backlog_.append(in_view_);
    }
    in_view_ = {};
}

void SslTransport::process() {
    switch (state_) {
        case State::handshaking:
            do_handshake();
            break;  // goes on to read_app once done
        case State::wrapped:
            read_app();
            break;
        case State::shutdown:
            shutdown_input();
            break;
        default:
            break;
    }
    retry_pending_write();
}

void SslTransport::read_app() {
    if (in_read_) return;
    in_read_ = true;
    while (state_ == State::wrapped && reading_ && !closing_) {
        std::size_t got = 0;
        ERR_clear_error();
        if (protocol_->kind() == BaseProtocol::Kind::buffered) [[unlikely]] {
            // Decrypt one record (peeking a byte), then let OpenSSL copy its plaintext straight
            // into the protocol's buffer: no get_buffer without a buffer_updated.
            char c;
            ++ssl_depth_;
            int r = SSL_peek_ex(ssl_, &c, 1, &got);
            --ssl_depth_;
            if (r != 1) {
                if (!read_failed(r)) break;
                continue;
            }
            auto* bp = static_cast<BufferedProtocol*>(protocol_.get());
            std::size_t avail = static_cast<std::size_t>(SSL_pending(ssl_));
            if (avail == 0) avail = 1;
            std::span<std::byte> buf;
            try {
                buf = bp->get_buffer(avail);
                if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
            } catch (...) {
                callback_failed(std::current_exception(), "protocol get_buffer() failed");
                break;
            }
            ++ssl_depth_;
            r = SSL_read_ex(ssl_, buf.data(), std::min(buf.size(), avail), &got);
            --ssl_depth_;
            if (r != 1) {
                if (!read_failed(r)) break;
                continue;
            }
            try {
                bp->buffer_updated(got);
            } catch (...) {
                callback_failed(std::current_exception(), "protocol buffer_updated() failed");
                break;
            }
        } else {
            char* buf = scratch();
            ++ssl_depth_;
            int r = SSL_read_ex(ssl_, buf, record_size, &got);
            --ssl_depth_;
            if (r != 1) {
                if (!read_failed(r)) break;
                continue;
            }
            try {
                static_cast<Protocol*>(protocol_.get())->data_received(std::string_view(buf, got));
            } catch (...) {
                callback_failed(std::current_exception(), "protocol data_received() failed");
                break;
            }
        }
    }
    in_read_ = false;
}

bool SslTransport::read_failed(int ret) {
    int e = SSL_get_error(ssl_, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return false;
    if (e == SSL_ERROR_ZERO_RETURN) {
        on_close_notify();
        return false;
    }
    protocol_failed("SSL error: " + openssl_error_string());
    return false;
}

void SslTransport::on_close_notify() {
    // asyncio under TLS: eof_received is called, its return value is ignored, and the transport
    // closes (TLS here has no half-close): our close_notify answers the peer's, then TCP closes.
    if (!eof_called_) {
        eof_called_ = true;
        try {
            stream()->eof_received();
        } catch (...) {
            callback_failed(std::current_exception(), "protocol eof_received() failed");
            return;
        }
    }
    close();
}

void SslTransport::pause_reading() {
    if (closing_ || !reading_) return;
    reading_ = false;
    if (lower_) lower_->pause_reading();
}

void SslTransport::resume_reading() {
    if (closing_ || reading_) return;
    reading_ = true;
    // What TLS already holds is delivered from the loop (never from inside this call), before
    // anything the lower transport held meanwhile: both go through the same FIFO.
    if (!process_scheduled_) {
        process_scheduled_ = true;
        core_.post([self = shared_from_this()] {
            self->process_scheduled_ = false;
            if (self->state_ == State::wrapped && self->reading_) self->read_app();
        });
    }
    if (lower_) lower_->resume_reading();
}

bool SslTransport::on_lower_eof() {
    auto self = shared_from_this();
    switch (state_) {
        case State::unwrapped:
        case State::handshaking:
            handshake_failed(
                std::make_exception_ptr(SslError(
                    SslErrc::handshake_failed,
                    "SSL handshake failed: the peer closed the connection during the handshake")),
                make_error_code(SslErrc::handshake_failed), true);
            break;
        case State::wrapped:
            // A close_notify would have been read before this EOF: the stream may be truncated.
            error_ = make_error_code(SslErrc::eof_without_close_notify);
            state_ = State::closed;
            closing_ = true;
            break;
        case State::shutdown:
            // We sent close_notify and the peer closed TCP: as good an answer as its own.
            state_ = State::closed;
            shutdown_timer_.cancel();
            break;
        case State::closed:
            break;
    }
    return false;
}

void SslTransport::on_lower_lost(std::error_code ec) {
    auto self = shared_from_this();
    handshake_timer_.cancel();
    shutdown_timer_.cancel();
    const bool handshaking = state_ == State::handshaking || state_ == State::unwrapped;
    state_ = State::closed;
    closing_ = true;
    // Nothing more leaves: the write buffer is gone with the connection.
    pending_plain_.clear();
    sent_count_ = 0;
    flow_.set(0);
    if (lower_) lower_->set_send_observer(nullptr);
    if (!error_ && handshaking) error_ = ec ? ec : make_error_code(SslErrc::handshake_failed);
    if (auto cb = std::exchange(on_handshake_, {})) {
        cb(std::make_exception_ptr(
            SslError(SslErrc::handshake_failed, "SSL handshake failed: connection lost (" +
                                                    (ec ? ec.message() : error_.message()) + ")")));
    }
    // connection_lost (if connection_made ran), then the loop lets go.
    call_connection_lost(error_ ? error_ : ec);
    lower_ = nullptr;
}

// ---- writing ------------------------------------------------------------------------------------

void SslTransport::write(std::string_view data) {
    if (data.empty() || closing_) return;
    if (write_hold_) [[unlikely]] {
        held_plain_.append(data);
    } else if (state_ != State::wrapped || !pending_plain_.empty()) {
        pending_plain_.append(data);  // sent once the handshake (or a blocked write) is done
    } else {
        ssl_write(data);
    }
    // Pending or in records below, these bytes are buffered until the socket has sent them
    // (cpython#127655: a path that buffers without this check exhausts memory).
    flow_.add(data.size());
}

void SslTransport::write_through(std::string_view data) {
    const bool held = std::exchange(write_hold_, false);
    write(data);
    write_hold_ = held;
}

void SslTransport::release_writes() {
    write_hold_ = false;
    std::string h = std::exchange(held_plain_, {});
    if (h.empty() || closing_) return;  // aborted: dropped (and no longer counted)
    if (state_ != State::wrapped || !pending_plain_.empty())
        pending_plain_.append(h);
    else
        ssl_write(h);
}

void SslTransport::writelines(std::span<const std::string_view> chunks) {
    for (std::string_view c : chunks) write(c);
}

void SslTransport::ssl_write(std::string_view data) {
    while (!data.empty()) {
        ERR_clear_error();
        std::size_t written = 0;
        // One record per call, so that the write buffer shrinks record by record as the lower
        // transport sends them.
        sent_push(0, 0);
        sent_open_ = true;
        ++ssl_depth_;
        int r = SSL_write_ex(ssl_, data.data(), std::min(data.size(), record_size), &written);
        --ssl_depth_;
        sent_open_ = false;
        if (r == 1) {
            sent_back().plain = written;
            data.remove_prefix(written);
            continue;
        }
        if (sent_back().cipher == 0) --sent_count_;
        int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            pending_plain_.append(data);
            return;
        }
        protocol_failed("SSL error: " + openssl_error_string());
        return;
    }
}

void SslTransport::retry_pending_write() {
    if (pending_plain_.empty() || state_ != State::wrapped) return;
    std::string p = std::move(pending_plain_);
    pending_plain_.clear();
    ssl_write(p);
}

void SslTransport::drop_pending_writes() {
    // Closing: what never went below is lost (no callback runs any more).
    flow_.sub(pending_plain_.size());
    pending_plain_.clear();
}

void SslTransport::write_eof() {
    throw std::logic_error(
        "write_eof() is not supported by TLS transports (TLS has no half-close): use close(), "
        "which sends close_notify");
}

void SslTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                           std::optional<std::size_t> low) {
    flow_.set_limits(high, low);
}

// ---- closing ------------------------------------------------------------------------------------

void SslTransport::close() {
    if (closing_ || detached_) return;
    if (write_hold_) release_writes();  // a sendfile stops; what was written after it goes
    closing_ = true;
    if (state_ == State::wrapped)
        begin_shutdown();
    else if (state_ != State::closed)
        abort();
}

void SslTransport::begin_shutdown() {
    auto self = shared_from_this();
    retry_pending_write();
    drop_pending_writes();
    state_ = State::shutdown;
    ERR_clear_error();
    ++ssl_depth_;
    int r = SSL_shutdown(ssl_);  // close_notify goes out behind the application data
    --ssl_depth_;
    if (r == 1) return finish_shutdown();  // the peer's close_notify came first
    if (r < 0) {
        int e = SSL_get_error(ssl_, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return finish_shutdown();
    }
    if (params_.shutdown_timeout > 0)
        shutdown_timer_ =
            core_.call_at(core_.time() + params_.shutdown_timeout, [w = weak_from_this()] {
                auto s = w.lock();
                if (!s || s->state_ != State::shutdown) return;
                s->error_ = make_error_code(SslErrc::shutdown_timeout);
                s->state_ = State::closed;
                if (s->lower_) s->lower_->abort();
            });
    if (lower_) lower_->resume_reading();  // the answer must be read even if reading was paused
    // Called from inside data_received, the records behind are read from the loop: reading them
    // now would overwrite the bytes the protocol is still looking at.
    if (in_read_) {
        core_.post([self = shared_from_this()] {
            if (self->state_ == State::shutdown) self->shutdown_input();
        });
    } else {
        shutdown_input();
    }
}

void SslTransport::shutdown_input() {
    // Application data after our close_notify is dropped (asyncio does the same); we wait for the
    // peer's close_notify.
    while (state_ == State::shutdown) {
        std::size_t got = 0;
        ERR_clear_error();
        ++ssl_depth_;
        int r = SSL_read_ex(ssl_, scratch(), record_size, &got);
        --ssl_depth_;
        if (r == 1) continue;
        int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            ++ssl_depth_;
            SSL_shutdown(ssl_);
            --ssl_depth_;
        }
        finish_shutdown();
    }
}

void SslTransport::finish_shutdown() {
    state_ = State::closed;
    shutdown_timer_.cancel();
    if (lower_) lower_->close();  // flushes our close_notify, then connection_lost
}

void SslTransport::abort() {
    closing_ = true;
    state_ = State::closed;
    // The buffer is dropped, the records below with it (the lower transport aborts too).
    pending_plain_.clear();
    sent_count_ = 0;
    flow_.set(0);
    handshake_timer_.cancel();
    shutdown_timer_.cancel();
    if (lower_) lower_->abort();  // connection_lost follows from the lower transport's
}

void SslTransport::loop_closed() {
    // Every operation has completed or been cancelled and no callback runs any more; the lower
    // transport may be freed right after this (or was already): forget it. As asyncio, no
    // connection_lost.
    detached_ = closing_ = lost_done_ = true;
    state_ = State::closed;
    lower_ = nullptr;
    pending_plain_.clear();
    sent_count_ = 0;
    flow_.set(0);
    on_handshake_ = {};
    handshake_timer_.cancel();
    shutdown_timer_.cancel();
}

void SslTransport::protocol_failed(const std::string& what) {
    if (state_ == State::closed) return;
    error_ = make_error_code(SslErrc::protocol_error);
    state_ = State::closed;
    closing_ = true;
    (void)what;
    if (lower_) lower_->close();  // sends the alert OpenSSL wrote, if any
}

void SslTransport::abort_after_failure() {
    error_ = std::make_error_code(std::errc::connection_aborted);
    abort();
}

// ---- the rest -----------------------------------------------------------------------------------

std::any SslTransport::get_extra_info(std::string_view name, std::any default_value) const {
    if (name == "peername") return peername_.empty() ? default_value : std::any(peername_);
    if (name == "sockname") return sockname_.empty() ? default_value : std::any(sockname_);
    if (name == "socket")
        return lower_ ? lower_->get_extra_info(name, default_value) : default_value;
    if (name == "sslcontext") return std::any(params_.context);
    if (name == "ssl_object") return std::any(ssl_);
    if (name == "cipher") {
        const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
        if (!c) return default_value;
        return std::any(CipherInfo{SSL_CIPHER_get_name(c), SSL_get_version(ssl_),
                                   SSL_CIPHER_get_bits(c, nullptr)});
    }
    if (name == "compression") return default_value;  // never: OpenSSL 3 builds go without
    if (name == "alpn_protocol") {
        const unsigned char* p = nullptr;
        unsigned len = 0;
        SSL_get0_alpn_selected(ssl_, &p, &len);
        if (len == 0) return default_value;
        return std::any(std::string(reinterpret_cast<const char*>(p), len));
    }
    if (name == "peercert") {
        // As Python's getpeercert(): only a certificate that was verified.
        if (params_.context->verify_mode() == VerifyMode::none ||
            SSL_get_verify_result(ssl_) != X509_V_OK)
            return default_value;
        X509* cert = SSL_get0_peer_certificate(ssl_);
        if (!cert) return default_value;
        return std::any(describe(cert));
    }
    if (name == "server_hostname" && !params_.server_hostname.empty())
        return std::any(params_.server_hostname);
    return default_value;
}

void SslTransport::set_protocol(std::unique_ptr<BaseProtocol> protocol) {
    if (!protocol) throw std::invalid_argument("set_protocol(nullptr)");
    auto kind = protocol->kind();
    if (kind != BaseProtocol::Kind::stream && kind != BaseProtocol::Kind::buffered)
        throw std::invalid_argument("a stream transport needs a Protocol or a BufferedProtocol");
    if (detached_) {  // the loop is gone: nothing runs that could still use the old one
        protocol_ = std::move(protocol);
        return;
    }
    // The old protocol may be the caller: it is freed once the current callback has returned.
    retire(std::exchange(protocol_, std::move(protocol)));
}

// ---- wiring into create_connection / create_server / start_tls --------------------------------

ProtocolFactory ssl_server_factory(LoopCore& core, ProtocolFactory factory,
                                   const ServerOptions& o) {
    if (!o.ssl->is_server())
        throw std::invalid_argument(
            "create_server needs a server SslContext (SslContext::server())");
    SslParams params{o.ssl, true, {}, o.ssl_handshake_timeout, o.ssl_shutdown_timeout};
    return [&core, factory = std::move(factory), params]() -> std::unique_ptr<BaseProtocol> {
        auto t = std::make_shared<SslTransport>(core, factory(), params, false);
        return std::make_unique<SslLowerProtocol>(std::move(t));
    };
}

Future<Connection<>> ssl_connect(LoopCore& core, int fd, ProtocolFactory& factory,
                                 const ConnectOptions& o, const std::string& host) {
    Future<Connection<>> fut(core.loop);
    std::shared_ptr<SslTransport> t;
    bool handed = false;  // the lower transport owns fd
    try {
        if (o.ssl->is_server())
            throw std::invalid_argument(
                "create_connection needs a client SslContext (SslContext::client())");
        SslParams params{o.ssl, false, o.server_hostname.empty() ? host : o.server_hostname,
                         o.ssl_handshake_timeout, o.ssl_shutdown_timeout};
        if (params.server_hostname.empty() && o.ssl->check_hostname())
            throw std::invalid_argument("check_hostname requires server_hostname");
        t = std::make_shared<SslTransport>(core, factory(), std::move(params), false);
        BaseProtocol* p = t->get_protocol();
        t->set_on_handshake([fut, w = std::weak_ptr<SslTransport>(t), p](std::exception_ptr e) {
            if (fut.done()) return;
            if (e)
                fut.set_exception(e);
            else
                fut.set_result(Connection<>{w.lock(), p});
        });
        // A caller that gave up waiting (cancelled, timed out) gets no connection left open.
        fut.add_done_callback([fut, w = std::weak_ptr<SslTransport>(t)] {
            if (fut.cancelled())
                if (auto s = w.lock()) s->abort();
        });
        make_socket_transport(core, fd, std::make_unique<SslLowerProtocol>(t));
        handed = true;
    } catch (...) {
        if (!handed) ::close(fd);
        if (!fut.done()) fut.set_exception(std::current_exception());
    }
    return fut;
}

}  // namespace aioring::detail
