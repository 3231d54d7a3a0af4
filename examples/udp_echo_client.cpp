// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "UDP Echo Client": sends one message to the echo server and
// closes the socket when the reply comes. No reply within --timeout seconds: exit 1.
#include <aioring/aioring.hpp>

#include <cstdio>

#include "cli.hpp"

using namespace aioring;

class EchoClientProtocol : public DatagramProtocol {
public:
    EchoClientProtocol(std::string message, Future<bool> on_con_lost)
        : message_(std::move(message)), on_con_lost_(std::move(on_con_lost)) {}
    void connection_made(DatagramTransport& transport) override {
        transport_ = &transport;
        std::printf("Send: %s\n", message_.c_str());
        transport_->sendto(message_);
    }
    void datagram_received(std::string_view data, const SocketAddress&) override {
        std::printf("Received: %.*s\n", static_cast<int>(data.size()), data.data());
        std::printf("Close the socket\n");
        transport_->close();
    }
    // An ICMP error (nobody listening): reported, and the client keeps waiting.
    void error_received(std::error_code ec) override {
        std::printf("Error received: %s\n", ec.message().c_str());
    }
    void connection_lost(std::error_code) override {
        if (on_con_lost_.done()) return;  // given up waiting (timeout)
        std::printf("Socket closed, stop the event loop\n");
        on_con_lost_.set_result(true);
    }

private:
    std::string message_;
    Future<bool> on_con_lost_;
    DatagramTransport* transport_ = nullptr;
};

// True once the reply came; false when `timeout` seconds passed first.
Task<bool> main_task(EventLoop& loop, std::string host, std::uint16_t port, std::string message,
                     double timeout) {
    auto on_con_lost = loop.create_future<bool>();
    DatagramEndpointOptions options;
    options.remote_addr = {host, port};
    auto endpoint = loop.create_datagram_endpoint(
        [&] { return std::make_unique<EchoClientProtocol>(message, on_con_lost); }, options);
    auto conn = co_await endpoint;
    auto timer = loop.call_later(timeout, [on_con_lost] {
        if (!on_con_lost.done()) on_con_lost.set_result(false);
    });
    const bool replied = co_await on_con_lost;
    timer.cancel();
    if (!replied) conn.transport->abort();
    co_return replied;
}

int program(int argc, char** argv) {
    cli::Args args(
        argc, argv,
        "usage: udp_echo_client [--host 127.0.0.1] [--port 9999] [--message TEXT] "
        "[--timeout 5]\n"
        "Sends one datagram to the UDP echo server and waits for the reply.\n",
        {{"host", "127.0.0.1"}, {"port", "9999"}, {"message", "Hello World!"}, {"timeout", "5"}});
    const std::uint16_t port = args.port();
    const double timeout = args.number("timeout", 0.001, 86400);
    EventLoop loop;
    try {
        if (!loop.run_until_complete(
                main_task(loop, args.str("host"), port, args.str("message"), timeout))) {
            std::fprintf(stderr, "No reply within %g seconds\n", timeout);
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("udp_echo_client", argc, argv, program);
}
