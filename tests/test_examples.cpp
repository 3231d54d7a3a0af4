// The asyncio documentation's examples and echo_server, driven from outside as docs/cli.md
// describes them: the lines they print and their exit statuses.
#include <sys/socket.h>

#include <thread>

#include "process.hpp"
#include "support.hpp"

using namespace testing;

TEST_SUITE("examples") {
TEST_CASE("tcp_echo_server and tcp_echo_client print the documentation's lines") {
    testing::Process server({example("tcp_echo_server"), "--port", "0"});
    const int port = server.serving_port();
    REQUIRE(port > 0);
    CHECK(server.out.rfind("Serving on 127.0.0.1:", 0) == 0);
    testing::Process client({example("tcp_echo_client"), "--port", std::to_string(port), "--message", "Hi there"});
    CHECK(client.wait() == 0);
    CHECK(client.out ==
          "Data sent: 'Hi there'\nData received: 'Hi there'\nThe server closed the connection\n"
          "Stop the event loop\n");
    REQUIRE(server.wait_for_output("Close the client socket\n"));
    CHECK(server.out.find("Connection from 127.0.0.1:") != std::string::npos);
    CHECK(server.out.find("Data received: 'Hi there'\nSend: 'Hi there'\nClose the client socket\n") !=
          std::string::npos);
    server.signal(SIGINT);
    CHECK(server.wait(3) == 0);
}

TEST_CASE("tcp_echo_client names a refused connection and exits 1") {
    // A port that was just free: bind, read the port, close.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    auto addr = SocketAddress::from_ip("127.0.0.1", 0);
    REQUIRE(::bind(fd, addr.get(), addr.length) == 0);
    const int port = sockname_of(fd).port();
    ::close(fd);
    testing::Process client({example("tcp_echo_client"), "--port", std::to_string(port)});
    CHECK(client.wait() == 1);
    CHECK(client.err.find("Connection refused") != std::string::npos);
}

TEST_CASE("socketpair_protocol prints Received: abc") {
    testing::Process p({example("socketpair_protocol")});
    CHECK(p.wait() == 0);
    CHECK(p.out == "Received: abc\n");
}

TEST_CASE("programs answer --help with exit 0 and a bad flag with exit 2") {
    for (const char* name : {"tcp_echo_server", "tcp_echo_client", "socketpair_protocol", "echo_server"}) {
        CAPTURE(name);
        testing::Process help({example(name), "--help"});
        CHECK(help.wait() == 0);
        CHECK(help.out.find("usage:") != std::string::npos);
        testing::Process bad({example(name), "--no-such-flag"});
        CHECK(bad.wait() == 2);
        CHECK(bad.err.find("usage:") != std::string::npos);
    }
    testing::Process bad_port({example("echo_server"), "--port", "70000"});
    CHECK(bad_port.wait() == 2);
}

TEST_CASE("echo_server echoes on persistent connections with each API and stops on SIGTERM") {
    for (const char* api : {"protocol", "buffered", "streams"}) {
        for (const char* threads : {"1", "2"}) {
            CAPTURE(api);
            CAPTURE(threads);
            testing::Process server({example("echo_server"), "--api", api, "--port", "0", "--threads", threads});
            const int port = server.serving_port();
            REQUIRE(port > 0);
            int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            auto addr = SocketAddress::from_ip("127.0.0.1", static_cast<std::uint16_t>(port));
            REQUIRE(::connect(fd, addr.get(), addr.length) == 0);
            for (int round = 0; round < 3; ++round) {
                std::string msg(1000 + round * 70000, static_cast<char>('a' + round));
                ssize_t sent = 0;
                std::thread writer([&] { sent = ::send(fd, msg.data(), msg.size(), 0); });
                CHECK(read_n(fd, msg.size()) == msg);
                writer.join();
                CHECK(sent == static_cast<ssize_t>(msg.size()));
            }
            ::shutdown(fd, SHUT_WR);
            char c;
            CHECK(::read(fd, &c, 1) == 0);  // the server closes after EOF
            ::close(fd);
            server.signal(SIGTERM);
            CHECK(server.wait(3) == 0);
        }
    }
}

TEST_CASE("echo_server --cert names a missing certificate file and exits 1") {
    testing::Process server({example("echo_server"), "--port", "0", "--cert", "/nonexistent/cert.pem", "--key", "/nonexistent/key.pem"});
    CHECK(server.wait() == 1);
    CHECK(server.err.find("/nonexistent/cert.pem") != std::string::npos);
    testing::Process half({example("echo_server"), "--port", "0", "--cert", "/nonexistent/cert.pem"});
    CHECK(half.wait() == 2);
}

TEST_CASE("echo_server reports an address in use and exits 1") {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    auto addr = SocketAddress::from_ip("127.0.0.1", 0);
    REQUIRE(::bind(fd, addr.get(), addr.length) == 0);
    REQUIRE(::listen(fd, 1) == 0);
    const int port = sockname_of(fd).port();
    testing::Process server({example("echo_server"), "--port", std::to_string(port)});
    CHECK(server.wait() == 1);
    CHECK(server.err.find("Address already in use") != std::string::npos);
    ::close(fd);
}
}
