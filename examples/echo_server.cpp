// SPDX-License-Identifier: Apache-2.0
// The benchmark server: echoes every byte back on persistent connections, with back-pressure
// (while a connection's writing is paused it stops reading from it). --api picks the callback
// Protocol, a BufferedProtocol, or coroutine streams (read, write, drain). --threads N runs N loops
// on N threads sharing the port with SO_REUSEPORT.
#include <aioring/aioring.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "echo_streams.hpp"
#include "serve.hpp"
#include "tls_setup.hpp"

using namespace aioring;

namespace {

// Protocol echo: the kernel's buffer view goes straight into the transport's write buffer.
class EchoProtocol final : public Protocol {
public:
    explicit EchoProtocol(serve::Connections& c) : connections_(c) {}
    void connection_made(Transport& t) override {
        transport_ = &t;
        connections_.open.insert(&t);
    }
    void data_received(std::string_view data) override { transport_->write(data); }
    // On EOF the default (false) closes after flushing what is owed.
    void pause_writing() override { transport_->pause_reading(); }
    void resume_writing() override { transport_->resume_reading(); }
    void connection_lost(std::error_code) override { connections_.open.erase(transport_); }

private:
    serve::Connections& connections_;
    Transport* transport_ = nullptr;
};

// BufferedProtocol echo: the kernel receives into this protocol's own memory.
class BufferedEchoProtocol final : public BufferedProtocol {
public:
    explicit BufferedEchoProtocol(serve::Connections& c) : connections_(c) {}
    void connection_made(Transport& t) override {
        transport_ = &t;
        connections_.open.insert(&t);
    }
    std::span<std::byte> get_buffer(std::size_t) override { return buffer_; }
    void buffer_updated(std::size_t n) override {
        transport_->write(std::string_view(reinterpret_cast<const char*>(buffer_.data()), n));
    }
    void pause_writing() override { transport_->pause_reading(); }
    void resume_writing() override { transport_->resume_reading(); }
    void connection_lost(std::error_code) override { connections_.open.erase(transport_); }

private:
    serve::Connections& connections_;
    Transport* transport_ = nullptr;
    std::array<std::byte, 64 * 1024> buffer_{};
};

struct Config {
    std::string api, host;
    std::uint16_t port;
    std::shared_ptr<SslContext> ssl;  // --cert/--key: serve TLS with the same APIs
};

// One loop's server; returns the bound port through `bound` (first loop) and signals errors.
Future<std::shared_ptr<Server>> start(EventLoop& loop, const Config& c, std::uint16_t port,
                                      bool reuse_port, serve::Connections& connections) {
    ServerOptions options;
    options.reuse_port = reuse_port;
    options.start_serving = false;  // once every loop has its server: no accept before that
    options.ssl = c.ssl;
    if (c.api == "streams")
        return loop.create_task(
            start_server(echo_streams_client, c.host, port, default_stream_limit, options));
    ProtocolFactory factory;
    if (c.api == "buffered")
        factory = [&connections] { return std::make_unique<BufferedEchoProtocol>(connections); };
    else
        factory = [&connections] { return std::make_unique<EchoProtocol>(connections); };
    return loop.create_server(std::move(factory), c.host, port, options);
}

}  // namespace

int program(int argc, char** argv) {
    cli::Args args(
        argc, argv,
        "usage: echo_server [--api protocol|buffered|streams] [--host HOST] [--port PORT]\n"
        "                   [--threads N] [--cert FILE --key FILE]\n"
        "  Echoes every byte back on persistent connections.\n",
        {{"api", "protocol"},
         {"host", "127.0.0.1"},
         {"port", "8888"},
         {"threads", "1"},
         {"cert", ""},
         {"key", ""}});
    Config c{args.str("api"), args.str("host"), args.port()};
    if (c.api != "protocol" && c.api != "buffered" && c.api != "streams")
        args.fail("--api must be protocol, buffered or streams, not '" + c.api + "'");
    const int threads = static_cast<int>(args.integer("threads", 1, 256));
    if (args.given("cert") != args.given("key")) args.fail("--cert and --key go together");
    if (args.given("cert")) {
        try {
            c.ssl = tls_setup::server_context(args.str("cert"), args.str("key"));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 1;
        }
    }

    serve::block_stop_signals();
    EventLoop loop;
    serve::handle_stop_signals(loop);
    serve::Connections connections;
    std::shared_ptr<Server> server;
    try {
        server = loop.run_until_complete(start(loop, c, c.port, threads > 1, connections));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    const std::uint16_t port = server->addresses().front().port();

    // The other loops share the port actually bound. `loop` is set while a worker's loop runs;
    // `mutex` keeps it from being freed while the main thread stops it.
    struct Worker {
        std::mutex mutex;
        EventLoop* loop = nullptr;
        std::shared_ptr<Server> server;  // its server, while `loop` is set
        std::atomic<bool> ready{false};
        std::thread thread;
        void set_loop(EventLoop* l, std::shared_ptr<Server> s = nullptr) {
            std::lock_guard lock(mutex);
            loop = l;
            server = std::move(s);
        }
        void stop() {
            std::lock_guard lock(mutex);
            if (EventLoop* l = loop) l->call_soon_threadsafe([l] { l->stop(); });
        }
        void start_serving() {
            std::lock_guard lock(mutex);
            if (EventLoop* l = loop) l->call_soon_threadsafe([s = server] { s->start_serving(); });
        }
    };
    std::vector<std::unique_ptr<Worker>> workers;
    std::mutex error_mutex;
    std::string first_error;  // of all the workers that failed, the first one's cause
    auto fail = [&](std::string cause) {
        std::lock_guard lock(error_mutex);
        if (first_error.empty()) first_error = std::move(cause);
    };
    // A worker's error (no fd for its loop, the port) is recorded; nothing escapes the thread.
    auto serve_worker = [&](Worker* wp) {
        try {
            EventLoop l;
            struct Unset {
                Worker* w;
                ~Unset() { w->set_loop(nullptr); }  // before `l` goes
            } unset{wp};
            serve::Connections conns;
            std::shared_ptr<Server> s = l.run_until_complete(start(l, c, port, true, conns));
            wp->set_loop(&l, s);
            wp->ready = true;
            l.run_forever();  // until the main thread asks it to stop
            wp->set_loop(nullptr);
            s->close();
            conns.close_all();
            const double deadline = l.time() + 1.5;
            while (!conns.open.empty() && l.time() < deadline) {
                l.call_later(0.005, [&l] { l.stop(); });
                l.run_forever();
            }
        } catch (const std::exception& e) {
            fail(cli::cause(e));
        }
        wp->ready = true;
    };
    auto stop_workers = [&] {
        for (auto& w : workers) w->stop();
    };
    auto join_workers = [&] {
        for (auto& w : workers)
            if (w->thread.joinable()) w->thread.join();
    };
    try {
        for (int i = 1; i < threads; ++i) {
            workers.push_back(std::make_unique<Worker>());
            Worker* wp = workers.back().get();
            wp->thread = std::thread(serve_worker, wp);
        }
    } catch (const std::exception& e) {  // a thread could not be started (EAGAIN)
        fail(std::string("cannot start a thread: ") + cli::cause(e));
        if (!workers.empty() && !workers.back()->thread.joinable()) workers.back()->ready = true;
    }
    for (auto& w : workers)
        while (!w->ready) std::this_thread::yield();
    std::string error;
    {
        std::lock_guard lock(error_mutex);
        error = first_error;
    }
    if (!error.empty()) {
        std::fprintf(stderr, "echo_server: %s\n", cli::clip(error, 300).c_str());
        stop_workers();
        join_workers();
        return 1;
    }

    for (auto& w : workers) w->start_serving();
    server->start_serving();
    std::printf("Serving on %s\n", serve::describe(*server).c_str());
    serve::run_until_signal(
        loop,
        [&] {
            stop_workers();
            server->close();
            connections.close_all();
        },
        [&] { return connections.open.empty(); });
    join_workers();
    return 0;
}

int main(int argc, char** argv) { return cli::guarded_main("echo_server", argc, argv, program); }
