// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "UDP Echo Server": echoes every datagram back to its sender,
// printing what it receives and sends. Stops cleanly on SIGINT/SIGTERM.
#include <aioring/aioring.hpp>

#include <signal.h>

#include <cstdio>

#include "cli.hpp"

using namespace aioring;

class EchoServerProtocol : public DatagramProtocol {
public:
    EchoServerProtocol(Future<> closed, bool quiet) : closed_(std::move(closed)), quiet_(quiet) {}
    void connection_made(DatagramTransport& transport) override { transport_ = &transport; }
    void datagram_received(std::string_view data, const SocketAddress& addr) override {
        if (quiet_) return transport_->sendto(data, addr);
        const std::string message = cli::quoted(data), from = addr.to_string();
        std::printf("Received %s from %s\n", message.c_str(), from.c_str());
        std::printf("Send %s to %s\n", message.c_str(), from.c_str());
        transport_->sendto(data, addr);
    }
    void connection_lost(std::error_code) override { closed_.set_result(); }

private:
    DatagramTransport* transport_ = nullptr;
    Future<> closed_;
    bool quiet_;
};

Task<> main_task(EventLoop& loop, std::string host, std::uint16_t port, bool quiet) {
    std::printf("Starting UDP server\n");
    auto stop = loop.create_future();
    auto on_signal = [stop] {
        if (!stop.done()) stop.set_result();
    };
    loop.add_signal_handler(SIGINT, on_signal);
    loop.add_signal_handler(SIGTERM, on_signal);
    auto closed = loop.create_future();
    DatagramEndpointOptions options;
    options.local_addr = {host, port};
    auto endpoint = loop.create_datagram_endpoint(
        [closed, quiet] { return std::make_unique<EchoServerProtocol>(closed, quiet); }, options);
    auto conn = co_await endpoint;
    auto transport = conn.transport;
    const auto bound = transport->extra<SocketAddress>("sockname");
    std::printf("Serving on %s\n", bound ? bound->to_string().c_str() : "?");
    try {
        co_await stop;  // serve until a signal
    } catch (...) {
    }
    transport->close();
    co_await closed;
}

int program(int argc, char** argv) {
    cli::Args args(argc, argv,
                   "usage: udp_echo_server [--host 127.0.0.1] [--port 9999] [--quiet]\n"
                   "Echoes every datagram back to its sender. --quiet: print nothing per datagram\n"
                   "(for benchmarks).\n",
                   {{"host", "127.0.0.1"}, {"port", "9999"}}, {"quiet"});
    const std::uint16_t port = args.port();
    EventLoop loop;
    try {
        loop.run_until_complete(main_task(loop, args.str("host"), port, args.flag("quiet")));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("udp_echo_server", argc, argv, program);
}
