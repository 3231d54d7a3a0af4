// SPDX-License-Identifier: Apache-2.0
// The asyncio documentation's examples and echo_server, driven from outside as docs/cli.md
// describes them: the lines they print and their exit statuses, also at tiny fd limits and with
// hostile command lines.
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <thread>

#include "process.hpp"
#include "support.hpp"
#include "tls_certs.hpp"

using namespace testing;

TEST_SUITE("examples") {
    TEST_CASE("tcp_echo_server and tcp_echo_client print the documentation's lines") {
        testing::Process server({example("tcp_echo_server"), "--port", "0"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        CHECK(server.out.rfind("Serving on 127.0.0.1:", 0) == 0);
        testing::Process client(
            {example("tcp_echo_client"), "--port", std::to_string(port), "--message", "Hi there"});
        CHECK(client.wait() == 0);
        CHECK(client.out ==
              "Data sent: 'Hi there'\nData received: 'Hi there'\nThe server closed the connection\n"
              "Stop the event loop\n");
        REQUIRE(server.wait_for_output("Close the client socket\n"));
        CHECK(server.out.find("Connection from 127.0.0.1:") != std::string::npos);
        CHECK(server.out.find(
                  "Data received: 'Hi there'\nSend: 'Hi there'\nClose the client socket\n") !=
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
        for (const char* name :
             {"tcp_echo_server", "tcp_echo_client", "socketpair_protocol", "echo_server"}) {
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
                testing::Process server(
                    {example("echo_server"), "--api", api, "--port", "0", "--threads", threads});
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
        testing::Process server({example("echo_server"), "--port", "0", "--cert",
                                 "/nonexistent/cert.pem", "--key", "/nonexistent/key.pem"});
        CHECK(server.wait() == 1);
        CHECK(server.err.find("/nonexistent/cert.pem") != std::string::npos);
        testing::Process half(
            {example("echo_server"), "--port", "0", "--cert", "/nonexistent/cert.pem"});
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

    namespace {

    struct Program {
        const char* name;
        bool server;
        std::vector<std::string> args;  // what makes it do its job (filled in per test)
    };

    const char* const all_programs[] = {
        "tcp_echo_server",     "tcp_echo_client",    "udp_echo_server",    "udp_echo_client",
        "socketpair_protocol", "stream_echo_server", "stream_echo_client", "echo_server",
        "tls_echo_server",     "tls_echo_client",    "subprocess_pipe"};

    int count_lines(const std::string& s) {
        return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
    }

    // Fd numbers from 3 up to `below` that a child inherits from this process (ctest may leave one
    // open): RLIMIT_NOFILE bounds fd numbers, so those take room under the limit.
    int inherited_below(int below) {
        int n = 0;
        for (int fd = 3; fd < below; ++fd) {
            const int flags = ::fcntl(fd, F_GETFD);
            if (flags >= 0 && !(flags & FD_CLOEXEC)) ++n;
        }
        return n;
    }

    // The program gets `nofile` fd numbers of its own, as if it had inherited only 0, 1 and 2.
    std::vector<std::string> with_limit(int nofile, std::vector<std::string> argv) {
        int limit = nofile;
        while (limit - inherited_below(limit) < nofile) ++limit;
        nofile = limit;
        std::vector<std::string> v = {
            "/usr/bin/prlimit", "--nofile=" + std::to_string(nofile) + ":" + std::to_string(nofile),
            "--"};
        v.insert(v.end(), argv.begin(), argv.end());
        return v;
    }

    // Runs `argv` under RLIMIT_NOFILE `nofile`. Either it does its job (a server prints `Serving
    // on` and exits 0 on SIGTERM; any other program exits 0), or it prints one line on stderr that
    // names the fd shortage and exits 1 (127 for subprocess_pipe's child). Returns true if it
    // worked.
    bool works_or_fails_cleanly(const std::string& name, bool server, int nofile,
                                const std::vector<std::string>& argv) {
        CAPTURE(name);
        CAPTURE(nofile);
        testing::Process p(with_limit(nofile, argv));
        if (server && p.wait_for_output("Serving on ")) {
            p.signal(SIGTERM);
            const int rc = p.wait(5);
            CAPTURE(p.err);
            CHECK(rc == 0);
            return true;
        }
        const int rc = p.wait(10);
        CAPTURE(p.out);
        CAPTURE(p.err);
        if (rc == 0) {
            CHECK(!server);
            return true;
        }
        CHECK((rc == 1 || (name == "subprocess_pipe" && rc == 127)));
        CHECK(count_lines(p.err) == 1);
        CHECK(p.err.find("Too many open files") != std::string::npos);
        if (server) CHECK(p.out.find("Serving on") == std::string::npos);
        return false;
    }

    }  // namespace

    TEST_CASE(
        "every program and aioring-load at tiny fd limits: one line naming the cause and exit 1, "
        "never an abort") {
        // Real peers for the clients, without a limit.
        testing::Process tcp_server({example("tcp_echo_server"), "--port", "0"});
        const int tcp_port = tcp_server.serving_port();
        REQUIRE(tcp_port > 0);
        testing::Process udp_server({example("udp_echo_server"), "--port", "0", "--quiet"});
        const int udp_port = udp_server.serving_port();
        REQUIRE(udp_port > 0);
        const auto& c = certs();
        testing::Process tls_server(
            {example("tls_echo_server"), "--port", "0", "--cert", c.cert, "--key", c.key});
        const int tls_port = tls_server.serving_port();
        REQUIRE(tls_port > 0);
        testing::Process echo_server({example("echo_server"), "--port", "0"});
        const int echo_port = echo_server.serving_port();
        REQUIRE(echo_port > 0);
        const std::vector<Program> programs = {
            {"tcp_echo_server", true, {"--port", "0"}},
            {"tcp_echo_client", false, {"--port", std::to_string(tcp_port)}},
            {"udp_echo_server", true, {"--port", "0"}},
            {"udp_echo_client", false, {"--port", std::to_string(udp_port)}},
            {"socketpair_protocol", false, {}},
            {"stream_echo_server", true, {"--port", "0"}},
            {"stream_echo_client", false, {"--port", std::to_string(tcp_port)}},
            {"echo_server", true, {"--port", "0"}},
            {"tls_echo_server", true, {"--port", "0", "--cert", c.cert, "--key", c.key}},
            {"tls_echo_client", false, {"--port", std::to_string(tls_port), "--cafile", c.ca}},
            {"subprocess_pipe", false, {"true"}},
            {"chat_server", true, {"--port", "0"}},
            {"http_server", true, {"--port", "0"}},
            {"aioring-load",
             false,
             {"--port", std::to_string(echo_port), "--connections", "2", "--duration", "0.2",
              "--warmup", "0", "--no-progress"}},
        };
        // 3 leaves the dynamic loader no fd to open the libraries with: that is not ours.
        for (const auto& prog : programs) {
#if defined(__SANITIZE_ADDRESS__)
#define AIORING_EXAMPLES_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AIORING_EXAMPLES_ASAN 1
#endif
#endif
#if defined(AIORING_EXAMPLES_ASAN)
            // The examples link aioring_fdlimit (no UBSan vptr check, which needs a free fd to
            // probe memory); aioring-load does not, so at the limit UBSan reports objects as
            // invalid (test_load_tool skips its fd-exhaustion case there for the same reason).
            if (std::string(prog.name) == "aioring-load") continue;
#endif
            std::vector<std::string> argv = {std::string(prog.name) == "aioring-load"
                                                 ? std::string(AIORING_TOOLS_DIR) + "/aioring-load"
                                                 : example(prog.name)};
            argv.insert(argv.end(), prog.args.begin(), prog.args.end());
            CHECK_FALSE(works_or_fails_cleanly(prog.name, prog.server, 4, argv));  // the error path
            for (int nofile : {5, 6, 7, 8, 9, 10, 12, 16})
                works_or_fails_cleanly(prog.name, prog.server, nofile, argv);
            CHECK(works_or_fails_cleanly(prog.name, prog.server, 64, argv));  // and the job itself
        }
        tcp_server.signal(SIGTERM);
        udp_server.signal(SIGTERM);
        tls_server.signal(SIGTERM);
        echo_server.signal(SIGTERM);
        CHECK(echo_server.wait(5) == 0);
        CHECK(tcp_server.wait(5) == 0);
        CHECK(udp_server.wait(5) == 0);
        CHECK(tls_server.wait(5) == 0);
    }

    TEST_CASE(
        "echo_server --threads 256 under a 512-fd limit: one line, exit 1, no thread left behind") {
        for (const char* api : {"protocol", "streams"}) {
            CAPTURE(api);
            testing::Process p(with_limit(
                512, {example("echo_server"), "--api", api, "--port", "0", "--threads", "256"}));
            CHECK(p.wait(20) == 1);
            CHECK(count_lines(p.err) == 1);
            CHECK(p.err.find("Too many open files") != std::string::npos);
            CHECK(p.out.empty());
        }
    }

    TEST_CASE(
        "an argument after -- is a usage error as without it; subprocess_pipe's CMD follows --") {
        for (const char* name : all_programs) {
            if (std::string(name) == "subprocess_pipe") continue;
            CAPTURE(name);
            for (bool dashes : {false, true}) {
                CAPTURE(dashes);
                std::vector<std::string> argv = {example(name), "--port", "0"};
                if (std::string(name) == "socketpair_protocol") argv.resize(1);
                if (dashes) argv.push_back("--");
                argv.push_back("stray");
                testing::Process p(argv);
                CHECK(p.wait() == 2);
                CHECK(p.err.rfind("error: unexpected argument 'stray'\n", 0) == 0);
                CHECK(p.out.empty());
            }
            testing::Process trailing({example(name), "--help", "--"});  // nothing after: fine
            CHECK(trailing.wait() == 0);
        }
        testing::Process dashes({example("subprocess_pipe"), "--", "sh", "-c", "exit 3"});
        CHECK(dashes.wait() == 3);
        testing::Process missing({example("subprocess_pipe"), "--"});
        CHECK(missing.wait() == 2);
        CHECK(missing.err.find("missing CMD") != std::string::npos);
    }

    TEST_CASE("a 100 KB bad value or option name gives a short error line in every program") {
        const std::string huge(100 * 1024, '9');
        for (const char* name : all_programs) {
            CAPTURE(name);
            for (const std::vector<std::string>& extra :
                 {std::vector<std::string>{"--port", huge},
                  std::vector<std::string>{"--port=" + huge}, std::vector<std::string>{"--" + huge},
                  std::vector<std::string>{huge}}) {
                std::vector<std::string> argv = {example(name)};
                argv.insert(argv.end(), extra.begin(), extra.end());
                if (std::string(name) == "subprocess_pipe" && extra.size() == 1 && extra[0] == huge)
                    continue;  // a CMD
                testing::Process p(argv);
                CHECK(p.wait() == 2);
                const std::string first = p.err.substr(0, p.err.find('\n'));
                CAPTURE(first.substr(0, 200));
                CHECK(first.rfind("error: ", 0) == 0);
                CHECK(first.size() < 200);
                const bool has_port = std::string(name) != "socketpair_protocol" &&
                                      std::string(name) != "subprocess_pipe";
                if (has_port || extra[0].rfind("--port", 0) != 0)
                    CHECK(first.find("102400 bytes") !=
                          std::string::npos);  // the length is still told
                CHECK(p.err.size() < 2000);    // the line and the usage
            }
        }
    }

    TEST_CASE("a newline or control byte in a bad argument stays on one escaped error line") {
        // Found by fuzz/cli_args.cpp: `--port<LF>` gave a two-line error.
        testing::Process name({example("echo_server"), "--port\n\x01"});
        CHECK(name.wait() == 2);
        CHECK(name.err.rfind("error: unknown option '--port\\n\\x01'\n", 0) == 0);
        testing::Process value({example("tcp_echo_client"), "--port", "80\n80"});
        CHECK(value.wait() == 2);
        CHECK(value.err.rfind(
                  "error: bad value for --port: '80\\n80' (expected an integer from 0 to 65535)\n",
                  0) == 0);
        testing::Process stray({example("udp_echo_server"), "--", "a\tb"});
        CHECK(stray.wait() == 2);
        CHECK(stray.err.rfind("error: unexpected argument 'a\\tb'\n", 0) == 0);
    }

    TEST_CASE("--version prints NAME aioring VERSION and exits 0 in every program") {
        for (const char* name : all_programs) {
            CAPTURE(name);
            testing::Process p({example(name), "--version"});
            CHECK(p.wait() == 0);
            const std::string prefix = std::string(name) + " aioring ";
            REQUIRE(p.out.rfind(prefix, 0) == 0);
            const std::string version = p.out.substr(prefix.size());
            CAPTURE(version);
            REQUIRE(version.size() >= 6);  // "0.1.0\n"
            CHECK(version.back() == '\n');
            CHECK(std::isdigit(static_cast<unsigned char>(version[0])));
            CHECK(version.find_first_not_of("0123456789.\n") == std::string::npos);
            CHECK(count_lines(p.out) == 1);
            CHECK(p.err.empty());
        }
    }

    TEST_CASE(
        "echo_server --threads 4 under aioring-load --threads 2: every byte verified, clean stop") {
        const std::string load = std::string(AIORING_TOOLS_DIR) + "/aioring-load";
        REQUIRE(::access(load.c_str(), X_OK) == 0);
        for (const char* api : {"protocol", "streams"}) {
            CAPTURE(api);
            testing::Process server(
                {example("echo_server"), "--api", api, "--port", "0", "--threads", "4"});
            const int port = server.serving_port();
            REQUIRE(port > 0);
            testing::Process client({load, "--port", std::to_string(port), "--connections", "16",
                                     "--threads", "2", "--pipeline", "4", "--duration", "1",
                                     "--warmup", "0", "--json", "--no-progress"});
            REQUIRE(client.wait(30) == 0);
            CAPTURE(client.out);
            CHECK(client.out.find("\"errors\": 0") != std::string::npos);
            CHECK(client.out.find("\"messages\": 0,") == std::string::npos);
            server.signal(SIGTERM);
            CHECK(server.wait(5) == 0);
            CHECK(server.err.empty());  // no sanitizer report, no exception
        }
    }

    TEST_CASE(
        "every program asked for io_uring on a kernel too old reports it in one line, exits 1") {
        // AIORING_PRETEND_KERNEL (uring/kernel_check.cpp) makes the loop's set-up refuse the
        // kernel; AIORING_BACKEND=io_uring asks for io_uring only (automatic would fall back to
        // epoll).
        struct Pretend {
            std::optional<std::string> backend;  // the suite's own setting (the .epoll variant's)
            Pretend() {
                if (const char* b = std::getenv("AIORING_BACKEND")) backend = b;
                ::setenv("AIORING_PRETEND_KERNEL", "5.10", 1);
                ::setenv("AIORING_BACKEND", "io_uring", 1);
            }
            ~Pretend() {
                ::unsetenv("AIORING_PRETEND_KERNEL");
                if (backend)
                    ::setenv("AIORING_BACKEND", backend->c_str(), 1);
                else
                    ::unsetenv("AIORING_BACKEND");
            }
        } pretend;
        const std::vector<std::vector<std::string>> commands = {
            {example("tcp_echo_server"), "--port", "0"},
            {example("tcp_echo_client"), "--port", "9"},
            {example("udp_echo_server"), "--port", "0"},
            {example("udp_echo_client"), "--port", "9"},
            {example("socketpair_protocol")},
            {example("stream_echo_server"), "--port", "0"},
            {example("stream_echo_client"), "--port", "9"},
            {example("echo_server"), "--port", "0"},
            {example("echo_server"), "--port", "0", "--threads", "3"},
            {example("tls_echo_server"), "--port", "0", "--cert", certs().cert, "--key",
             certs().key},
            {example("tls_echo_client"), "--port", "9"},
            {example("subprocess_pipe"), "true"},
            {example("chat_server"), "--port", "0"},
            {example("http_server"), "--port", "0"},
            {std::string(AIORING_TOOLS_DIR) + "/aioring-load", "--port", "9", "--duration", "1"},
        };
        for (const auto& argv : commands) {
            CAPTURE(argv[0]);
            CAPTURE(argv.size());
            testing::Process p(argv);
            CHECK(p.wait() == 1);
            CAPTURE(p.err);
            CHECK(count_lines(p.err) == 1);
            CHECK(p.err.find("aioring needs Linux 5.19 or later") != std::string::npos);
            CHECK(p.out.empty());
        }
    }
}
