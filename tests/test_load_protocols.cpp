// SPDX-License-Identifier: Apache-2.0
// aioring-load's framed and HTTP protocols against real servers: small framed servers made
// here (a line protocol, a length-prefixed one), the http_server example, a keep-alive Python
// server with Content-Length, chunked and 404 replies, and python3 -m http.server (HTTP/1.0,
// one reply per connection). Ping-pong, pipelined and open loop, each reply framed and counted.
#include "support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "process.hpp"

using namespace aioring;

namespace {

// Answers what it can of `in` into `out`; returns the bytes of `in` it used.
using Handler = std::function<std::size_t(std::string_view in, std::string& out)>;

class HandlerProtocol : public Protocol {
public:
    HandlerProtocol(const Handler& h, std::vector<Transport*>& live) : h_(h), live_(live) {}
    void connection_made(Transport& t) override {
        t_ = &t;
        live_.push_back(&t);
    }
    void data_received(std::string_view d) override {
        in_.append(d);
        out_.clear();
        in_.erase(0, h_(in_, out_));
        if (!out_.empty()) t_->write(std::string_view(out_));
    }
    void connection_lost(std::error_code) override {
        live_.erase(std::find(live_.begin(), live_.end(), t_));
    }

private:
    const Handler& h_;
    std::vector<Transport*>& live_;
    Transport* t_ = nullptr;
    std::string in_, out_;
};

// A server on 127.0.0.1:0 on its own thread and loop, answering with `h`.
class TestServer {
public:
    explicit TestServer(Handler h) : h_(std::move(h)) {
        std::promise<std::uint16_t> port;
        auto got = port.get_future();
        thread_ = std::thread([this, &port] { serve(port); });
        port_ = got.get();
    }
    ~TestServer() {
        loop_.load()->call_soon_threadsafe([l = loop_.load()] { l->stop(); });
        thread_.join();
    }
    std::string port() const { return std::to_string(port_); }

private:
    void serve(std::promise<std::uint16_t>& port) {
        EventLoop loop;
        std::vector<Transport*> live;
        auto server = testing::run(
            loop, loop.create_server(
                      [this, &live] { return std::make_unique<HandlerProtocol>(h_, live); },
                      "127.0.0.1", 0));
        port.set_value(server->addresses().at(0).port());
        loop_.store(&loop);
        loop.run_forever();
        server->close();
        for (Transport* t : std::vector<Transport*>(live)) t->abort();
        testing::run_until(
            loop, [&] { return live.empty(); }, 5);
        testing::run(loop, server->wait_closed(), 5);
    }
    Handler h_;
    std::thread thread_;
    std::atomic<EventLoop*> loop_{nullptr};
    std::uint16_t port_ = 0;
};

// Lines in, "+OK LINE\r\n" out (every `err_every`-th one "-ERR\r\n" instead).
Handler line_server(std::atomic<std::uint64_t>& served, std::uint64_t err_every = 0) {
    return [&served, err_every](std::string_view in, std::string& out) {
        std::size_t used = 0;
        for (std::size_t eol; (eol = in.find("\r\n", used)) != std::string_view::npos;
             used = eol + 2) {
            const std::uint64_t n = ++served;
            if (err_every && n % err_every == 0)
                out += "-ERR\r\n";
            else
                out += "+OK " + std::string(in.substr(used, eol - used)) + "\r\n";
        }
        return used;
    };
}

// Requests: a 4-byte big-endian length, then that many bytes. Replies: 'R', a 2-byte
// little-endian length, then the payload.
Handler length_server(std::atomic<std::uint64_t>& served) {
    return [&served](std::string_view in, std::string& out) {
        std::size_t used = 0;
        while (in.size() - used >= 4) {
            const auto* p = reinterpret_cast<const unsigned char*>(in.data() + used);
            const std::size_t n = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) |
                                  (std::size_t{p[2]} << 8) | p[3];
            if (in.size() - used < 4 + n) break;
            out += 'R';
            out += static_cast<char>(n & 0xff);
            out += static_cast<char>(n >> 8);
            out.append(in.substr(used + 4, n));
            used += 4 + n;
            ++served;
        }
        return used;
    };
}

struct Run {
    int status = -1;
    std::string out, err;
};
Run load(const std::string& args) {
    std::vector<std::string> argv{AIORING_LOAD_BIN};
    // Split on spaces, with '...' quoting (the tests' own arguments, no nesting).
    std::string cur;
    bool quoted = false, any = false;
    for (char c : args) {
        if (c == '\'') {
            quoted = !quoted;
            any = true;
        } else if (c == ' ' && !quoted) {
            if (any) argv.push_back(cur);
            cur.clear();
            any = false;
        } else {
            cur += c;
            any = true;
        }
    }
    if (any) argv.push_back(cur);
    testing::Process p(argv);
    Run r;
    r.status = p.wait(60);
    r.out = p.out;
    r.err = p.err;
    return r;
}

double json_number(const std::string& json, const std::string& key) {
    const auto at = json.find("\"" + key + "\": ");
    if (at == std::string::npos) return std::nan("");
    const char* p = json.c_str() + at + key.size() + 4;
    char* end = nullptr;
    const double v = std::strtod(p, &end);
    return end == p ? std::nan("") : v;
}

const std::string short_run = " --connections 4 --duration 0.5 --warmup 0.1 --json";

// A keep-alive HTTP/1.1 server in Python: "/" with Content-Length, "/chunked" chunked, anything
// else 404; each reply written whole.
const char* python_http11 = R"PY(
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/":
            r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        elif self.path.startswith("/chunked"):
            r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n"
        else:
            r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
        self.wfile.write(r)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("Serving on 127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
)PY";

std::string temp_dir() {
    char tmpl[] = "/tmp/aioring-load-proto-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}

}  // namespace

TEST_SUITE("load protocols") {
    TEST_CASE(
        "framed: line requests with {seq}, delimited replies, pipelined; every reply counted") {
        std::atomic<std::uint64_t> served{0};
        TestServer server(line_server(served));
        Run r = load("--port " + server.port() +
                     " --protocol framed --request 'PING {conn}-{seq}\\r\\n'"
                     " --reply-delimiter '\\r\\n' --expect-prefix '+OK PING ' --pipeline 4" +
                     short_run);
        INFO(r.out << r.err);
        CHECK(r.status == 0);
        CHECK(json_number(r.out, "messages") > 100);
        CHECK(json_number(r.out, "messages") <= static_cast<double>(served.load()));
        CHECK(json_number(r.out, "errors") == 0);
        CHECK(json_number(r.out, "timeouts") == 0);
        CHECK(r.out.find("\"protocol\": \"framed\"") != std::string::npos);
    }

    TEST_CASE("framed: a reply without the expected prefix is a mismatch") {
        std::atomic<std::uint64_t> served{0};
        TestServer server(line_server(served, 3));
        // No warm-up: mismatches count from the start (as an echo's do), replies from the window.
        Run r = load("--port " + server.port() +
                     " --protocol framed --request 'PING\\r\\n'"
                     " --reply-delimiter '\\r\\n' --expect-prefix +OK --connections 4 --duration "
                     "0.5 --warmup 0 --json");
        INFO(r.out << r.err);
        const double messages = json_number(r.out, "messages"),
                     bad = json_number(r.out, "mismatches");
        CHECK(bad > 0);
        // Every third reply is an error: a third of the answered ones, give or take the window's
        // edges.
        CHECK(bad == doctest::Approx((messages + bad) / 3).epsilon(0.1));
        CHECK(r.status == 0);  // a third is under --max-failures 0.5
        Run strict = load("--port " + server.port() +
                          " --protocol framed --request 'PING\\r\\n'"
                          " --reply-delimiter '\\r\\n' --expect-prefix +OK --max-failures 0.1" +
                          short_run);
        CHECK(strict.status == 1);
    }

    TEST_CASE("framed: length-prefixed replies (2le+1) in open loop, and fixed-size ones") {
        std::atomic<std::uint64_t> served{0};
        TestServer server(length_server(served));
        Run r = load("--port " + server.port() +
                     " --protocol framed --request '\\x00\\x00\\x00\\x05{rand:5}'"
                     " --reply-length-prefix 2le+1 --expect-prefix R --rate 400" +
                     short_run);
        INFO(r.out << r.err);
        CHECK(r.status == 0);
        CHECK(json_number(r.out, "messages") == doctest::Approx(400 * 0.5).epsilon(0.1));
        CHECK(json_number(r.out, "errors") == 0);
        CHECK(json_number(r.out, "timeouts") == 0);
        CHECK(json_number(r.out, "bytes") == 8 * json_number(r.out, "messages"));
        // The same replies are 8 bytes each: framed by size, from a request file.
        const std::string dir = temp_dir();
        {
            std::ofstream f(dir + "/req.bin", std::ios::binary);
            f.write("\x00\x00\x00\x05hello", 9);
        }
        Run sized = load("--port " + server.port() + " --protocol framed --request-file " + dir +
                         "/req.bin --reply-size 8 --expect-prefix R --pipeline 2" + short_run);
        INFO(sized.out << sized.err);
        CHECK(sized.status == 0);
        CHECK(json_number(sized.out, "messages") > 100);
        CHECK(json_number(sized.out, "mismatches") == 0);
        std::system(("rm -rf " + dir).c_str());
    }

    TEST_CASE("framed: a server that breaks the framing is an error, and the run says so") {
        std::atomic<std::uint64_t> served{0};
        // Claims 60000-byte replies it never sends: the framing holds, the replies time out.
        TestServer liar([&](std::string_view in, std::string& out) {
            out += std::string("R\x60\xea", 3);
            ++served;
            return in.size();
        });
        Run r = load("--port " + liar.port() +
                     " --protocol framed --request 'x' --reply-length-prefix 2le+1"
                     " --timeout 0.2 --connections 2 --duration 0.3 --warmup 0 --json");
        INFO(r.out << r.err);
        CHECK(r.status == 1);
        CHECK(json_number(r.out, "timeouts") == 2);
        CHECK(r.err.find("no request got a reply") != std::string::npos);
    }

    TEST_CASE("http: the http_server example, ping-pong, pipelined and open loop") {
        testing::Process server({testing::example("http_server"), "--port", "0"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        for (const char* how : {"", " --pipeline 8", " --rate 1000"}) {
            Run r = load("--port " + std::to_string(port) + " --protocol http" + how + short_run);
            INFO(how << ": " << r.out << r.err);
            CHECK(r.status == 0);
            const double messages = json_number(r.out, "messages");
            CHECK(messages > 100);
            CHECK(json_number(r.out, "2xx") == messages);
            CHECK(json_number(r.out, "4xx") == 0);
            CHECK(json_number(r.out, "errors") == 0);
            CHECK(json_number(r.out, "timeouts") == 0);
            CHECK(json_number(r.out, "connections_made") == 4);  // keep-alive: never reconnected
        }
        // A body and headers: POST with Content-Length, as the server skips it.
        Run post = load("--port " + std::to_string(port) +
                        " --protocol http --method POST --body 'k={seq}'"
                        " --header 'X-Test: 1' --url-path /submit" +
                        short_run);
        INFO(post.err);
        CHECK(post.status == 0);
        CHECK(json_number(post.out, "2xx") > 100);
        server.signal(SIGTERM);
        CHECK(server.wait(5) == 0);
    }

    TEST_CASE(
        "http_server: pipelined requests answered in order, Connection: close honoured, SIGINT "
        "exits 0") {
        testing::Process server({testing::example("http_server"), "--port", "0"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        // Three requests in one write (a body to skip in the second, HEAD in the third), the last
        // asking to close: three replies, the HEAD one without its body, then EOF.
        const std::string reqs =
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            "POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
            "HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n";
        REQUIRE(::write(fd, reqs.data(), reqs.size()) == static_cast<ssize_t>(reqs.size()));
        std::string got;
        char buf[4096];
        for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
            got.append(buf, static_cast<std::size_t>(n));
        ::close(fd);
        const std::string hello =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n";
        CHECK(got == hello + "Hello, World!" + hello + "Hello, World!" + hello);
        server.signal(SIGINT);
        CHECK(server.wait(5) == 0);
    }

    TEST_CASE("http: a keep-alive Python server with Content-Length, chunked and 404 replies") {
        const std::string dir = temp_dir();
        { std::ofstream(dir + "/server.py") << python_http11; }
        testing::Process server({"/usr/bin/env", "python3", dir + "/server.py"});
        const int port = server.serving_port();
        REQUIRE(port > 0);
        const std::string p = std::to_string(port);
        Run plain = load("--port " + p + " --protocol http" + short_run);
        INFO(plain.out << plain.err);
        CHECK(plain.status == 0);
        CHECK(json_number(plain.out, "2xx") > 0);
        CHECK(json_number(plain.out, "bytes") == json_number(plain.out, "messages") * 43);
        Run chunked =
            load("--port " + p + " --protocol http --url-path /chunked --pipeline 2" + short_run);
        INFO(chunked.out << chunked.err);
        CHECK(chunked.status == 0);
        CHECK(json_number(chunked.out, "2xx") > 0);
        CHECK(json_number(chunked.out, "errors") == 0);
        // Non-2xx replies are counted apart, not as errors, and do not fail the run.
        Run missing = load("--port " + p + " --protocol http --url-path /missing" + short_run);
        INFO(missing.out << missing.err);
        CHECK(missing.status == 0);
        CHECK(json_number(missing.out, "2xx") == 0);
        CHECK(json_number(missing.out, "4xx") == json_number(missing.out, "messages"));
        CHECK(json_number(missing.out, "errors") == 0);
        server.signal(SIGTERM);
        server.wait(5);
        std::system(("rm -rf " + dir).c_str());
    }

    TEST_CASE("http: python3 -m http.server closes after each reply; the tool reconnects") {
        const std::string dir = temp_dir();
        { std::ofstream(dir + "/hello.txt") << "hello\n"; }
        testing::Process server({"/usr/bin/env", "python3", "-u", "-m", "http.server", "--bind",
                                 "127.0.0.1", "--directory", dir, "0"});
        REQUIRE(server.wait_for_output(") ...", 10));
        const auto at = server.out.find(" port ");
        REQUIRE(at != std::string::npos);
        const std::string port = std::to_string(std::stoi(server.out.substr(at + 6)));
        Run r = load("--port " + port + " --protocol http --url-path /hello.txt" + short_run);
        INFO(r.out << r.err);
        CHECK(r.status == 0);
        const double messages = json_number(r.out, "messages");
        CHECK(messages > 10);
        CHECK(json_number(r.out, "2xx") == messages);
        CHECK(json_number(r.out, "early_closes") == 0);
        CHECK(json_number(r.out, "connections_made") > messages);  // one connection a request
        server.signal(SIGTERM);
        server.wait(5);
        std::system(("rm -rf " + dir).c_str());
    }

    TEST_CASE("http: a server that does not speak HTTP is an error, exit 1") {
        std::atomic<std::uint64_t> served{0};
        TestServer ssh([&](std::string_view in, std::string& out) {
            out += "SSH-2.0-OpenSSH_9.2\r\n";
            ++served;
            return in.size();
        });
        Run r = load("--port " + ssh.port() +
                     " --protocol http --connections 2 --duration 0.3 --warmup 0 --json");
        INFO(r.out << r.err);
        CHECK(r.status == 1);
        CHECK(json_number(r.out, "mismatches") > 0);
        CHECK(r.out.find("not an HTTP/1.x status line") != std::string::npos);
    }

    TEST_CASE("--requests-per-connection reconnects after N requests, nothing lost") {
        std::atomic<std::uint64_t> served{0};
        TestServer server(line_server(served));
        Run r = load("--port " + server.port() +
                     " --protocol framed --request 'PING\\r\\n'"
                     " --reply-delimiter '\\r\\n' --requests-per-connection 5 --pipeline 2" +
                     short_run);
        INFO(r.out << r.err);
        CHECK(r.status == 0);
        const double messages = json_number(r.out, "messages");
        CHECK(messages > 20);
        CHECK(json_number(r.out, "errors") == 0);
        CHECK(json_number(r.out, "timeouts") == 0);
        // Each connection carried at most 5 requests (warm-up ones included, so at least this
        // many).
        CHECK(json_number(r.out, "connections_made") >= messages / 5);
    }

    TEST_CASE("marker: latency markers found in whatever comes back, lost ones timed out") {
        std::atomic<std::uint64_t> served{0};
        // An echo that wraps what it echoes in noise and false starts of markers, between whole
        // 100-byte messages: its reads end anywhere (where a ring buffer runs out, say), and noise
        // put there would land inside a marker and destroy it, which no echo or relay does.
        TestServer noisy([&](std::string_view in, std::string& out) {
            const std::size_t used = in.size() - in.size() % 100;
            if (used == 0) return used;
            out += "[[al:noise[";
            out.append(in.substr(0, used));
            out += "[[a";
            ++served;
            return used;
        });
        for (const char* how : {" --pipeline 4", " --rate 500"}) {
            Run r = load("--port " + noisy.port() + " --protocol marker --size 100" +
                         std::string(how) + short_run);
            INFO(how << ": " << r.out << r.err);
            CHECK(r.status == 0);
            CHECK(json_number(r.out, "messages") > 100);
            CHECK(json_number(r.out, "errors") == 0);
            CHECK(json_number(r.out, "timeouts") == 0);
            CHECK(json_number(r.out, "bytes") == 100 * json_number(r.out, "messages"));
        }
        // A relay that drops every other 64-byte message: each of those is lost, and counted.
        TestServer lossy([&](std::string_view in, std::string& out) {
            std::size_t used = 0;
            for (; in.size() - used >= 64; used += 64)
                if (served++ % 2 == 0) out.append(in.substr(used, 64));
            return used;
        });
        Run r = load("--port " + lossy.port() +
                     " --protocol marker --size 64 --rate 400 --timeout 0.3" + short_run);
        INFO(r.out << r.err);
        const double messages = json_number(r.out, "messages"),
                     timeouts = json_number(r.out, "timeouts");
        CHECK(messages > 50);
        CHECK(timeouts == doctest::Approx(messages).epsilon(0.15));
        CHECK(json_number(r.out, "mismatches") == 0);
        Run small = load("--port 9 --protocol marker --size 16");
        CHECK(small.status == 2);
    }

    TEST_CASE("the new flags' bad input: exit 2 with one line and the usage") {
        for (const char* args :
             {"--port 9 --protocol gopher", "--port 9 --protocol framed --reply-size 4",
              "--port 9 --protocol framed --request x",
              "--port 9 --protocol framed --request x --reply-size 4 --reply-delimiter y",
              "--port 9 --protocol framed --request '\\q' --reply-size 4",
              "--port 9 --protocol framed --request x --reply-length-prefix 3",
              "--port 9 --protocol framed --request-file /nonexistent --reply-size 4",
              "--port 9 --reply-size 4", "--port 9 --protocol http --header nocolon",
              "--port 9 --protocol http --url-path nope", "--port 9 --protocol http --mode stream",
              "--port 9 --url-path /", "--port 9 --protocol http --size 10"}) {
            Run r = load(args);
            INFO(args << ": " << r.err);
            CHECK(r.status == 2);
            CHECK(r.err.find("usage:") != std::string::npos);
            CHECK(r.err.find("aioring-load: ") == 0);
        }
    }
}
