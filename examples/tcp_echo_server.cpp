// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "TCP Echo Server" (Protocol version): prints each connection and
// message, echoes the data back, then closes that connection.
#include <aioring/aioring.hpp>

#include <cstdio>

#include "cli.hpp"
#include "serve.hpp"

using namespace aioring;

class EchoServerProtocol : public Protocol {
public:
    explicit EchoServerProtocol(serve::Connections& c) : connections_(c) {}
    void connection_made(Transport& transport) override {
        auto peername = transport.extra<SocketAddress>("peername");
        std::printf("Connection from %s\n", peername ? peername->to_string().c_str() : "?");
        transport_ = &transport;
        connections_.open.insert(transport_);
    }
    void data_received(std::string_view data) override {
        std::printf("Data received: %s\n", cli::quoted(data).c_str());
        std::printf("Send: %s\n", cli::quoted(data).c_str());
        transport_->write(data);
        std::printf("Close the client socket\n");
        transport_->close();
    }
    void connection_lost(std::error_code) override { connections_.open.erase(transport_); }

private:
    serve::Connections& connections_;
    Transport* transport_ = nullptr;
};

int program(int argc, char** argv) {
    cli::Args args(argc, argv,
                   "usage: tcp_echo_server [--host HOST] [--port PORT]\n"
                   "  Echoes each message back and closes the connection (asyncio's example).\n",
                   {{"host", "127.0.0.1"}, {"port", "8888"}});
    const auto port = args.port();
    serve::block_stop_signals();
    EventLoop loop;
    serve::handle_stop_signals(loop);
    serve::Connections connections;
    std::shared_ptr<Server> server;
    try {
        server = loop.run_until_complete(
            loop.create_server([&] { return std::make_unique<EchoServerProtocol>(connections); },
                               args.str("host"), port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    std::printf("Serving on %s\n", serve::describe(*server).c_str());
    serve::run_until_signal(
        loop,
        [&] {
            server->close();
            connections.close_all();
        },
        [&] { return connections.open.empty(); });
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("tcp_echo_server", argc, argv, program);
}
