// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's "Register an open socket to wait for data using a protocol":
// one end of a socketpair wrapped in a transport, the other sends "abc".
#include <aioring/aioring.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

#include "cli.hpp"

using namespace aioring;

class MyProtocol : public Protocol {
public:
    explicit MyProtocol(Future<bool> on_con_lost) : on_con_lost_(std::move(on_con_lost)) {}
    void connection_made(Transport& transport) override { transport_ = &transport; }
    void data_received(std::string_view data) override {
        std::printf("Received: %.*s\n", static_cast<int>(data.size()), data.data());
        // We are done: close the transport; connection_lost() will be called automatically.
        transport_->close();
    }
    void connection_lost(std::error_code) override { on_con_lost_.set_result(true); }

private:
    Transport* transport_ = nullptr;
    Future<bool> on_con_lost_;
};

Task<> main_task(EventLoop& loop) {
    auto on_con_lost = loop.create_future<bool>();
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::system_error(errno, std::system_category(), "socketpair");
    const int rsock = fds[0], wsock = fds[1];
    ConnectOptions options;
    options.sock = rsock;
    auto connecting = loop.create_connection(
        [&] { return std::make_unique<MyProtocol>(on_con_lost); }, "", 0, options);
    auto [transport, protocol] = co_await connecting;
    // Simulate the reception of data from the network.
    loop.call_soon([wsock] { [[maybe_unused]] auto n = ::send(wsock, "abc", 3, MSG_NOSIGNAL); });
    co_await on_con_lost;
    ::close(wsock);
}

int program(int argc, char** argv) {
    cli::Args args(argc, argv, "usage: socketpair_protocol\n", {});
    EventLoop loop;
    try {
        loop.run_until_complete(main_task(loop));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return cli::guarded_main("socketpair_protocol", argc, argv, program);
}
