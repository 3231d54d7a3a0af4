// SPDX-License-Identifier: Apache-2.0
// StreamWriter::start_tls: a plain stream connection (start_server / open_connection) upgraded
// to TLS in place, after which the same reader and writer carry plaintext over TLS; a failed
// verification; unread plaintext in the reader. Certificates are made by the openssl tool.
#include "support.hpp"
#include "tls_certs.hpp"

#include <cstdlib>
#include <filesystem>

using namespace testing;

namespace {

// What the server side of a connection saw.
struct ServerSide {
    int calls = 0;      // the client callback runs once: no second connection_made after TLS
    std::string error;  // start_tls's exception, if it failed
    bool closing_after_error = false;
    std::optional<CipherInfo> cipher;
    std::size_t lines = 0;
    bool eof = false;
    bool done = false;
};

// A line protocol: "STARTTLS\n" is answered "OK\n" (plus `extra`), then the connection is
// upgraded (the server side, inferred from start_server) and every line is echoed until EOF.
Task<void> serve(StreamReader reader, StreamWriter writer, std::shared_ptr<SslContext> ctx,
                 std::string extra, ServerSide* out) {
    ++out->calls;
    std::string cmd = co_await reader.readline();
    if (cmd != "STARTTLS\n") {
        out->error = "unexpected command: " + cmd;
        out->done = true;
        co_return;
    }
    writer.write("OK\n" + extra);
    try {
        co_await writer.start_tls(ctx);
    } catch (const std::exception& e) {
        out->error = e.what();
        out->closing_after_error = writer.is_closing();
        out->done = true;
        co_return;
    }
    out->cipher = writer.extra<CipherInfo>("cipher");
    for (;;) {
        std::string line = co_await reader.readline();
        if (line.empty()) break;  // the client's close_notify
        ++out->lines;
        writer.write(line);
        co_await writer.drain();
    }
    out->eof = reader.at_eof();
    writer.close();
    co_await writer.wait_closed();
    out->done = true;
}

struct LineServer {
    std::shared_ptr<aioring::Server> server;
    std::uint16_t port = 0;
    ServerSide side;
    LineServer(EventLoop& loop, std::string extra = {}) {
        auto ctx = server_ctx();
        ServerSide* out = &side;
        server = run(loop, start_server(
                               [ctx, extra, out](StreamReader r, StreamWriter w) {
                                   return serve(std::move(r), std::move(w), ctx, extra, out);
                               },
                               "127.0.0.1", 0));
        port = server->addresses()[0].port();
    }
    void close(EventLoop& loop) {
        server->close();
        run(loop, server->wait_closed());
    }
};

std::string line_of(std::size_t i, std::size_t n) {
    std::string s(n, static_cast<char>('a' + i % 26));
    s.back() = '\n';
    return s;
}

Task<std::string> read_lines(StreamReader reader, std::size_t count) {
    std::string all;
    for (std::size_t i = 0; i < count; ++i) all += co_await reader.readline();
    co_return all;
}

struct ClientSide {
    bool plain_before = false;  // no cipher before the upgrade
    std::optional<CipherInfo> cipher;
    std::string echoed;
    bool bulk_ok = false;
    bool closed_clean = false;
};

Task<void> client(std::uint16_t port, ClientSide* out) {
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    out->plain_before = !writer.extra<CipherInfo>("cipher").has_value();
    writer.write("STARTTLS\n");
    std::string ok = co_await reader.readline();
    if (ok != "OK\n") co_return;
    StartTlsOptions o;
    o.server_hostname = "localhost";
    co_await writer.start_tls(client_ctx(), o);
    out->cipher = writer.extra<CipherInfo>("cipher");

    writer.write("hello over TLS\n");
    co_await writer.drain();
    out->echoed = co_await reader.readline();

    // Bulk both ways with small limits, so that drain() waits on the TLS transport's flow
    // control; a reader task runs alongside so that neither side stalls the other.
    writer.transport()->set_write_buffer_limits(8 * 1024);
    constexpr std::size_t count = 200, size = 4096;
    EventLoop& loop = co_await get_running_loop();
    auto reading = loop.create_task(read_lines(reader, count));
    std::string sent;
    for (std::size_t i = 0; i < count; ++i) {
        std::string line = line_of(i, size);
        sent += line;
        writer.write(line);
        co_await writer.drain();
    }
    out->bulk_ok = (co_await reading) == sent;

    writer.close();  // close_notify: the server sees EOF, closes, and we lose cleanly
    co_await writer.wait_closed();
    out->closed_clean = true;
}

}  // namespace

TEST_SUITE("streams tls") {
    TEST_CASE("StreamWriter::start_tls upgrades a plain stream in place on both sides") {
        EventLoop loop;
        ExceptionLog log(loop);
        LineServer srv(loop);
        ClientSide c;
        run(loop, client(srv.port, &c));
        CHECK(c.plain_before);
        REQUIRE(c.cipher);
        CHECK(c.cipher->version.rfind("TLSv1.", 0) == 0);
        CHECK(c.echoed == "hello over TLS\n");
        CHECK(c.bulk_ok);
        CHECK(c.closed_clean);
        REQUIRE(run_until(loop, [&] { return srv.side.done; }));
        CHECK(srv.side.error.empty());
        CHECK(srv.side.cipher.has_value());
        CHECK(srv.side.lines == 201);
        CHECK(srv.side.calls == 1);
        CHECK(srv.side.eof);
        srv.close(loop);
        CHECK(log.count == 0);
    }

    namespace {
    struct Failed {
        std::string error;
        bool closing = false;
        std::error_code closed_with;
        std::string read_error;
    };

    Task<void> client_wrong_host(std::uint16_t port, Failed* out) {
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("STARTTLS\n");
        std::string ok = co_await reader.readline();
        if (ok != "OK\n") co_return;
        StartTlsOptions o;
        o.server_hostname = "wrong.example";
        try {
            co_await writer.start_tls(client_ctx(), o);
        } catch (const SslError& e) {
            out->error = e.what();
        }
        out->closing = writer.is_closing();
        try {
            co_await writer.wait_closed();
        } catch (const std::system_error& e) {
            out->closed_with = e.code();
        }
        try {
            (void)co_await reader.read(10);
        } catch (const std::system_error& e) {
            out->read_error = e.what();
        }
    }
    }  // namespace

    TEST_CASE(
        "start_tls with a host name the certificate does not cover fails and closes the stream") {
        EventLoop loop;
        ExceptionLog log(loop);
        LineServer srv(loop);
        Failed f;
        run(loop, client_wrong_host(srv.port, &f));
        CHECK(f.error.find("certificate verify failed") != std::string::npos);
        CHECK(f.error.find("wrong.example") != std::string::npos);
        CHECK(f.closing);
        CHECK(f.closed_with == make_error_code(SslErrc::certificate_verify_failed));
        CHECK(!f.read_error.empty());
        // The server's handshake fails too (our alert); its stream is closed as well.
        REQUIRE(run_until(loop, [&] { return srv.side.done; }));
        CHECK(!srv.side.error.empty());
        CHECK(srv.side.closing_after_error);
        srv.close(loop);
        CHECK(log.count == 0);
    }

    namespace {
    struct Unread {
        std::string error;
        std::string rest;
        bool still_plain = false;
    };

    Task<void> client_unread(std::uint16_t port, Unread* out) {
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("STARTTLS\n");
        // "OK\nEXTRA" came in one write: the reader holds "EXTRA" once "OK\n" is read.
        std::string ok = co_await reader.readexactly(3);
        if (ok != "OK\n") co_return;
        StartTlsOptions o;
        o.server_hostname = "localhost";
        try {
            co_await writer.start_tls(client_ctx(), o);
        } catch (const std::logic_error& e) {
            out->error = e.what();
        }
        // Nothing changed: still plain, and the bytes are still there.
        out->still_plain = !writer.extra<CipherInfo>("cipher").has_value() && !writer.is_closing();
        out->rest = co_await reader.readexactly(5);
        writer.close();
        co_await writer.wait_closed();
    }
    }  // namespace

    TEST_CASE("start_tls with unread bytes in the reader throws logic_error and changes nothing") {
        EventLoop loop;
        ExceptionLog log(loop);
        LineServer srv(loop, "EXTRA");
        Unread u;
        run(loop, client_unread(srv.port, &u));
        CHECK(u.error.find("5 unread bytes") != std::string::npos);
        CHECK(u.still_plain);
        CHECK(u.rest == "EXTRA");
        // The server's handshake meets a plain close.
        REQUIRE(run_until(loop, [&] { return srv.side.done; }));
        CHECK(!srv.side.error.empty());
        srv.close(loop);
        CHECK(log.count == 0);
    }

    namespace {
    // Reads (never answers) until EOF or an error.
    Task<void> sink(StreamReader reader, StreamWriter writer, std::size_t* got, bool* done) {
        try {
            for (;;) {
                std::string d = co_await reader.read(4096);
                if (d.empty()) break;
                *got += d.size();
            }
        } catch (const std::system_error&) {
        }
        writer.close();
        *done = true;
    }

    Task<void> upgrade(StreamWriter writer, std::shared_ptr<SslContext> ctx) {
        StartTlsOptions o;
        o.server_hostname = "localhost";
        co_await writer.start_tls(ctx, o);
    }
    }  // namespace

    TEST_CASE("cancelling start_tls during the handshake aborts the connection") {
        EventLoop loop;
        ExceptionLog log(loop);
        std::size_t got = 0;
        bool sink_done = false;
        auto server = run(loop, start_server(
                                    [&got, &sink_done](StreamReader r, StreamWriter w) {
                                        return sink(std::move(r), std::move(w), &got, &sink_done);
                                    },
                                    "127.0.0.1", 0));
        auto [reader, writer] =
            run(loop, open_connection("127.0.0.1", server->addresses()[0].port()));
        auto f = loop.create_task(upgrade(writer, client_ctx()));
        REQUIRE(run_until(loop, [&] { return got > 0; }));  // the ClientHello is out
        CHECK(!f.done());
        f.cancel();
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK(f.cancelled());
        CHECK(writer.is_closing());
        REQUIRE(run_until(loop, [&] { return writer.transport() == nullptr && sink_done; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }
}
