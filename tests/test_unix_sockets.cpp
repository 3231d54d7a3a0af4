// SPDX-License-Identifier: Apache-2.0
// Unix stream sockets: create_unix_server / create_unix_connection on a path and in the
// abstract namespace, with the same transport behaviour as TCP.
#include "support.hpp"

#include <sys/stat.h>

#include <cstdlib>

using namespace testing;

namespace {

// A fresh temporary directory, removed with what is left in it.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/aioring-unix-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::string cmd = "rm -rf '" + path + "'";
        [[maybe_unused]] int rc = std::system(cmd.c_str());
    }
};

void echo_roundtrip(EventLoop& loop, const std::string& path) {
    int made = 0, lost = 0;
    struct Srv : EchoProtocol {
        int *made, *lost;
        Srv(int* m, int* l) : made(m), lost(l) {}
        void connection_made(Transport& t) override {
            EchoProtocol::connection_made(t);
            ++*made;
        }
        void connection_lost(std::error_code) override { ++*lost; }
    };
    auto server = run(
        loop, loop.create_unix_server([&] { return std::make_unique<Srv>(&made, &lost); }, path));
    REQUIRE(server->addresses().size() == 1);
    CHECK(server->addresses()[0].family() == AF_UNIX);
    CHECK(server->addresses()[0].to_string() == path);
    CHECK(server->is_serving());
    Events ev;
    auto conn = run(loop, loop.create_unix_connection(
                              [&] { return std::make_unique<RecordingProtocol>(ev); }, path));
    REQUIRE(run_until(loop, [&] { return made == 1; }));
    auto peer = conn.transport->extra<SocketAddress>("peername");
    REQUIRE(peer);
    CHECK(peer->to_string() == path);
    conn.transport->write("over unix");
    REQUIRE(run_until(loop, [&] { return ev.data == "over unix"; }));
    conn.transport->write_eof();  // the server's echo protocol closes on EOF
    REQUIRE(run_until(loop, [&] { return ev.lost == 1 && lost == 1; }));
    CHECK(ev.eof == 1);
    CHECK(!ev.lost_error);
    CHECK(ev.order_ok);
    server->close();
    run(loop, server->wait_closed());
}

}  // namespace

TEST_SUITE("unix sockets") {
    TEST_CASE("create_unix_server and create_unix_connection on a path") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempDir dir;
        const std::string path = dir.path + "/echo.sock";
        echo_roundtrip(loop, path);
        // The server removed its socket file when it closed (asyncio 3.13's cleanup_socket).
        struct stat st {};
        CHECK(::stat(path.c_str(), &st) != 0);
        // A socket file left by an earlier process is replaced.
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        auto a = SocketAddress::from_unix(path);
        REQUIRE(::bind(fd, a.get(), a.length) == 0);
        ::close(fd);
        echo_roundtrip(loop, path);
        CHECK(log.count == 0);
    }

    TEST_CASE("create_unix_server and create_unix_connection in the abstract namespace") {
        EventLoop loop;
        ExceptionLog log(loop);
        const std::string name = "@aioring-test-" + std::to_string(::getpid());
        echo_roundtrip(loop, name);
        CHECK(log.count == 0);
    }

    TEST_CASE("a unix connection to a path nobody serves fails with a clear error") {
        Events ev;
        EventLoop loop;
        TempDir dir;
        auto f = loop.create_unix_connection(
            [&] { return std::make_unique<RecordingProtocol>(ev); }, dir.path + "/nobody.sock");
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        try {
            f.result();
            FAIL("connected to nothing");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::no_such_file_or_directory);
            CHECK(std::string(e.what()).find("nobody.sock") != std::string::npos);
        }
        CHECK(ev.made == 0);
    }

    TEST_CASE("a unix server on a path that is in use fails with address_in_use") {
        EventLoop loop;
        const std::string name = "@aioring-busy-" + std::to_string(::getpid());
        auto first = run(
            loop, loop.create_unix_server([] { return std::make_unique<EchoProtocol>(); }, name));
        auto f = loop.create_unix_server([] { return std::make_unique<EchoProtocol>(); }, name);
        REQUIRE(run_until(loop, [&] { return f.done(); }));
        CHECK_THROWS_AS(f.result(), std::system_error);
        first->close();
        run(loop, first->wait_closed());
    }

    TEST_CASE("a big write over a unix connection is flushed by close()") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        const std::string name = "@aioring-big-" + std::to_string(::getpid());
        std::string received;
        int lost = 0;
        struct Sink : Protocol {
            std::string* out;
            int* lost;
            Sink(std::string* o, int* l) : out(o), lost(l) {}
            void data_received(std::string_view d) override { out->append(d); }
            void connection_lost(std::error_code) override { ++*lost; }
        };
        auto server =
            run(loop, loop.create_unix_server(
                          [&] { return std::make_unique<Sink>(&received, &lost); }, name));
        auto conn = run(loop, loop.create_unix_connection(
                                  [&] { return std::make_unique<RecordingProtocol>(ev); }, name));
        std::string big(3 << 20, 'u');
        conn.transport->write(big);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return lost == 1; }));
        CHECK(received == big);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }
}
