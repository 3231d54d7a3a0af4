// SPDX-License-Identifier: Apache-2.0
// A minimal HTTP/1.1 keep-alive server on the Protocol API: every request (GET, HEAD, or one
// with a Content-Length body) gets "Hello, World!" on the same connection, pipelined requests
// in order; "Connection: close" (or HTTP/1.0 without keep-alive) closes after the reply. It is
// the server aioring-load and wrk are compared against in tools/dev bench.
#include <aioring/aioring.hpp>

#include <cstdio>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "serve.hpp"

using namespace aioring;

namespace {

constexpr std::string_view hello =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
constexpr std::string_view hello_head =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n";
constexpr std::string_view bad_request =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::size_t max_head = 64 * 1024;

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Whether `line` is the header `name` (lower case), and its value.
bool header_is(std::string_view line, std::string_view name, std::string_view& value) {
    if (line.size() <= name.size() || line[name.size()] != ':') return false;
    for (std::size_t i = 0; i < name.size(); ++i)
        if (lower(line[i]) != name[i]) return false;
    value = line.substr(name.size() + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r'))
        value.remove_suffix(1);
    return true;
}

// Whether `value` contains `token` (lower case), ignoring case; no allocation per request.
bool contains_token(std::string_view value, std::string_view token) {
    for (std::size_t i = 0; i + token.size() <= value.size(); ++i) {
        std::size_t k = 0;
        while (k < token.size() && lower(value[i + k]) == token[k]) ++k;
        if (k == token.size()) return true;
    }
    return false;
}

class HttpProtocol final : public Protocol {
public:
    explicit HttpProtocol(serve::Connections& c) : connections_(c) {}
    void connection_made(Transport& t) override {
        transport_ = &t;
        connections_.open.insert(&t);
    }
    void data_received(std::string_view data) override {
        if (closing_) return;
        if (pending_.empty()) {
            // The usual case: whole requests in this piece, parsed in place.
            const std::size_t used = serve(data);
            if (used < data.size() && !closing_) pending_.assign(data.substr(used));
        } else {
            pending_.append(data);
            const std::size_t used = serve(pending_);
            pending_.erase(0, used);
        }
        if (pending_.size() > max_head + body_left_) reject();
    }
    // On EOF the default (false) closes after flushing the replies owed.
    void pause_writing() override { transport_->pause_reading(); }
    void resume_writing() override { transport_->resume_reading(); }
    void connection_lost(std::error_code) override { connections_.open.erase(transport_); }

private:
    // Answers every whole request at the front of `in`; returns the bytes consumed.
    std::size_t serve(std::string_view in) {
        std::size_t used = 0;
        while (used < in.size() && !closing_) {
            if (body_left_) {
                const std::size_t n = std::min<std::size_t>(body_left_, in.size() - used);
                body_left_ -= n;
                used += n;
                if (body_left_) break;
                continue;
            }
            const std::string_view rest = in.substr(used);
            const std::size_t end = rest.find("\r\n\r\n");
            if (end == std::string_view::npos) break;
            if (!request(rest.substr(0, end + 2))) return in.size();
            used += end + 4;
        }
        return used;
    }
    // One request's head (request line and headers, each ending in CRLF); false if it is bad.
    bool request(std::string_view head) {
        const std::size_t eol = head.find("\r\n");
        const std::string_view line = head.substr(0, eol);
        const std::size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
        if (sp1 == std::string_view::npos || sp2 == sp1 || line.substr(sp2 + 1, 7) != "HTTP/1.") {
            reject();
            return false;
        }
        const bool http10 = line.substr(sp2 + 1) == "HTTP/1.0";
        const bool is_head = line.substr(0, sp1) == "HEAD";
        bool close = http10, chunked = false;
        std::size_t length = 0;
        for (std::size_t at = eol + 2; at < head.size();) {
            const std::size_t next = head.find("\r\n", at);
            const std::string_view h = head.substr(at, next - at);
            std::string_view v;
            if (header_is(h, "connection", v)) {
                if (contains_token(v, "close")) close = true;
                if (contains_token(v, "keep-alive")) close = false;
            } else if (header_is(h, "content-length", v)) {
                length = 0;
                for (char c : v) {
                    if (c < '0' || c > '9' || length > (1u << 30)) {
                        reject();
                        return false;
                    }
                    length = length * 10 + static_cast<std::size_t>(c - '0');
                }
            } else if (header_is(h, "transfer-encoding", v)) {
                chunked = true;
            }
            at = next + 2;
        }
        if (chunked) {  // a hello server has no use for request bodies it cannot skip cheaply
            reject();
            return false;
        }
        body_left_ = length;
        transport_->write(is_head ? hello_head : hello);
        if (close) {
            closing_ = true;
            transport_->close();
        }
        return true;
    }
    void reject() {
        if (closing_) return;
        closing_ = true;
        transport_->write(bad_request);
        transport_->close();
    }

    serve::Connections& connections_;
    Transport* transport_ = nullptr;
    std::string pending_;        // the start of a request split across reads
    std::size_t body_left_ = 0;  // of the current request's body, to skip
    bool closing_ = false;
};

}  // namespace

namespace {
int program(int argc, char** argv) {
    cli::Args args(
        argc, argv,
        "usage: http_server [--host 127.0.0.1] [--port 8080]\n"
        "  Answers every HTTP/1.1 request with 'Hello, World!' on keep-alive connections.\n",
        {{"host", "127.0.0.1"}, {"port", "8080"}});
    const std::string host = args.str("host");
    const std::uint16_t port = args.port();

    serve::block_stop_signals();
    EventLoop loop;
    serve::handle_stop_signals(loop);
    serve::Connections connections;
    std::shared_ptr<Server> server;
    try {
        server = loop.run_until_complete(loop.create_server(
            [&connections] { return std::make_unique<HttpProtocol>(connections); }, host, port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    std::printf("Serving on %s\n", serve::describe(*server).c_str());
    serve::run_until_signal(
        loop,
        [&] {
            server->close();
            connections.close_all();
        },
        [&] { return connections.open.empty(); });
    return 0;
}
}  // namespace

int main(int argc, char** argv) { return cli::guarded_main("http_server", argc, argv, program); }
