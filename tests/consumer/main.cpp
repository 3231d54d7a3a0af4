// SPDX-License-Identifier: Apache-2.0
// Uses the installed headers and library: the documentation's socketpair example, in short.
#include <aioring/aioring.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

using namespace aioring;

class Reader : public Protocol {
public:
    explicit Reader(Future<std::string> got) : got_(std::move(got)) {}
    void data_received(std::string_view data) override {
        if (!got_.done()) got_.set_result(std::string(data));
    }

private:
    Future<std::string> got_;
};

int main() {
    EventLoop loop;
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 1;
    auto got = loop.create_future<std::string>();
    auto conn = loop.run_until_complete(
        loop.connect_accepted_socket([&] { return std::make_unique<Reader>(got); }, fds[0]));
    if (::write(fds[1], "abc", 3) != 3) return 1;
    const std::string text = loop.run_until_complete(got);
    conn.transport->close();
    ::close(fds[1]);
    std::printf("Received: %s\n", text.c_str());
    return text == "abc" ? 0 : 1;
}
