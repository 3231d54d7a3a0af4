// SPDX-License-Identifier: Apache-2.0
// A TLS echo client: connects (verifying the server's certificate and host name unless
// --insecure), sends one message, waits for all of it to come back, and closes with close_notify.
#include <aioring/aioring.hpp>

#include <cstdio>

#include "cli.hpp"
#include "tls_setup.hpp"

using namespace aioring;

namespace {

class EchoClient final : public Protocol {
public:
    EchoClient(std::string message, Future<void> received, Future<void> lost)
        : message_(std::move(message)), received_(std::move(received)), lost_(std::move(lost)) {}
    void connection_made(Transport& t) override {
        auto cipher = t.extra<CipherInfo>("cipher");
        std::printf("Connected using %s %s\n", cipher ? cipher->version.c_str() : "?",
                    cipher ? cipher->name.c_str() : "?");
        if (auto alpn = t.extra<std::string>("alpn_protocol"))
            std::printf("ALPN: %s\n", alpn->c_str());
        t.write(message_);
        std::printf("Data sent: %s\n", cli::quoted(message_).c_str());
    }
    void data_received(std::string_view data) override {
        got_.append(data);
        if (got_.size() >= message_.size() && !received_.done()) {
            std::printf("Data received: %s\n", cli::quoted(got_).c_str());
            received_.set_result();
        }
    }
    void connection_lost(std::error_code ec) override {
        if (!lost_.done()) lost_.set_result();
        if (!received_.done())
            received_.set_exception(std::make_exception_ptr(
                std::system_error(ec ? ec : std::make_error_code(std::errc::connection_reset),
                                  "the server closed the connection before echoing everything")));
    }

private:
    std::string message_, got_;
    Future<void> received_, lost_;
};

Task<> run_client(EventLoop& loop, std::string host, std::uint16_t port, std::string message,
                  ConnectOptions options) {
    auto received = loop.create_future<void>();
    auto lost = loop.create_future<void>();
    auto conn = co_await loop.create_connection(
        [&] { return std::make_unique<EchoClient>(message, received, lost); }, host, port, options);
    co_await received;
    conn.transport->close();  // close_notify; done once the server answers
    co_await lost;
    std::printf("Closed\n");
}

}  // namespace

int program(int argc, char** argv) {
    cli::Args args(
        argc, argv,
        "usage: tls_echo_client [--host HOST] [--port PORT] [--message TEXT] [--cafile FILE]\n"
        "                       [--server-hostname NAME] [--insecure] [--alpn LIST]\n"
        "  Sends one message over TLS and prints the echo. The server's certificate is\n"
        "  verified against --cafile (or the system store) and the host name unless --insecure.\n",
        {{"host", "127.0.0.1"},
         {"port", "8443"},
         {"message", "Hello World!"},
         {"cafile", ""},
         {"server-hostname", ""},
         {"alpn", ""}},
        {"insecure"});
    const std::uint16_t port = args.port();
    ConnectOptions options;
    try {
        options.ssl =
            tls_setup::client_context(args.str("cafile"), args.flag("insecure"), args.str("alpn"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    options.server_hostname =
        args.given("server-hostname") ? args.str("server-hostname") : args.str("host");
    EventLoop loop;
    try {
        loop.run_until_complete(
            run_client(loop, args.str("host"), port, args.str("message"), options));
    } catch (const SslError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("tls_echo_client", argc, argv, program);
}
