// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "TCP echo server using streams": reads up to 100 bytes per
// connection, echoes them and closes. SIGINT/SIGTERM close the server and open connections.
#include <aioring/aioring.hpp>
#include <aioring/streams.hpp>
#include <aioring/sync.hpp>

#include <signal.h>

#include <cstdio>
#include <list>

#include "cli.hpp"

using namespace aioring;

namespace {

struct Connections {
    std::list<StreamWriter> open;
    bool stopping = false;
    Event idle;  // set once stopping and no connection is left
};

// Tracks one connection while its handler runs, however the handler ends.
struct Tracked {
    Connections& conns;
    std::list<StreamWriter>::iterator self;
    Tracked(Connections& c, const StreamWriter& w)
        : conns(c), self(c.open.insert(c.open.end(), w)) {}
    ~Tracked() {
        conns.open.erase(self);
        if (conns.stopping && conns.open.empty()) conns.idle.set();
    }
};

Task<void> handle_echo(Connections& conns, StreamReader reader, StreamWriter writer) {
    Tracked tracked(conns, writer);
    std::string data = co_await reader.read(100);
    if (!conns.stopping) {
        std::string addr;
        if (auto peer = writer.extra<SocketAddress>("peername")) addr = peer->to_string();
        std::printf("Received %s from %s\n", cli::quoted(data).c_str(), addr.c_str());
        std::printf("Send: %s\n", cli::quoted(data).c_str());
        writer.write(data);
        co_await writer.drain();
        std::printf("Close the connection\n");
    }
    writer.close();
    co_await writer.wait_closed();
}

Task<int> main_task(EventLoop& loop, std::string host, std::uint16_t port, Connections& conns) {
    ClientConnected cb = [&conns](StreamReader r, StreamWriter w) -> Task<void> {
        return handle_echo(conns, std::move(r), std::move(w));
    };
    // Signals first: no fd for the signalfd is a start-up error, before the server listens.
    auto server = std::make_shared<std::shared_ptr<Server>>();
    auto stopped = std::make_shared<bool>(false);
    auto stop = [&loop, server, stopped] {
        *stopped = true;
        if (*server) (*server)->close();
        loop.remove_signal_handler(SIGINT);
        loop.remove_signal_handler(SIGTERM);
    };
    loop.add_signal_handler(SIGINT, stop);
    loop.add_signal_handler(SIGTERM, stop);
    *server = co_await start_server(std::move(cb), host, port);
    if (*stopped) (*server)->close();  // a signal came while it started
    for (const SocketAddress& a : (*server)->addresses())
        std::printf("Serving on %s\n", a.to_string().c_str());
    co_await (*server)->serve_forever();
    // Let open connections close (an idle reader sees EOF once its transport is closed); the
    // server's wait_closed waits for them too.
    conns.stopping = true;
    if (conns.open.empty()) conns.idle.set();
    for (auto& w : conns.open) w.close();
    co_await conns.idle.wait();
    co_await (*server)->wait_closed();
    co_return 0;
}

}  // namespace

int program(int argc, char** argv) {
    cli::Args args(argc, argv,
                   "usage: stream_echo_server [--host 127.0.0.1] [--port 8888]\n"
                   "The asyncio documentation's TCP echo server using streams.\n",
                   {{"host", "127.0.0.1"}, {"port", "8888"}});
    const std::string host = args.str("host");
    const std::uint16_t port = args.port();
    try {
        Connections conns;
        return aioring::run([&](EventLoop& loop) { return main_task(loop, host, port, conns); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
}

int main(int argc, char** argv) {
    return cli::guarded_main("stream_echo_server", argc, argv, program);
}
