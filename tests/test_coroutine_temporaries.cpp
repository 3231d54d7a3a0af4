// SPDX-License-Identifier: Apache-2.0
// Temporaries inside a co_await expression whose operation throws: GCC before 13 destroys a
// braced aggregate temporary twice (the README's "Compilers" section). The option structs have
// constructors, so `XOptions{}` there is a constructor call and safe; these cases fail the
// operation on purpose (the asan preset makes a double destruction fatal).
#include <aioring/process.hpp>
#include <aioring/streams.hpp>

#include <memory>
#include <string>
#include <system_error>

#include "support.hpp"

using namespace testing;

namespace {

// A port that is taken: a listening socket bound to 127.0.0.1:0 without SO_REUSEADDR.
struct TakenPort {
    int fd = -1;
    std::uint16_t port = 0;
    TakenPort() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 1) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    }
    ~TakenPort() { ::close(fd); }
};

// A port nothing listens on: bound, then closed.
std::uint16_t closed_port() {
    TakenPort t;
    return t.port;
}

}  // namespace

TEST_SUITE("coroutine temporaries") {
    TEST_CASE(
        "start_server(cb, \"127.0.0.1\", port, 65536, ServerOptions{}) on a taken port throws "
        "cleanly") {
        EventLoop loop;
        TakenPort taken;
        auto token = std::make_shared<int>(0);
        bool caught = false;
        auto body = [&]() -> Task<void> {
            // A lambda with captures is named first (see the README: GCC 12 also destroys the
            // captures of a closure built inside the co_await expression twice).
            ClientConnected cb = [token](StreamReader, StreamWriter) -> Task<void> { co_return; };
            try {
                co_await start_server(cb, "127.0.0.1", taken.port, 65536, ServerOptions{});
            } catch (const std::system_error& e) {
                caught = e.code() == std::errc::address_in_use;
            }
        };
        run(loop, body());
        CHECK(caught);
        CHECK(token.use_count() == 1);  // the callback's copies all gone, none destroyed twice
    }

    TEST_CASE(
        "open_connection and create_connection with ConnectOptions{} to a closed port throw "
        "cleanly") {
        EventLoop loop;
        const std::uint16_t port = closed_port();
        int refused = 0;
        auto body = [&]() -> Task<void> {
            try {
                co_await open_connection(std::string("127.0.0.1"), port, 65536, ConnectOptions{});
            } catch (const std::system_error& e) {
                if (e.code() == std::errc::connection_refused) ++refused;
            }
            try {
                co_await loop.create_connection([] { return std::make_unique<Protocol>(); },
                                                "127.0.0.1", port, ConnectOptions{});
            } catch (const std::system_error& e) {
                if (e.code() == std::errc::connection_refused) ++refused;
            }
        };
        run(loop, body());
        CHECK(refused == 2);
    }

    TEST_CASE(
        "create_subprocess_exec with temporary arguments and ProcessOptions{}, no such program") {
        EventLoop loop;
        bool caught = false;
        auto body = [&]() -> Task<void> {
            try {
                // (Not a braced list: GCC 12 rejects an initializer_list inside co_await outright.)
                co_await create_subprocess_exec(
                    std::vector<std::string>(1, "/nonexistent/aioring-" + std::string(64, 'a')),
                    ProcessOptions{});
            } catch (const std::system_error& e) {
                caught = e.code() == std::errc::no_such_file_or_directory;
            }
        };
        run(loop, body());
        CHECK(caught);
    }
}
