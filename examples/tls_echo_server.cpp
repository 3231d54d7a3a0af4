// SPDX-License-Identifier: Apache-2.0
// A TLS echo server: prints who connected with which TLS version, cipher and ALPN protocol,
// echoes every byte on a persistent connection, and answers the peer's close_notify with its own.
// A failed handshake is printed and the server goes on.
#include <aioring/aioring.hpp>

#include <cstdio>

#include "cli.hpp"
#include "serve.hpp"
#include "tls_setup.hpp"

using namespace aioring;

namespace {

class TlsEcho final : public Protocol {
public:
    explicit TlsEcho(serve::Connections& c) : connections_(c) {}
    void connection_made(Transport& t) override {
        transport_ = &t;
        connections_.open.insert(&t);
        auto peer = t.extra<SocketAddress>("peername");
        auto cipher = t.extra<CipherInfo>("cipher");
        std::printf("Connection from %s using %s %s\n", peer ? peer->to_string().c_str() : "?",
                    cipher ? cipher->version.c_str() : "?", cipher ? cipher->name.c_str() : "?");
        if (auto alpn = t.extra<std::string>("alpn_protocol"))
            std::printf("ALPN: %s\n", alpn->c_str());
    }
    void data_received(std::string_view data) override { transport_->write(data); }
    // Back-pressure: a client that sends without reading stops being read.
    void pause_writing() override { transport_->pause_reading(); }
    void resume_writing() override { transport_->resume_reading(); }
    void connection_lost(std::error_code) override { connections_.open.erase(transport_); }

private:
    serve::Connections& connections_;
    Transport* transport_ = nullptr;
};

}  // namespace

int program(int argc, char** argv) {
    cli::Args args(
        argc, argv,
        "usage: tls_echo_server [--host HOST] [--port PORT] --cert FILE --key FILE [--alpn LIST]\n"
        "  Echoes every byte over TLS. --alpn takes protocols in preference order: h2,http/1.1\n",
        {{"host", "127.0.0.1"}, {"port", "8443"}, {"cert", ""}, {"key", ""}, {"alpn", ""}});
    const std::uint16_t port = args.port();
    if (!args.given("cert") || !args.given("key")) args.fail("--cert and --key are required");

    std::shared_ptr<SslContext> ctx;
    try {
        ctx = tls_setup::server_context(args.str("cert"), args.str("key"), args.str("alpn"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }

    serve::block_stop_signals();
    EventLoop loop;
    serve::handle_stop_signals(loop);
    loop.set_exception_handler([](EventLoop& l, const ExceptionContext& c) {
        if (c.message != "SSL handshake failed" || !c.exception)
            return l.default_exception_handler(c);
        std::string cause = "unknown error";
        try {
            std::rethrow_exception(c.exception);
        } catch (const std::exception& e) {
            cause = e.what();
        }
        const std::string prefix = "SSL handshake failed: ";
        if (cause.compare(0, prefix.size(), prefix) == 0) cause.erase(0, prefix.size());
        auto peer = c.transport ? c.transport->extra<SocketAddress>("peername") : std::nullopt;
        std::printf("Handshake failed from %s: %s\n", peer ? peer->to_string().c_str() : "?",
                    cause.c_str());
    });
    serve::Connections connections;
    ServerOptions options;
    options.ssl = ctx;
    std::shared_ptr<Server> server;
    try {
        server = loop.run_until_complete(
            loop.create_server([&connections] { return std::make_unique<TlsEcho>(connections); },
                               args.str("host"), port, options));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    std::printf("Serving on %s\n", serve::describe(*server).c_str());
    // On SIGINT/SIGTERM: stop listening, send close_notify on every connection, and give the
    // peers until the deadline to answer; what is left is aborted.
    serve::run_until_signal(
        loop,
        [&] {
            server->close();
            connections.close_all();
        },
        [&] { return connections.open.empty(); });
    for (auto* t : std::set<BaseTransport*>(connections.open))
        if (auto* w = dynamic_cast<WriteTransport*>(t)) w->abort();
    for (int i = 0; i < 3; ++i) {
        loop.call_soon([&loop] { loop.stop(); });
        loop.run_forever();
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("tls_echo_server", argc, argv, program);
}
