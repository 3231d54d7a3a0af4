// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "TCP echo client using streams": sends a message, prints the
// reply (up to 100 bytes) and closes.
#include <aioring/aioring.hpp>
#include <aioring/streams.hpp>

#include <cstdio>

#include "cli.hpp"

using namespace aioring;

namespace {

Task<void> tcp_echo_client(std::string host, std::uint16_t port, std::string message) {
    auto [reader, writer] = co_await open_connection(host, port);
    std::printf("Send: %s\n", cli::quoted(message).c_str());
    writer.write(message);
    co_await writer.drain();
    std::string data = co_await reader.read(100);
    std::printf("Received: %s\n", cli::quoted(data).c_str());
    std::printf("Close the connection\n");
    writer.close();
    co_await writer.wait_closed();
}

}  // namespace

int program(int argc, char** argv) {
    cli::Args args(argc, argv,
                   "usage: stream_echo_client [--host 127.0.0.1] [--port 8888] "
                   "[--message 'Hello World!']\n"
                   "The asyncio documentation's TCP echo client using streams.\n",
                   {{"host", "127.0.0.1"}, {"port", "8888"}, {"message", "Hello World!"}});
    const std::uint16_t port = args.port();
    try {
        aioring::run(tcp_echo_client(args.str("host"), port, args.str("message")));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("stream_echo_client", argc, argv, program);
}
