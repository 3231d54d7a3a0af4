// SPDX-License-Identifier: Apache-2.0
// examples/chat_server from outside, as a user sees it: lines relayed between clients, the
// idle timeout, and SIGTERM cancelling every handler with exit status 0.
#include <sys/socket.h>
#include <sys/time.h>

#include <string>

#include "process.hpp"
#include "support.hpp"

using namespace testing;

namespace {

// A blocking client whose reads fail after 10 s (a deadline that only exists to fail).
struct Client {
    int fd = -1;
    std::string buf;
    explicit Client(int port) : fd(tcp_connect(static_cast<std::uint16_t>(port))) {
        REQUIRE(fd >= 0);
        timeval tv{10, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~Client() { ::close(fd); }
    void send(const std::string& s) {
        REQUIRE(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
    }
    // Reads until `text` has arrived; returns everything up to and including it.
    std::string until(const std::string& text) {
        while (buf.find(text) == std::string::npos) {
            char b[1024];
            ssize_t n = ::read(fd, b, sizeof b);
            if (n <= 0) return "<eof or timeout: " + buf + ">";
            buf.append(b, static_cast<std::size_t>(n));
        }
        const auto end = buf.find(text) + text.size();
        std::string out = buf.substr(0, end);
        buf.erase(0, end);
        return out;
    }
    bool at_eof() {
        char b[64];
        return buf.empty() && ::read(fd, b, sizeof b) == 0;
    }
};

}  // namespace

TEST_SUITE("chat_server") {
    TEST_CASE("relays lines between clients and exits 0 on SIGTERM with clients connected") {
        testing::Process server({example("chat_server"), "--port", "0"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        CHECK(server.out.rfind("Serving on 127.0.0.1:", 0) == 0);
        Client alice(port), bob(port);
        CHECK(alice.until("name? ") == "name? ");
        alice.send("alice\n");
        CHECK(bob.until("name? ") == "name? ");
        bob.send("bob\n");
        CHECK(alice.until("\n") == "* bob joined\n");
        alice.send("hi bob\n");
        CHECK(bob.until("\n") == "alice: hi bob\n");
        bob.send("hi alice\n");
        CHECK(alice.until("\n") == "bob: hi alice\n");
        server.signal(SIGTERM);
        CHECK(server.wait() == 0);
        CHECK(alice.at_eof());
        CHECK(bob.at_eof());
        CHECK(server.err == "");
    }

    TEST_CASE(
        "a client idle past --idle-timeout is told so and disconnected; the others hear it left") {
        testing::Process server({example("chat_server"), "--port", "0", "--idle-timeout", "0.3"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        Client quiet(port);
        CHECK(quiet.until("name? ") == "name? ");
        quiet.send("quiet\n");
        Client talker(port);
        CHECK(talker.until("name? ") == "name? ");
        talker.send("talker\n");
        CHECK(quiet.until("\n") == "* talker joined\n");
        // Neither speaks: both time out, each is told so, and each connection closes.
        CHECK(quiet.until("idle too long\n").find("idle too long\n") != std::string::npos);
        CHECK(talker.until("idle too long\n").find("idle too long\n") != std::string::npos);
        server.signal(SIGINT);
        CHECK(server.wait() == 0);
    }

    TEST_CASE("bad flags exit 2 with one line") {
        testing::Process server({example("chat_server"), "--idle-timeout", "never"});
        CHECK(server.wait() == 2);
        CHECK(server.err.rfind("error: bad value for --idle-timeout", 0) == 0);
    }
}
