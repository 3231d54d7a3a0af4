// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the TLS server transport's record path fed garbage and truncated records.
// A socketpair: our end is wrapped (connect_accepted_socket) and upgraded with start_tls as the
// server; the other end is a peer thread that, by the first input byte, (0) sends the input raw
// in place of a handshake, (1) completes a real handshake (OpenSSL client) and then sends the
// input raw as if it were records, or (2) sends half of it as application data and the rest
// raw, cut anywhere. The transport must end with connection_lost once, every time: no crash,
// no hang, no leak.
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <aioring/aioring.hpp>
#include <aioring/ssl.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

using namespace aioring;

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "tls fuzzer: %s\n", what);
    std::abort();
}

struct Certs {
    std::string dir, cert, key;
    Certs() {
        char tmpl[] = "/tmp/aioring-fuzz-tls-XXXXXX";
        if (!::mkdtemp(tmpl)) violated("mkdtemp");
        dir = tmpl;
        cert = dir + "/cert.pem";
        key = dir + "/key.pem";
        const std::string cmd =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
            "-nodes -days 2 -subj /CN=localhost -keyout " +
            key + " -out " + cert + " >/dev/null 2>&1";
        if (std::system(cmd.c_str()) != 0) violated("openssl req failed");
    }
    ~Certs() { std::filesystem::remove_all(dir); }
};

class Sink final : public Protocol {
public:
    explicit Sink(int& lost) : lost_(lost) {}
    void data_received(std::string_view) override {}
    void connection_lost(std::error_code) override { ++lost_; }

private:
    int& lost_;
};

void send_all(int fd, const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;  // the server gave up on us: fine
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

void peer(int fd, int mode, const std::uint8_t* data, std::size_t size, std::atomic<bool>* done) {
    static SSL_CTX* ctx = [] {
        SSL_CTX* c = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
        return c;
    }();
    SSL* ssl = nullptr;
    std::size_t raw_from = 0;
    if (mode != 0) {
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1 && mode == 2 && size > 1) {
            raw_from = size / 2;
            SSL_write(ssl, data, static_cast<int>(raw_from));
        }
    }
    send_all(fd, data + raw_from, size - raw_from);
    ::shutdown(fd, SHUT_WR);
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    if (ssl) SSL_free(ssl);
    ::close(fd);
    *done = true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static bool init = [] {
        ::signal(SIGPIPE, SIG_IGN);
        return true;
    }();
    (void)init;
    static Certs certs;
    static EventLoop loop;
    static std::shared_ptr<SslContext> ctx = [] {
        auto c = SslContext::server();
        c->load_cert_chain(certs.cert, certs.key);
        return c;
    }();
    static bool quiet = [] {
        loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {});
        return true;
    }();
    (void)quiet;
    if (size == 0) return 0;
    const int mode = data[0] % 3;
    ++data;
    --size;

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) violated("socketpair");
    int lost = 0;
    auto made =
        loop.connect_accepted_socket([&lost] { return std::make_unique<Sink>(lost); }, sv[0]);
    auto conn = loop.run_until_complete(made);
    std::atomic<bool> peer_done{false};
    std::thread client(peer, sv[1], mode, data, size, &peer_done);
    StartTlsOptions options;
    options.server_side = true;
    options.ssl_handshake_timeout = 10;
    options.ssl_shutdown_timeout = 10;
    auto upgraded = loop.start_tls(conn.transport, ctx, options);
    std::shared_ptr<Transport> tls;
    try {
        tls = loop.run_until_complete(upgraded);
    } catch (const std::exception&) {
        // A handshake that failed: connection_lost has come or is on its way.
    }
    // The peer's EOF (after whatever it sent) ends the connection in every mode.
    // Until connection_lost, and until the peer saw our side close (the loop closes the fd once
    // the transport's last operation has completed).
    while (lost == 0 || !peer_done) {
        loop.call_later(0.001, [] { loop.stop(); });
        loop.run_forever();
    }
    client.join();
    if (lost != 1) violated("connection_lost more than once");
    // Let the transports' deferred frees run before the next input.
    for (int i = 0; i < 3; ++i) {
        loop.call_soon([] { loop.stop(); });
        loop.run_forever();
    }
    return 0;
}
