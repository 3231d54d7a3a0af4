// SPDX-License-Identifier: Apache-2.0
// TLS interop with independent peers on loopback: `openssl s_server` and `openssl s_client`, and
// Python asyncio's TLS server and client (Debian's python3), over TLS 1.2 and 1.3.
#include "support.hpp"
#include "tls_certs.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

using namespace testing;

namespace {

// A child process with its stdin and stdout on pipes (stdout non-blocking); killed if still
// running at the end.
struct Child {
    pid_t pid = -1;
    int in = -1, out = -1;
    std::string output;
    int status = -1;
    explicit Child(std::vector<std::string> argv) {
        int pin[2], pout[2];
        REQUIRE(::pipe2(pin, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(pout, O_CLOEXEC) == 0);
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::dup2(pin[0], 0);
            ::dup2(pout[1], 1);
            int devnull = ::open("/dev/null", O_WRONLY);
            ::dup2(devnull, 2);
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        ::close(pin[0]);
        ::close(pout[1]);
        in = pin[1];
        out = pout[0];
        set_nonblocking(out);
    }
    ~Child() {
        if (in >= 0) ::close(in);
        if (out >= 0) ::close(out);
        if (status < 0 && pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
    void send(std::string_view s) {
        REQUIRE(::write(in, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
    }
    void close_stdin() {
        ::close(in);
        in = -1;
    }
    // Reads what is there; true once the child has exited (and its output is drained).
    bool poll_done() {
        char buf[65536];
        ssize_t n;
        while ((n = ::read(out, buf, sizeof buf)) > 0)
            output.append(buf, static_cast<std::size_t>(n));
        if (status < 0) {
            int st;
            if (::waitpid(pid, &st, WNOHANG) == pid) status = st;
        }
        return status >= 0 && n == 0;
    }
};

std::uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

struct Echo : Protocol {
    Transport* t = nullptr;
    Events* ev;
    bool close_after_first = false;
    explicit Echo(Events* e, bool c = false) : ev(e), close_after_first(c) {}
    void connection_made(Transport& tr) override {
        t = &tr;
        ++ev->made;
    }
    void data_received(std::string_view d) override {
        ev->data.append(d);
        t->write(d);
        if (close_after_first) t->close();
    }
    bool eof_received() override {
        ++ev->eof;
        return false;
    }
    void pause_writing() override { t->pause_reading(); }
    void resume_writing() override { t->resume_reading(); }
    void connection_lost(std::error_code ec) override {
        ++ev->lost;
        ev->lost_error = ec;
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

// Connects, retrying while the freshly started peer is not listening yet.
Connection<> connect_retry(EventLoop& loop, std::uint16_t port, ProtocolFactory f,
                           ConnectOptions o) {
    for (int attempt = 0; attempt < 200; ++attempt) {
        auto fut = loop.create_connection(f, "127.0.0.1", port, o);
        REQUIRE(run_until(loop, [&] { return fut.done(); }));
        try {
            return fut.result();
        } catch (const std::system_error& e) {
            if (e.code() != std::errc::connection_refused) throw;
        }
        bool tick = false;
        loop.call_later(0.05, [&] { tick = true; });
        run_until(loop, [&] { return tick; });
    }
    FAIL("the peer never started listening");
    return {};
}

}  // namespace

TEST_SUITE("ssl interop") {
    TEST_CASE("openssl s_server as the peer, TLS 1.2 and 1.3") {
        for (const char* version : {"-tls1_2", "-tls1_3"}) {
            CAPTURE(version);
            Events ev;
            EventLoop loop;
            ExceptionLog log(loop);
            const auto port = free_port();
            Child server({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port),
                          "-cert", certs().cert, "-key", certs().key, "-naccept", "1", "-quiet",
                          "-rev", version});
            ConnectOptions o;
            o.ssl = client_ctx();
            o.server_hostname = "localhost";
            auto conn = connect_retry(
                loop, port, [&] { return std::make_unique<RecordingProtocol>(ev); }, o);
            CHECK(conn.transport->extra<CipherInfo>("cipher")->version ==
                  (std::string(version) == "-tls1_2" ? "TLSv1.2" : "TLSv1.3"));
            conn.transport->write("hello interop\n");
            // -rev answers each line reversed.
            REQUIRE(run_until(loop,
                              [&] { return ev.data.find("poretni olleh") != std::string::npos; }));
            conn.transport->close();
            REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
            CHECK(ev.order_ok);
            CHECK(log.count == 0);
        }
    }

    TEST_CASE("openssl s_client as the peer: echo, then our close_notify ends its session") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        ServerOptions so;
        so.ssl = SslContext::server();
        so.ssl->load_cert_chain(certs().cert, certs().key);
        auto server =
            run(loop, loop.create_server([&] { return std::make_unique<Echo>(&ev, true); },
                                         "127.0.0.1", 0, so));
        const auto port = server->addresses()[0].port();
        Child client({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                      "-CAfile", certs().ca, "-servername", "localhost", "-verify_return_error",
                      "-quiet"});
        client.send("ping from s_client\n");
        REQUIRE(run_until_polling(loop, [&] { return client.poll_done() && ev.lost == 1; }));
        CHECK(client.output.find("ping from s_client") != std::string::npos);
        CHECK(ev.made == 1);
        CHECK(!ev.lost_error);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("a Python asyncio TLS server: 1 MiB echoed, then a clean close both ways") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        const std::string script = R"(
import asyncio, ssl, sys
async def handle(r, w):
    while True:
        data = await r.read(65536)
        if not data:
            break
        w.write(data)
        await w.drain()
    w.close()
async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    srv = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
)";
        Child py({"python3", "-c", script, certs().cert, certs().key});
        REQUIRE(run_until_polling(loop, [&] {
            py.poll_done();
            return py.output.find('\n') != std::string::npos;
        }));
        const auto port = static_cast<std::uint16_t>(std::stoi(py.output));
        ConnectOptions o;
        o.ssl = client_ctx();
        o.server_hostname = "localhost";
        auto conn = run(
            loop, loop.create_connection([&] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", port, o));
        const std::string data = pattern(1 << 20);
        conn.transport->write(data);
        REQUIRE(run_until(loop, [&] { return ev.data.size() >= data.size(); }));
        CHECK((ev.data == data));
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("a Python asyncio TLS client: echo, then its close_notify is answered with ours") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        ServerOptions so;
        so.ssl = SslContext::server();
        so.ssl->load_cert_chain(certs().cert, certs().key);
        so.ssl->set_alpn_protocols({"h2", "http/1.1"});
        auto server = run(loop, loop.create_server([&] { return std::make_unique<Echo>(&ev); },
                                                   "127.0.0.1", 0, so));
        const auto port = server->addresses()[0].port();
        const std::string script = R"(
import asyncio, ssl, sys
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    ctx.set_alpn_protocols(['http/1.1'])
    r, w = await asyncio.open_connection('127.0.0.1', int(sys.argv[1]), ssl=ctx, server_hostname='localhost')
    payload = bytes((i * 7 + i // 251) % 26 + 97 for i in range(1 << 20))
    w.write(payload)
    await w.drain()
    got = await r.readexactly(len(payload))
    assert got == payload
    alpn = w.get_extra_info('ssl_object').selected_alpn_protocol()
    w.close()
    await w.wait_closed()
    print('ok', alpn, flush=True)
asyncio.run(main())
)";
        Child py({"python3", "-c", script, std::to_string(port), certs().ca});
        REQUIRE(run_until_polling(loop, [&] { return py.poll_done() && ev.lost == 1; }));
        CHECK(py.output == "ok http/1.1\n");
        CHECK(WIFEXITED(py.status));
        CHECK(WEXITSTATUS(py.status) == 0);
        CHECK(ev.data.size() == (1u << 20));
        CHECK(ev.eof == 1);  // its close_notify
        CHECK(!ev.lost_error);
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }
}
