// SPDX-License-Identifier: Apache-2.0
// TLS transports between our own client and server on loopback: handshake, echo, the close
// matrix (close_notify both ways, bare TCP close), timeouts, verification failures, flow control
// with bulk data, BufferedProtocol, TLS 1.2/1.3, ALPN, SNI and start_tls. Certificates are made
// by the openssl command-line tool into a temporary directory.
#include "support.hpp"
#include "tls_certs.hpp"

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

using namespace testing;

namespace {

// Echoes every byte; keeps reading bounded while its writing is paused.
struct Echo : Protocol {
    Transport* t = nullptr;
    Events* ev = nullptr;
    bool close_after_first = false;
    void connection_made(Transport& tr) override {
        t = &tr;
        if (ev) ++ev->made;
    }
    void data_received(std::string_view d) override {
        t->write(d);
        if (close_after_first) t->close();
    }
    bool eof_received() override {
        if (ev) ++ev->eof;
        return false;
    }
    void pause_writing() override { t->pause_reading(); }
    void resume_writing() override { t->resume_reading(); }
    void connection_lost(std::error_code ec) override {
        if (ev) {
            ++ev->lost;
            ev->lost_error = ec;
        }
    }
};

struct TlsServer {
    std::shared_ptr<Server> server;
    std::uint16_t port = 0;
    Events ev;
    TlsServer(EventLoop& loop, std::shared_ptr<SslContext> ctx, bool close_after_first = false,
              double handshake_timeout = 60) {
        ServerOptions o;
        o.ssl = std::move(ctx);
        o.ssl_handshake_timeout = handshake_timeout;
        server = run(loop, loop.create_server(
                               [this, close_after_first] {
                                   auto p = std::make_unique<Echo>();
                                   p->ev = &ev;
                                   p->close_after_first = close_after_first;
                                   return p;
                               },
                               "127.0.0.1", 0, o));
        port = server->addresses()[0].port();
    }
    void close(EventLoop& loop) {
        server->close();
        run(loop, server->wait_closed());
    }
};

ConnectOptions tls(std::shared_ptr<SslContext> ctx, std::string hostname = "localhost") {
    ConnectOptions o;
    o.ssl = std::move(ctx);
    o.server_hostname = std::move(hostname);
    return o;
}

template <class T>
std::string failure(EventLoop& loop, Future<T> f) {
    REQUIRE(run_until(loop, [&] { return f.done(); }));
    try {
        f.result();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

}  // namespace

// A stream server handler: echoes one line, then closes (close_notify).
Task<void> echo_line(StreamReader reader, StreamWriter writer) {
    std::string line = co_await reader.readline();
    writer.write(line);
    co_await writer.drain();
    writer.close();
    co_await writer.wait_closed();
}

Task<std::string> stream_client(std::uint16_t port, ConnectOptions options) {
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", port, default_stream_limit, options);
    writer.write("hello over TLS streams\n");
    co_await writer.drain();
    const std::string version = writer.extra<CipherInfo>("cipher").value_or(CipherInfo{}).version;
    std::string line = co_await reader.readline();
    std::string rest = co_await reader.read();  // "" at the server's close_notify
    writer.close();
    co_await writer.wait_closed();
    co_return line + "|" + rest + "|" + version;
}

TEST_SUITE("ssl transport") {
    TEST_CASE("streams pass TLS through: start_server and open_connection with ssl") {
        EventLoop loop;
        ExceptionLog log(loop);
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, start_server(echo_line, "127.0.0.1", 0, default_stream_limit, so));
        auto co = tls(client_ctx());
        auto got = run(loop, stream_client(server->addresses()[0].port(), co));
        CHECK(got == "hello over TLS streams\n||TLSv1.3");
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "handshake, echo, and a client close: close_notify both ways, clean connection_lost") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx());
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", srv.port, tls(client_ctx())));
        CHECK(ev.made == 1);
        auto& t = *conn.transport;
        CHECK(!t.can_write_eof());
        CHECK_THROWS_AS(t.write_eof(), std::logic_error);
        t.write("hello ");
        t.writelines({"TLS ", "world"});
        REQUIRE(run_until(loop, [&] { return ev.data == "hello TLS world"; }));
        auto cipher = t.extra<CipherInfo>("cipher");
        REQUIRE(cipher);
        CHECK(cipher->version == "TLSv1.3");
        CHECK(cipher->secret_bits >= 128);
        auto cert = t.extra<PeerCertificate>("peercert");
        REQUIRE(cert);
        CHECK(cert->subject.find("CN=localhost") != std::string::npos);
        CHECK(cert->issuer.find("CN=aioring-test-ca") != std::string::npos);
        CHECK(std::find(cert->subject_alt_names.begin(), cert->subject_alt_names.end(),
                        "DNS:localhost") != cert->subject_alt_names.end());
        CHECK(t.extra<ssl_st*>("ssl_object").value_or(nullptr) != nullptr);
        CHECK(t.extra<std::shared_ptr<SslContext>>("sslcontext").value_or(nullptr) != nullptr);
        CHECK(t.extra<SocketAddress>("peername")->port() == srv.port);
        CHECK(t.extra<int>("socket").value_or(-1) >= 0);
        CHECK(!t.get_extra_info("compression").has_value());
        CHECK(!t.get_extra_info("alpn_protocol").has_value());
        t.close();
        CHECK(t.is_closing());
        REQUIRE(run_until(loop, [&] { return ev.lost == 1 && srv.ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(ev.eof == 0);
        CHECK(srv.ev.eof == 1);  // our close_notify reached it as EOF
        CHECK(!srv.ev.lost_error);
        CHECK(ev.order_ok);
        t.write("ignored after close");
        conn.transport.reset();
        REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
        srv.close(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE("the server closes first: eof_received, then a clean connection_lost") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx(), /*close_after_first=*/true);
        auto conn = run(loop, loop.create_connection(
                                  [&] { return std::make_unique<RecordingProtocol>(ev, true); },
                                  "127.0.0.1", srv.port, tls(client_ctx())));
        conn.transport->write("bye");
        REQUIRE(run_until(loop, [&] { return ev.lost == 1 && srv.ev.lost == 1; }));
        CHECK(ev.data == "bye");
        CHECK(ev.eof == 1);
        CHECK(!ev.lost_error);
        CHECK(!srv.ev.lost_error);
        CHECK(ev.order_ok);
        srv.close(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a peer that closes TCP without close_notify: connection_lost with an error, no eof") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        struct Dropper : Protocol {
            Transport* t = nullptr;
            void connection_made(Transport& tr) override { t = &tr; }
            void data_received(std::string_view) override {
                // Half-close the TCP connection under TLS: a truncation attack looks like this.
                ::shutdown(*t->extra<int>("socket"), SHUT_WR);
            }
        };
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, loop.create_server([] { return std::make_unique<Dropper>(); },
                                                   "127.0.0.1", 0, so));
        auto conn = run(loop, loop.create_connection(
                                  [&] { return std::make_unique<RecordingProtocol>(ev); },
                                  "127.0.0.1", server->addresses()[0].port(), tls(client_ctx())));
        conn.transport->write("x");
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.eof == 0);
        CHECK(ev.lost_error == SslErrc::eof_without_close_notify);
        CHECK(ev.order_ok);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("abort() completes at once, without close_notify") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx());
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", srv.port, tls(client_ctx())));
        conn.transport->write("x");
        REQUIRE(run_until(loop, [&] { return ev.data == "x"; }));
        conn.transport->write(std::string(100000, 'x'));
        conn.transport->abort();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1 && srv.ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(srv.ev.eof == 0);
        CHECK(srv.ev.lost_error);  // the server saw a bare TCP close (or a reset)
        srv.close(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE("verification failures name the cause: unknown CA, wrong host name") {
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx());
        // The system store does not know our test CA.
        auto msg =
            failure(loop, loop.create_connection([] { return std::make_unique<Echo>(); },
                                                 "127.0.0.1", srv.port, tls(SslContext::client())));
        CHECK(msg.find("certificate verify failed") != std::string::npos);
        // The right CA, the wrong name.
        msg = failure(loop,
                      loop.create_connection([] { return std::make_unique<Echo>(); }, "127.0.0.1",
                                             srv.port, tls(client_ctx(), "example.com")));
        CHECK(msg.find("certificate verify failed") != std::string::npos);
        CHECK_MESSAGE(msg.find("hostname mismatch, certificate is not valid for 'example.com'") !=
                          std::string::npos,
                      msg);
        // An IP address is checked against the certificate's IP entries.
        auto ok = run(loop, loop.create_connection([] { return std::make_unique<Echo>(); },
                                                   "127.0.0.1", srv.port, tls(client_ctx(), "")));
        REQUIRE(run_until(loop, [&] { return srv.ev.made == 1; }));
        ok.transport->abort();
        // A self-signed certificate.
        TlsServer other(loop, [] {
            auto c = SslContext::server();
            c->load_cert_chain(certs().other_cert, certs().other_key);
            return c;
        }());
        msg = failure(loop, loop.create_connection([] { return std::make_unique<Echo>(); },
                                                   "127.0.0.1", other.port, tls(client_ctx())));
        CHECK(msg.find("certificate verify failed") != std::string::npos);
        REQUIRE(run_until(loop, [&] { return srv.ev.lost == 1; }));
        CHECK(srv.ev.made == 1);  // only the good handshake reached the server's protocol
        CHECK(other.ev.made == 0);
        // The servers heard of the failed handshakes through the exception handler.
        REQUIRE(run_until(loop, [&] { return log.count == 3; }));
        for (auto& m : log.messages) CHECK(m.find("SSL handshake failed") == 0);
        srv.close(loop);
        other.close(loop);
    }

    TEST_CASE("handshake timeout and a peer that disconnects mid-handshake fail the connection") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        struct Silent : Protocol {};
        auto silent = run(
            loop, loop.create_server([] { return std::make_unique<Silent>(); }, "127.0.0.1", 0));
        auto o = tls(client_ctx());
        o.ssl_handshake_timeout = 0.2;
        auto msg =
            failure(loop, loop.create_connection([] { return std::make_unique<Echo>(); },
                                                 "127.0.0.1", silent->addresses()[0].port(), o));
        CHECK(msg.find("SSL handshake is taking longer than 0.2 seconds") != std::string::npos);

        struct Hangup : Protocol {
            void connection_made(Transport& t) override { t.close(); }
        };
        auto hangup = run(
            loop, loop.create_server([] { return std::make_unique<Hangup>(); }, "127.0.0.1", 0));
        msg = failure(loop,
                      loop.create_connection([] { return std::make_unique<Echo>(); }, "127.0.0.1",
                                             hangup->addresses()[0].port(), tls(client_ctx())));
        CHECK(msg.find("SSL handshake failed") != std::string::npos);

        // Server side: a client that connects and says nothing.
        TlsServer srv(loop, server_ctx(), false, 0.2);
        auto plain = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", srv.port));
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(srv.ev.made == 0);
        REQUIRE(log.count == 1);
        CHECK(log.messages[0].find("SSL handshake is taking longer") != std::string::npos);
        for (auto* s : {&silent, &hangup}) {
            (*s)->close();
            run(loop, (*s)->wait_closed());
        }
        srv.close(loop);
    }

    TEST_CASE("bulk data in both directions stays intact under flow control") {
        // 100 MiB each way (about 2 s under ASan); AIORING_TLS_BULK_MIB changes it.
        const std::size_t total =
            std::getenv("AIORING_TLS_BULK_MIB")
                ? std::strtoul(std::getenv("AIORING_TLS_BULK_MIB"), nullptr, 10) << 20
                : 100u << 20;
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx());
        struct Pump : Protocol {
            Transport* t = nullptr;
            const std::string chunk = pattern(256 * 1024);
            std::size_t total = 0, sent = 0, received = 0, pauses = 0;
            bool paused = false, ok = true;
            void connection_made(Transport& tr) override { t = &tr; }
            void fill() {
                while (!paused && sent < total) {
                    std::size_t n = std::min(chunk.size(), total - sent);
                    sent += n;
                    t->write(std::string_view(chunk).substr(0, n));
                }
            }
            void data_received(std::string_view d) override {
                for (std::size_t i = 0; i < d.size() && ok; i += 4093) {
                    std::size_t pos = (received + i) % chunk.size();
                    if (d[i] != chunk[pos]) ok = false;
                }
                received += d.size();
            }
            void pause_writing() override {
                paused = true;
                ++pauses;
            }
            void resume_writing() override {
                paused = false;
                fill();
            }
        };
        auto conn = run(loop, loop.create_connection([] { return std::make_unique<Pump>(); },
                                                     "127.0.0.1", srv.port, tls(client_ctx())));
        auto& p = conn.as<Pump>();
        p.total = total;
        p.fill();
        REQUIRE(run_until(
            loop, [&] { return p.received == total || !p.ok; }, 120));
        CHECK(p.ok);
        CHECK(p.pauses > 0);
        MESSAGE("bulk: " << p.received << " bytes echoed, " << p.pauses << " pauses");
        CHECK(conn.transport->get_write_buffer_size() == 0);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return srv.ev.lost == 1; }));
        srv.close(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE("a BufferedProtocol over TLS gets exactly the plaintext bytes") {
        EventLoop loop;
        ExceptionLog log(loop);
        struct Result {
            std::string got;
            int lost = 0, eof = 0;
        } r;
        struct Sink : BufferedProtocol {
            Result* r;
            char buf[1000];
            explicit Sink(Result* res) : r(res) {}
            std::span<std::byte> get_buffer(std::size_t) override {
                return {reinterpret_cast<std::byte*>(buf), sizeof buf};
            }
            void buffer_updated(std::size_t n) override { r->got.append(buf, n); }
            bool eof_received() override {
                ++r->eof;
                return false;
            }
            void connection_lost(std::error_code) override { ++r->lost; }
        };
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, loop.create_server([&] { return std::make_unique<Sink>(&r); },
                                                   "127.0.0.1", 0, so));
        const std::string data = pattern(1 << 20);
        auto conn =
            run(loop, loop.create_connection([] { return std::make_unique<Echo>(); }, "127.0.0.1",
                                             server->addresses()[0].port(), tls(client_ctx())));
        conn.transport->write(data);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return r.lost == 1; }));
        CHECK(r.eof == 1);
        CHECK(r.got.size() == data.size());
        CHECK((r.got == data));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("close() inside data_received leaves the received view intact") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        struct CloseFirst : Protocol {
            Transport* t = nullptr;
            std::string* seen;
            explicit CloseFirst(std::string* s) : seen(s) {}
            void connection_made(Transport& tr) override { t = &tr; }
            void data_received(std::string_view d) override {
                t->close();
                if (seen->empty()) seen->assign(d);  // after close(): the view must still be ours
            }
        };
        std::string seen;
        ServerOptions so;
        so.ssl = server_ctx();
        auto server =
            run(loop, loop.create_server([&] { return std::make_unique<CloseFirst>(&seen); },
                                         "127.0.0.1", 0, so));
        auto conn = run(loop, loop.create_connection(
                                  [&] { return std::make_unique<RecordingProtocol>(ev); },
                                  "127.0.0.1", server->addresses()[0].port(), tls(client_ctx())));
        // Two records in one segment: the second must not be decrypted over the first.
        conn.transport->write(std::string(1000, 'A'));
        conn.transport->write(std::string(1000, 'B'));
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(seen == std::string(1000, 'A'));
        CHECK(ev.eof == 1);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("flow control counts application bytes: the high-water mark in plaintext") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx());
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", srv.port, tls(client_ctx())));
        auto& t = *conn.transport;
        CHECK(t.get_write_buffer_limits() ==
              std::pair<std::size_t, std::size_t>{default_low_water, default_high_water});
        CHECK_THROWS_AS(t.set_write_buffer_limits(100, 200), std::invalid_argument);
        t.set_write_buffer_limits(32 * 1024);
        CHECK(t.get_write_buffer_limits() ==
              std::pair<std::size_t, std::size_t>{8 * 1024, 32 * 1024});
        REQUIRE(run_until(loop,
                          [&] { return t.get_write_buffer_size() == 0; }));  // the handshake's tail
        t.write(std::string(32 * 1024, 'x'));  // exactly the mark: not strictly over it
        CHECK(ev.pauses == 0);
        CHECK(t.get_write_buffer_size() == 32 * 1024);  // plaintext, not the records' size
        t.write(std::string(1024, 'y'));
        CHECK(ev.pauses == 1);
        REQUIRE(run_until(loop, [&] { return ev.resumes == 1; }));
        REQUIRE(run_until(loop, [&] { return ev.data.size() == 33 * 1024; }));
        t.close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.order_ok);
        srv.close(loop);
        CHECK(log.count == 0);
    }

    namespace {
    Task<void> upgrade_writer(StreamWriter writer, bool* upgraded) {
        StartTlsOptions o;
        o.server_hostname = "localhost";
        co_await writer.start_tls(client_ctx(), o);
        *upgraded = true;
    }
    Task<void> drain_writer(StreamWriter writer, bool* started, bool* drained) {
        *started = true;
        co_await writer.drain();  // done at once unless the transport paused writing
        *drained = true;
    }
    // Counts the plaintext a TLS server side receives.
    struct Sink : Protocol {
        std::size_t got = 0;
        void data_received(std::string_view d) override { got += d.size(); }
    };
    }  // namespace

    TEST_CASE(
        "writes made during start_tls's handshake count: 64 MiB pause the writer until sent") {
        EventLoop loop;
        ExceptionLog log(loop);
        TcpListener listener;
        auto pair = run(loop, open_connection("127.0.0.1", listener.port));
        const int server_fd = listener.accept();
        REQUIRE(server_fd >= 0);
        StreamWriter writer = pair.writer;
        Transport* plain = writer.transport();
        bool upgraded = false;
        loop.create_task(upgrade_writer(writer, &upgraded));
        // The writer points at the TLS transport as soon as start_tls has begun; nobody answers
        // the ClientHello yet, so the handshake stays pending.
        REQUIRE(run_until(loop, [&] { return writer.transport() != plain; }));
        Transport* tls_t = writer.transport();
        const std::size_t total = 64u << 20;
        writer.write(std::string(total, 'x'));
        CHECK(!upgraded);
        CHECK(tls_t->get_write_buffer_size() == total);  // the pending plaintext counts
        bool started = false, drained = false;
        loop.create_task(drain_writer(writer, &started, &drained));
        REQUIRE(run_until(loop, [&] { return started; }));
        CHECK(!drained);  // pause_writing came: drain() waits
        // Now the peer upgrades too; the handshake completes and the bytes drain.
        Sink* sink = nullptr;
        auto server = run(loop, loop.connect_accepted_socket(
                                    [&] {
                                        auto p = std::make_unique<Sink>();
                                        sink = p.get();
                                        return p;
                                    },
                                    server_fd));
        StartTlsOptions so;
        so.server_side = true;
        auto server_tls = run(loop, loop.start_tls(server.transport, server_ctx(), so));
        REQUIRE(run_until(
            loop, [&] { return upgraded && drained && sink->got == total; }, 60));
        CHECK(tls_t->get_write_buffer_size() == 0);
        writer.close();
        server_tls->close();
        REQUIRE(run_until(loop, [&] { return writer.transport() == nullptr; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("pause_reading holds decrypted data until resume_reading") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TlsServer srv(loop, server_ctx());
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", srv.port, tls(client_ctx())));
        conn.transport->pause_reading();
        CHECK(!conn.transport->is_reading());
        conn.transport->write("held");
        bool tick = false;
        loop.call_later(0.1, [&] { tick = true; });
        REQUIRE(run_until(loop, [&] { return tick; }));
        CHECK(ev.data.empty());
        conn.transport->resume_reading();
        REQUIRE(run_until(loop, [&] { return ev.data == "held"; }));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        srv.close(loop);
        CHECK(log.count == 0);
    }

    TEST_CASE("TLS 1.2 and 1.3, ALPN agreement and SNI from server_hostname") {
        EventLoop loop;
        ExceptionLog log(loop);
        auto sctx = server_ctx();
        sctx->set_alpn_protocols({"h2", "http/1.1"});
        std::string sni;
        std::string server_alpn;
        struct Peek : Protocol {
            std::string* sni;
            std::string* alpn;
            void connection_made(Transport& t) override {
                if (auto* n = SSL_get_servername(*t.extra<ssl_st*>("ssl_object"),
                                                 TLSEXT_NAMETYPE_host_name))
                    *sni = n;
                *alpn = t.extra<std::string>("alpn_protocol").value_or("");
            }
        };
        ServerOptions so;
        so.ssl = sctx;
        auto server = run(loop, loop.create_server(
                                    [&] {
                                        auto p = std::make_unique<Peek>();
                                        p->sni = &sni;
                                        p->alpn = &server_alpn;
                                        return p;
                                    },
                                    "127.0.0.1", 0, so));
        const auto port = server->addresses()[0].port();
        for (auto version : {TlsVersion::tls1_2, TlsVersion::tls1_3}) {
            auto cctx = client_ctx();
            cctx->set_minimum_version(version);
            cctx->set_maximum_version(version);
            cctx->set_alpn_protocols({"http/1.1", "spdy/1"});
            sni.clear();
            auto conn =
                run(loop, loop.create_connection([] { return std::make_unique<Echo>(); },
                                                 "127.0.0.1", port, tls(cctx, "localhost")));
            CHECK(conn.transport->extra<CipherInfo>("cipher")->version ==
                  (version == TlsVersion::tls1_2 ? "TLSv1.2" : "TLSv1.3"));
            CHECK(conn.transport->extra<std::string>("alpn_protocol").value_or("") == "http/1.1");
            REQUIRE(run_until(loop, [&] { return !sni.empty(); }));
            CHECK(sni == "localhost");
            CHECK(server_alpn == "http/1.1");
            conn.transport->close();
            bool closed = false;
            loop.call_later(0.05, [&] { closed = true; });
            REQUIRE(run_until(loop, [&] { return closed; }));
        }
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("start_tls upgrades in place; bytes that came with STARTTLS are not lost") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        auto sctx = server_ctx();
        // Server: a plain line protocol; on "STARTTLS\n" it pauses reading and upgrades, handing
        // what followed the line in the same read to TLS (what comes later is held by the paused
        // plain transport and goes to TLS too).
        struct Starter : Protocol {
            EventLoop* loop;
            std::shared_ptr<SslContext> ctx;
            std::shared_ptr<Transport>* self_handle;
            Transport* t = nullptr;
            std::string got, tls_data;
            bool upgraded = false;
            bool* lost;
            std::shared_ptr<Transport>
                tls;  // the TLS transport owns this protocol: let go at the end
            void connection_made(Transport& tr) override { t = &tr; }
            void connection_lost(std::error_code) override {
                *lost = true;
                tls.reset();
            }
            void data_received(std::string_view d) override {
                if (upgraded) {
                    tls_data.append(d);
                    tls->write(d);
                    return;
                }
                got.append(d);
                auto nl = got.find('\n');
                if (nl == std::string::npos) return;
                t->pause_reading();
                StartTlsOptions o;
                o.server_side = true;
                o.initial_data = got.substr(nl + 1);
                upgraded = true;
                auto f = loop->start_tls(*self_handle, ctx, std::move(o));
                f.add_done_callback([this, f] { tls = f.result(); });
            }
        };
        std::shared_ptr<Transport> server_plain;
        Starter* starter = nullptr;
        bool server_lost = false;
        SocketPair sp;
        auto sconn = run(loop, loop.connect_accepted_socket(
                                   [&] {
                                       auto p = std::make_unique<Starter>();
                                       p->loop = &loop;
                                       p->ctx = sctx;
                                       p->self_handle = &server_plain;
                                       p->lost = &server_lost;
                                       starter = p.get();
                                       return p;
                                   },
                                   sp.take_a()));
        server_plain = sconn.transport;
        // Client: plain first; it sends STARTTLS and upgrades at once, so its ClientHello shares a
        // write with the command.
        auto cconn = run(loop, loop.connect_accepted_socket(
                                   [&] { return std::make_unique<RecordingProtocol>(ev); },
                                   std::exchange(sp.b, -1)));
        cconn.transport->write("STARTTLS\n");
        StartTlsOptions co;
        co.server_hostname = "localhost";
        auto ctls = run(loop, loop.start_tls(cconn.transport, client_ctx(), co));
        REQUIRE(run_until(loop, [&] { return starter->tls != nullptr; }));
        CHECK(ev.made == 1);  // not called again
        CHECK(dynamic_cast<RecordingProtocol*>(ctls->get_protocol()) != nullptr);
        ctls->write("secret");
        REQUIRE(run_until(loop, [&] { return ev.data == "secret"; }));
        CHECK(starter->tls_data == "secret");
        CHECK(starter->tls->extra<CipherInfo>("cipher").has_value());
        ctls->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1 && server_lost; }));
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "start_tls carries a paused writer over: resume_writing comes from the TLS transport") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        const std::size_t plain = 1 << 20;
        // The server side reads `plain` bytes of clear text, then upgrades with what followed.
        struct Upgrader : Protocol {
            EventLoop* loop;
            std::shared_ptr<SslContext> ctx;
            std::shared_ptr<Transport>* handle;
            std::size_t plain, seen = 0;
            std::shared_ptr<Transport> tls;
            std::string tls_data;
            void data_received(std::string_view d) override {
                if (seen >= plain) {  // through the TLS transport now
                    tls_data.append(d);
                    return;
                }
                const std::size_t take = std::min(d.size(), plain - seen);
                seen += take;
                if (seen < plain) return;
                (*handle)->pause_reading();
                StartTlsOptions o;
                o.server_side = true;
                o.initial_data = std::string(d.substr(take));
                auto f = loop->start_tls(*handle, ctx, std::move(o));
                f.add_done_callback([this, f] { tls = f.result(); });
            }
            void connection_lost(std::error_code) override { tls.reset(); }
        };
        SocketPair sp;
        auto client =
            run(loop, loop.connect_accepted_socket(
                          [&] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        client.transport->set_write_buffer_limits(64 * 1024);
        client.transport->write(std::string(plain, 'p'));
        REQUIRE(ev.pauses == 1);  // nobody reads the other end yet
        StartTlsOptions co;
        co.server_hostname = "localhost";
        auto tls_future = loop.start_tls(client.transport, client_ctx(), co);
        std::shared_ptr<Transport> server_plain;
        Upgrader* up = nullptr;
        auto server = run(loop, loop.connect_accepted_socket(
                                    [&] {
                                        auto p = std::make_unique<Upgrader>();
                                        p->loop = &loop;
                                        p->ctx = server_ctx();
                                        p->handle = &server_plain;
                                        p->plain = plain;
                                        up = p.get();
                                        return p;
                                    },
                                    std::exchange(sp.b, -1)));
        server_plain = server.transport;
        auto tls = run(loop, tls_future);
        REQUIRE(run_until(loop, [&] { return ev.resumes == 1 && up->tls != nullptr; }));
        CHECK(ev.order_ok);  // pause (plain) and resume (TLS) paired, nothing doubled
        tls->write("after");
        REQUIRE(run_until(loop, [&] { return up->tls_data == "after"; }));
        tls->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(log.count == 0);
    }

    TEST_CASE("close() gives up after ssl_shutdown_timeout when the peer never answers") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        // The server's protocol stops reading, so our close_notify is never read nor answered.
        struct Deaf : Protocol {
            Transport** out;
            explicit Deaf(Transport** o) : out(o) {}
            void connection_made(Transport& t) override {
                *out = &t;
                t.pause_reading();
            }
        };
        Transport* deaf = nullptr;
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, loop.create_server([&] { return std::make_unique<Deaf>(&deaf); },
                                                   "127.0.0.1", 0, so));
        auto o = tls(client_ctx());
        o.ssl_shutdown_timeout = 0.2;
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", server->addresses()[0].port(), o));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(ev.lost_error == SslErrc::shutdown_timeout);
        REQUIRE(deaf != nullptr);
        deaf->abort();  // it would never notice the connection is gone: it does not read
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("TLS over a Unix socket: create_unix_server and create_unix_connection with ssl") {
        Events sev;
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        const std::string path = certs().dir + "/tls.sock";
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, loop.create_unix_server(
                                    [&] {
                                        auto p = std::make_unique<Echo>();
                                        p->ev = &sev;
                                        return p;
                                    },
                                    path, so));
        auto conn = run(loop, loop.create_unix_connection(
                                  [&] { return std::make_unique<RecordingProtocol>(ev); }, path,
                                  tls(client_ctx())));
        conn.transport->write("over unix");
        REQUIRE(run_until(loop, [&] { return ev.data == "over unix"; }));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1 && sev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(!sev.lost_error);
        CHECK_THROWS_WITH_AS(loop.create_unix_connection([] { return std::make_unique<Echo>(); },
                                                         path, tls(client_ctx(), "")),
                             "check_hostname requires server_hostname", std::invalid_argument);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("client certificates: the server sees peercert; no certificate, no connection") {
        Events ev;
        Events ev2;
        EventLoop loop;
        ExceptionLog log(loop);
        auto sctx = server_ctx();
        sctx->set_verify_mode(VerifyMode::required);
        sctx->load_verify_locations(certs().ca);
        std::string client_subject;
        int made = 0;
        struct Peer : Protocol {
            std::string* subject;
            int* made;
            void connection_made(Transport& t) override {
                ++*made;
                if (auto c = t.extra<PeerCertificate>("peercert")) *subject = c->subject;
            }
        };
        ServerOptions so;
        so.ssl = sctx;
        auto server = run(loop, loop.create_server(
                                    [&] {
                                        auto p = std::make_unique<Peer>();
                                        p->subject = &client_subject;
                                        p->made = &made;
                                        return p;
                                    },
                                    "127.0.0.1", 0, so));
        const auto port = server->addresses()[0].port();
        auto cctx = client_ctx();
        cctx->load_cert_chain(certs().cert, certs().key);
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", port, tls(cctx)));
        REQUIRE(run_until(loop, [&] { return made == 1; }));
        CHECK(client_subject.find("CN=localhost") != std::string::npos);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        // Without a certificate: TLS 1.3 lets the client finish first; the server's alert then ends
        // the connection with an error.
        auto f = loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev2); },
                                        "127.0.0.1", port, tls(client_ctx()));
        REQUIRE(run_until(loop, [&] { return f.done() && (f.exception() || ev2.lost == 1); }));
        if (!f.exception()) CHECK(ev2.lost_error);
        CHECK(made == 1);
        REQUIRE(run_until(loop, [&] { return log.count == 1; }));
        CHECK(log.messages[0].find("SSL handshake failed") == 0);
        server->close();
        run(loop, server->wait_closed());
    }

    TEST_CASE("misuse throws: a server context for a client, check_hostname without a name") {
        EventLoop loop;
        auto ctx = SslContext::client();
        CHECK_THROWS_AS(ctx->set_verify_mode(VerifyMode::none), std::invalid_argument);
        ctx->set_check_hostname(false);
        ctx->set_verify_mode(VerifyMode::none);
        CHECK(ctx->verify_mode() == VerifyMode::none);
        CHECK_THROWS_WITH_AS(SslContext::server()->load_cert_chain("/nonexistent/cert.pem"),
                             doctest::Contains("/nonexistent/cert.pem"), SslError);
        CHECK_THROWS_AS(ctx->set_alpn_protocols({""}), std::invalid_argument);
        CHECK_THROWS_AS(ctx->set_ciphers("NOT-A-CIPHER"), SslError);
        ServerOptions so;
        so.ssl = SslContext::client();
        CHECK_THROWS_AS(run(loop, loop.create_server([] { return std::make_unique<Echo>(); },
                                                     "127.0.0.1", 0, so)),
                        std::invalid_argument);
    }
}
