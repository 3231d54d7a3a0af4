// The benchmark server: echoes every byte back on persistent connections, with back-pressure
// (while a connection's writing is paused it stops reading from it). --api picks the callback
// Protocol, a BufferedProtocol, or coroutine streams (read, write, drain). --threads N runs N loops
// on N threads sharing the port with SO_REUSEPORT.
#include <aioring/aioring.hpp>

#include <array>
#include <atomic>
#include <cstdio>
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

int main(int argc, char** argv) {
    cli::Args args(argc, argv,
                   "usage: echo_server [--api protocol|buffered|streams] [--host HOST] [--port PORT]\n"
                   "                   [--threads N] [--cert FILE --key FILE]\n"
                   "  Echoes every byte back on persistent connections.\n",
                   {{"api", "protocol"}, {"host", "127.0.0.1"}, {"port", "8888"}, {"threads", "1"},
                    {"cert", ""}, {"key", ""}});
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
    serve::Connections connections;
    std::shared_ptr<Server> server;
    try {
        server = loop.run_until_complete(start(loop, c, c.port, threads > 1, connections));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
        return 1;
    }
    const std::uint16_t port = server->addresses().front().port();

    // The other loops share the port actually bound.
    struct Worker {
        std::atomic<EventLoop*> loop{nullptr};
        std::atomic<bool> ready{false};
        std::thread thread;
    };
    std::vector<std::unique_ptr<Worker>> workers;
    std::atomic<bool> failed{false};
    for (int i = 1; i < threads; ++i) {
        auto w = std::make_unique<Worker>();
        Worker* wp = w.get();
        w->thread = std::thread([&, wp] {
            EventLoop l;
            serve::Connections conns;
            std::shared_ptr<Server> s;
            try {
                s = l.run_until_complete(start(l, c, port, true, conns));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "%s\n", cli::cause(e).c_str());
                failed = true;
                wp->ready = true;
                return;
            }
            wp->loop = &l;
            wp->ready = true;
            l.run_forever();  // until the main thread asks it to stop
            s->close();
            conns.close_all();
            const double deadline = l.time() + 1.5;
            while (!conns.open.empty() && l.time() < deadline) {
                l.call_later(0.005, [&l] { l.stop(); });
                l.run_forever();
            }
            wp->loop = nullptr;
        });
        workers.push_back(std::move(w));
    }
    for (auto& w : workers)
        while (!w->ready) std::this_thread::yield();
    if (failed) {
        for (auto& w : workers)
            if (EventLoop* l = w->loop) l->call_soon_threadsafe([l] { l->stop(); });
        for (auto& w : workers) w->thread.join();
        return 1;
    }

    std::printf("Serving on %s\n", serve::describe(*server).c_str());
    serve::run_until_signal(
        loop,
        [&] {
            for (auto& w : workers)
                if (EventLoop* l = w->loop) l->call_soon_threadsafe([l] { l->stop(); });
            server->close();
            connections.close_all();
        },
        [&] { return connections.open.empty(); });
    for (auto& w : workers) w->thread.join();
    return 0;
}
