// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "TCP Echo Client" (Protocol version): sends a message, prints what
// comes back, and stops once the server closes the connection.
#include <aioring/aioring.hpp>

#include <cstdio>

#include "cli.hpp"

using namespace aioring;

class EchoClientProtocol : public Protocol {
public:
    EchoClientProtocol(std::string message, Future<bool> on_con_lost)
        : message_(std::move(message)), on_con_lost_(std::move(on_con_lost)) {}
    void connection_made(Transport& transport) override {
        transport.write(message_);
        std::printf("Data sent: %s\n", cli::quoted(message_).c_str());
    }
    void data_received(std::string_view data) override {
        std::printf("Data received: %s\n", cli::quoted(data).c_str());
    }
    void connection_lost(std::error_code) override {
        std::printf("The server closed the connection\n");
        std::printf("Stop the event loop\n");
        on_con_lost_.set_result(true);
    }

private:
    std::string message_;
    Future<bool> on_con_lost_;
};

Task<> main_task(EventLoop& loop, std::string host, std::uint16_t port, std::string message) {
    auto on_con_lost = loop.create_future<bool>();
    auto connecting = loop.create_connection(
        [&] { return std::make_unique<EchoClientProtocol>(message, on_con_lost); }, host, port);
    auto [transport, protocol] = co_await connecting;
    // Wait until the protocol signals that the connection is lost, then close the transport.
    co_await on_con_lost;
    transport->close();
}

int program(int argc, char** argv) {
    cli::Args args(
        argc, argv,
        "usage: tcp_echo_client [--host HOST] [--port PORT] [--message TEXT]\n"
        "  Sends TEXT, prints the echo, stops when the server closes (asyncio's example).\n",
        {{"host", "127.0.0.1"}, {"port", "8888"}, {"message", "Hello World!"}});
    const auto port = args.port();
    EventLoop loop;
    try {
        loop.run_until_complete(main_task(loop, args.str("host"), port, args.str("message")));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("tcp_echo_client", argc, argv, program);
}
