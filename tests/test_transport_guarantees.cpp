// SPDX-License-Identifier: Apache-2.0
// The guarantees every writing transport gives, run against each kind (TCP, Unix stream, write
// pipe, TLS; datagram endpoints where they apply): callback order, the flow-control edges, write
// after close, abort drops the buffer, and a kept handle after the connection is lost and after
// the loop is closed. Each rig fails the test on any call of the loop's exception handler.
#include "alloc_counter.hpp"
#include "support.hpp"
#include "tls_certs.hpp"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <csignal>
#include <thread>

using namespace testing;

namespace {

// Records the buffer size each flow-control callback saw.
class FlowProtocol : public RecordingProtocol {
public:
    FlowProtocol(Events& e, WriteTransport** t) : RecordingProtocol(e), t_(t) {}
    void pause_writing() override {
        RecordingProtocol::pause_writing();
        if (*t_) pause_sizes.push_back((*t_)->get_write_buffer_size());
    }
    void resume_writing() override {
        RecordingProtocol::resume_writing();
        if (*t_) resume_sizes.push_back((*t_)->get_write_buffer_size());
    }
    std::vector<std::size_t> pause_sizes, resume_sizes;

private:
    WriteTransport** t_;
};

// One connected transport of some kind and its peer. The peer reads only when asked.
struct Rig {
    EventLoop loop;
    ExceptionGuard guard{loop};  // fails the test on any exception-handler call not expected
    Events ev;
    std::shared_ptr<WriteTransport> t;  // every kind
    std::shared_ptr<Transport> full;    // kinds that also read (not a write pipe)
    WriteTransport* raw = nullptr;
    FlowProtocol* proto = nullptr;
    int peer_fd = -1;  // TCP, Unix, pipe: the other end
    // TLS: our own server side.
    std::shared_ptr<Server> server;
    Events peer_ev;
    Transport* peer_t = nullptr;
    std::string peer_got;
    bool peer_eof = false;
    std::unique_ptr<PeerReader> reader;  // reads peer_fd once a test asks for it

    ProtocolFactory custom;  // instead of the FlowProtocol
    ProtocolFactory factory() {
        if (custom) return custom;
        return [this] {
            auto p = std::make_unique<FlowProtocol>(ev, &raw);
            proto = p.get();
            return p;
        };
    }
    void adopt(std::shared_ptr<WriteTransport> w, std::shared_ptr<Transport> f) {
        if (custom) ev.made = 1;
        t = std::move(w);
        full = std::move(f);
        raw = t.get();
    }
    // Reads what the peer has now (TLS: what its protocol got).
    void peer_pump() {
        if (peer_fd < 0) {
            peer_got = peer_ev.data;
            peer_eof = peer_ev.eof != 0 || peer_ev.lost != 0;
            return;
        }
        if (!reader) reader = std::make_unique<PeerReader>(loop, peer_fd);
        if (reader->take(peer_got)) peer_eof = true;
    }
    bool peer_receives(const std::string& what) {
        return run_until(loop,
                         [&] {
                             peer_pump();
                             return peer_got.size() >= what.size();
                         }) &&
               peer_got == what;
    }
    ~Rig() {
        reader.reset();
        if (peer_fd >= 0) ::close(peer_fd);
        if (server && !loop.is_closed()) {
            server->close();
            run_until(loop, [&] { return !server->is_serving(); });
        }
    }
};

struct Tcp {
    static constexpr const char* name = "TCP";
    static void open(Rig& r) {
        TcpListener l;
        auto conn = run(r.loop, r.loop.create_connection(r.factory(), "127.0.0.1", l.port));
        r.adopt(conn.transport, conn.transport);
        r.peer_fd = l.accept();
        REQUIRE(r.peer_fd >= 0);
        set_nonblocking(r.peer_fd);
    }
};

struct Unix {
    static constexpr const char* name = "Unix";
    static void open(Rig& r) {
        SocketPair sp;
        auto conn = run(r.loop, r.loop.connect_accepted_socket(r.factory(), sp.take_a()));
        r.adopt(conn.transport, conn.transport);
        r.peer_fd = std::exchange(sp.b, -1);
        set_nonblocking(r.peer_fd);
    }
};

struct WritePipe {
    static constexpr const char* name = "pipe";
    static void open(Rig& r) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        auto conn = run(r.loop, r.loop.connect_write_pipe(r.factory(), fds[1]));
        r.adopt(conn.transport, nullptr);
        r.peer_fd = fds[0];
        set_nonblocking(r.peer_fd);
    }
};

// The TLS server side: records what it gets.
struct PeerProtocol : RecordingProtocol {
    Transport** out;
    PeerProtocol(Events& e, Transport** o) : RecordingProtocol(e), out(o) {}
    void connection_made(Transport& t) override {
        RecordingProtocol::connection_made(t);
        *out = &t;
    }
};

struct Tls {
    static constexpr const char* name = "TLS";
    static void open(Rig& r) {
        ServerOptions so;
        so.ssl = server_ctx();
        r.server =
            run(r.loop, r.loop.create_server(
                            [&r] { return std::make_unique<PeerProtocol>(r.peer_ev, &r.peer_t); },
                            "127.0.0.1", 0, so));
        ConnectOptions o;
        o.ssl = client_ctx();
        o.server_hostname = "localhost";
        auto conn = run(r.loop, r.loop.create_connection(r.factory(), "127.0.0.1",
                                                         r.server->addresses()[0].port(), o));
        r.adopt(conn.transport, conn.transport);
        REQUIRE(run_until(r.loop, [&] { return r.peer_t != nullptr; }));
    }
};

std::string pattern(std::size_t n, char base = 'a') {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(base + (i * 7 + i / 251) % 26);
    return s;
}

}  // namespace

#define ALL_KINDS Tcp, Unix, WritePipe, Tls

TEST_SUITE("transport guarantees") {
    TEST_CASE_TEMPLATE(
        "connection_made, then the data, then connection_lost once; the protocol is freed once", K,
        ALL_KINDS) {
        Rig r;
        K::open(r);
        CHECK(r.ev.made == 1);
        CHECK(r.proto->pause_sizes.empty());
        r.t->write("ping");
        CHECK(r.peer_receives("ping"));
        r.t->close();
        CHECK(r.t->is_closing());
        REQUIRE(run_until(r.loop, [&] { return r.ev.lost == 1; }));
        CHECK(!r.ev.lost_error);
        CHECK(r.ev.order_ok);
        CHECK(r.ev.destroyed == 0);
        r.t.reset();
        r.full.reset();
        REQUIRE(run_until(r.loop, [&] { return r.ev.destroyed == 1; }));
        CHECK(r.ev.lost == 1);
    }

    TEST_CASE_TEMPLATE("a buffer of exactly the high-water mark does not pause; one byte more does",
                       K, ALL_KINDS) {
        Rig r;
        K::open(r);
        REQUIRE(r.t->get_write_buffer_size() == 0);
        r.t->set_write_buffer_limits(1000, 500);
        r.t->write(pattern(1000));
        CHECK(r.t->get_write_buffer_size() == 1000);
        CHECK(r.ev.pauses == 0);
        r.t->write("x");
        CHECK(r.ev.pauses == 1);  // synchronously, inside write()
        REQUIRE(r.proto->pause_sizes.size() == 1);
        CHECK(r.proto->pause_sizes[0] == 1001);
        REQUIRE(run_until(r.loop, [&] { return r.ev.resumes == 1; }));
        REQUIRE(r.proto->resume_sizes.size() == 1);
        CHECK(r.proto->resume_sizes[0] <= 500);
        CHECK(r.ev.order_ok);
        CHECK(r.peer_receives(pattern(1000) + "x"));
    }

    TEST_CASE_TEMPLATE("zero marks: any buffered byte pauses, only an empty buffer resumes", K,
                       ALL_KINDS) {
        Rig r;
        K::open(r);
        r.t->set_write_buffer_limits(0, 0);
        CHECK(r.ev.pauses == 0);  // an empty buffer is not over 0
        r.t->write("y");
        CHECK(r.ev.pauses == 1);
        REQUIRE(run_until(r.loop, [&] { return r.ev.resumes == 1; }));
        CHECK(r.proto->resume_sizes == std::vector<std::size_t>{0});
        CHECK(r.peer_receives("y"));
        CHECK(r.ev.order_ok);
    }

    TEST_CASE_TEMPLATE("a limit change pauses or resumes at once", K, ALL_KINDS) {
        Rig r;
        K::open(r);
        r.t->set_write_buffer_limits(4000);
        r.t->write(pattern(2000));
        CHECK(r.ev.pauses == 0);
        r.t->set_write_buffer_limits(1999, 0);
        CHECK(r.ev.pauses == 1);
        r.t->set_write_buffer_limits(1999, 0);  // the same limits again: nothing to say
        CHECK(r.ev.pauses == 1);
        CHECK(r.ev.resumes == 0);
        r.t->set_write_buffer_limits(8000, 2000);
        CHECK(r.ev.resumes == 1);
        CHECK(r.proto->resume_sizes == std::vector<std::size_t>{2000});
        CHECK(r.ev.order_ok);
        CHECK(r.peer_receives(pattern(2000)));
    }

    TEST_CASE_TEMPLATE("write after close is ignored and is_closing says so", K, ALL_KINDS) {
        Rig r;
        K::open(r);
        CHECK(!r.t->is_closing());
        r.t->write("last");
        r.t->close();
        CHECK(r.t->is_closing());
        r.t->write("ignored");
        CHECK(r.t->get_write_buffer_size() == 4);  // close() flushes what came before it
        REQUIRE(run_until(r.loop, [&] { return r.ev.lost == 1; }));
        r.t->write("ignored too");
        CHECK(r.t->get_write_buffer_size() == 0);
        REQUIRE(run_until(r.loop, [&] {
            r.peer_pump();
            return r.peer_eof;
        }));
        CHECK(r.peer_got == "last");
        CHECK(r.ev.order_ok);
    }

    TEST_CASE_TEMPLATE("abort drops the buffer: connection_lost once, no resume_writing", K,
                       ALL_KINDS) {
        Rig r;
        K::open(r);
        r.t->write(std::string(4 << 20, 'd'));
        CHECK(r.ev.pauses == 1);
        r.t->abort();
        CHECK(r.t->is_closing());
        CHECK(r.t->get_write_buffer_size() == 0);
        r.t->write("ignored");
        REQUIRE(run_until(r.loop, [&] { return r.ev.lost == 1; }));
        CHECK(r.ev.resumes == 0);
        CHECK(r.ev.order_ok);
    }

    TEST_CASE_TEMPLATE("a kept handle stays safe after connection_lost and after loop.close()", K,
                       ALL_KINDS) {
        Rig r;
        K::open(r);
        r.t->write(std::string(1 << 20, 'k'));
        r.t->abort();
        REQUIRE(run_until(r.loop, [&] { return r.ev.lost == 1; }));
        auto poke = [](WriteTransport& w, Transport* f) {
            CHECK(w.is_closing());
            w.write("x");
            std::string_view parts[] = {"a", "b"};
            w.writelines(parts);
            w.set_write_buffer_limits(10, 5);
            CHECK(w.get_write_buffer_size() == 0);
            (void)w.get_write_buffer_limits();
            (void)w.get_extra_info("peername");
            (void)w.get_extra_info("socket");
            w.close();
            w.abort();
            if (f) {
                f->pause_reading();
                f->resume_reading();
                (void)f->is_reading();
            }
        };
        poke(*r.t, r.full.get());
        r.loop.close();
        poke(*r.t, r.full.get());
        CHECK(r.ev.lost == 1);
    }

    TEST_CASE_TEMPLATE("a handle kept while the loop closes under an open connection stays safe", K,
                       ALL_KINDS) {
        std::shared_ptr<WriteTransport> kept;
        std::shared_ptr<Transport> kept_full;
        Events* ev = nullptr;
        Rig r;
        K::open(r);
        ev = &r.ev;
        r.t->write(std::string(8 << 20, 'o'));  // more than the kernel holds: a send in flight
        REQUIRE(run_until(r.loop, [&] { return r.t->get_write_buffer_size() < (8u << 20); }));
        kept = r.t;
        kept_full = r.full;
        r.loop.close();
        CHECK(kept->is_closing());
        kept->write("after close");
        std::string_view parts[] = {"a", "b"};
        kept->writelines(parts);
        kept->set_write_buffer_limits(10, 5);
        CHECK(kept->get_write_buffer_size() == 0);
        (void)kept->get_extra_info("socket");
        (void)kept->get_extra_info("peername");
        if (kept_full) {
            kept_full->pause_reading();
            kept_full->resume_reading();
            kept_full->set_protocol(std::make_unique<RecordingProtocol>(*ev));
        }
        kept->close();
        kept->abort();
        CHECK(ev->lost == 0);  // as asyncio: a closing loop does not call connection_lost
        // The protocols record into the rig's Events: let the transports go before it does.
        kept.reset();
        kept_full.reset();
    }
}

namespace {
// Sends a 64-byte message, waits for its echo, again; counts allocations on the loop thread
// (both sides, for TLS) between `warmup` and `warmup + measured` round trips.
struct Ping : Protocol {
    EventLoop* loop = nullptr;
    Transport* t = nullptr;
    int warmup = 0, measured = 0, rounds = 0;
    std::size_t got = 0;
    static constexpr std::string_view msg =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    void connection_made(Transport& tr) override { t = &tr; }
    void data_received(std::string_view d) override {
        got += d.size();
        if (got < msg.size()) return;
        got -= msg.size();
        ++rounds;
        if (rounds == warmup) count_allocations = true;
        if (rounds == warmup + measured) {
            count_allocations = false;
            loop->stop();
            return;
        }
        t->write(msg);
    }
};
struct Echoer : Protocol {
    Transport* t;
    explicit Echoer(Transport* tr) : t(tr) {}
    void data_received(std::string_view d) override { t->write(d); }
};
}  // namespace

TEST_SUITE("transport guarantees") {
    TEST_CASE_TEMPLATE("a 64-byte ping-pong allocates nothing per message once warmed up", K, Tcp,
                       Unix, Tls) {
        Rig r;
        Ping* ping = nullptr;
        r.custom = [&] {
            auto p = std::make_unique<Ping>();
            ping = p.get();
            return p;
        };
        K::open(r);
        REQUIRE(ping);
        ping->loop = &r.loop;
        ping->warmup = 200;
        ping->measured = 1000;
        std::thread echo;
        if (r.peer_fd >= 0) {
            ::fcntl(r.peer_fd, F_SETFL, ::fcntl(r.peer_fd, F_GETFL) & ~O_NONBLOCK);
            echo = std::thread([fd = r.peer_fd] {
                char buf[4096];
                for (;;) {
                    ssize_t n = ::read(fd, buf, sizeof buf);
                    if (n <= 0 || ::write(fd, buf, static_cast<std::size_t>(n)) != n) return;
                }
            });
        } else {
            r.peer_t->set_protocol(std::make_unique<Echoer>(r.peer_t));
        }
        allocations = 0;
        r.t->write(Ping::msg);
        auto deadline = r.loop.call_later(30, [&] { r.loop.stop(); });  // only fails the test
        r.loop.run_forever();
        deadline.cancel();
        count_allocations = false;
        CHECK(ping->rounds == ping->warmup + ping->measured);
        MESSAGE(std::string(K::name)
                << ": allocations in " << ping->measured << " round trips: " << allocations.load());
        CHECK(allocations.load() < 10);
        r.t->close();
        REQUIRE(run_until(r.loop,
                          [&] { return r.t->is_closing() && r.t->get_write_buffer_size() == 0; }));
        if (echo.joinable()) {
            ::shutdown(r.peer_fd, SHUT_RDWR);
            echo.join();
        }
    }
}

namespace {
struct Thrower : RecordingProtocol {
    using RecordingProtocol::RecordingProtocol;
    void pause_writing() override { throw std::runtime_error("boom"); }
};
}  // namespace

TEST_SUITE("transport guarantees") {
    TEST_CASE_TEMPLATE(
        "a protocol callback that throws is reported with its transport and protocol, then aborts",
        K, ALL_KINDS) {
        Rig r;
        Thrower* p = nullptr;
        r.custom = [&] {
            auto t = std::make_unique<Thrower>(r.ev);
            p = t.get();
            return t;
        };
        K::open(r);
        r.guard.expect(1);
        r.t->set_write_buffer_limits(10);
        r.t->write(std::string(100, 'z'));  // over the mark: pause_writing throws
        REQUIRE(r.guard.count == 1);
        CHECK(r.guard.messages[0].rfind("protocol pause_writing() failed", 0) == 0);
        CHECK(r.guard.last_transport == r.t.get());
        CHECK(r.guard.last_protocol == p);
        CHECK(r.t->is_closing());
        REQUIRE(run_until(r.loop, [&] { return r.ev.lost == 1; }));
        CHECK(r.ev.lost_error == std::errc::connection_aborted);
    }

    TEST_CASE(
        "datagram: high == size does not pause, a limit change re-evaluates, kept handles stay "
        "safe") {
        EventLoop loop;
        ExceptionGuard guard(loop);
        struct D : DatagramProtocol {
            int made = 0, lost = 0, pauses = 0, resumes = 0;
            void connection_made(DatagramTransport&) override { ++made; }
            void connection_lost(std::error_code) override { ++lost; }
            void pause_writing() override { ++pauses; }
            void resume_writing() override { ++resumes; }
        };
        D* d = nullptr;
        DatagramEndpointOptions o;
        o.local_addr = {"127.0.0.1", 0};
        auto c = run(loop, loop.create_datagram_endpoint(
                               [&] {
                                   auto p = std::make_unique<D>();
                                   d = p.get();
                                   return p;
                               },
                               o));
        auto& t = *c.transport;
        const auto to = *t.extra<SocketAddress>("sockname");
        t.set_write_buffer_limits(100 + datagram_overhead, 0);
        t.sendto(std::string(100, 'u'), to);  // exactly the mark with its overhead
        CHECK(t.get_write_buffer_size() == 100 + datagram_overhead);
        CHECK(d->pauses == 0);
        t.set_write_buffer_limits(100, 0);
        CHECK(d->pauses == 1);
        t.set_write_buffer_limits(1000, 200);
        CHECK(d->resumes == 1);
        t.close();
        REQUIRE(run_until(loop, [&] { return d->lost == 1; }));
        auto kept = c.transport;
        kept->sendto("x", to);
        kept->abort();
        CHECK(kept->get_write_buffer_size() == 0);
        auto open = run(loop, loop.create_datagram_endpoint(
                                  [] { return std::make_unique<DatagramProtocol>(); }, o));
        open.transport->sendto(std::string(1000, 'q'), to);
        loop.close();
        for (auto* h : {kept.get(), open.transport.get()}) {
            CHECK(h->is_closing());
            h->sendto("after close", to);
            h->set_write_buffer_limits(10, 5);
            CHECK(h->get_write_buffer_size() == 0);
            (void)h->get_extra_info("socket");
            h->close();
            h->abort();
        }
    }
}

// ---- abort drops what the kernel had not accepted ----------------------------------------------

namespace {

// Fills `fd`'s kernel buffers with 'P' until they take no more; returns how many went in.
std::size_t prefill(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    const std::string chunk(4096, 'P');
    std::size_t n = 0;
    for (;;) {
        ssize_t w = ::write(fd, chunk.data(), chunk.size());
        if (w <= 0) break;
        n += static_cast<std::size_t>(w);
    }
    ::fcntl(fd, F_SETFL, flags);  // the transport's own ops decide how to wait
    return n;
}

// Bytes the kernel holds between `ours` and `peer`: unread at the peer plus, for TCP, unsent
// in our send queue.
std::size_t in_kernel(int ours, int peer, bool tcp) {
    int unread = 0, unsent = 0;
    REQUIRE(::ioctl(peer, FIONREAD, &unread) == 0);
    if (tcp) REQUIRE(::ioctl(ours, SIOCOUTQ, &unsent) == 0);
    return static_cast<std::size_t>(unread) + static_cast<std::size_t>(unsent);
}

struct AbortCase {
    EventLoop loop;
    ExceptionGuard guard{loop};
    Events ev;
    WriteTransport* t = nullptr;
    std::shared_ptr<WriteTransport> handle;
};

// With the kernel buffers full before the transport starts, its sendmsg waits in the kernel
// holding our data; after abort() returns, a peer that reads at once must get only the bytes
// the kernel had accepted before it (all 'P'), never one of the buffer that abort dropped.
void check_abort_drops(AbortCase& c, int ours, int peer, bool tcp, std::size_t filled) {
    const std::size_t total = 1 << 20;
    c.t->write(std::string(total, 'D'));
    // The flush submits the sendmsg, which finds no room and waits (the queued callback keeps
    // that iteration from blocking, so run_until looks right after it).
    c.loop.call_soon([] {});
    REQUIRE(run_until(c.loop,
                      [&] { return c.t->extra<std::uint64_t>("send_calls").value_or(0) >= 1; }));
    const std::size_t accepted = in_kernel(ours, peer, tcp);
    CHECK(accepted >= filled);
    const std::size_t sent = total - c.t->get_write_buffer_size();  // completed sends
    c.t->abort();
    // Read at once, before the loop runs again: whatever the kernel does with the waiting
    // sendmsg now happens while we read.
    std::string got;
    char buf[65536];
    set_nonblocking(peer);
    for (int i = 0; i < 64; ++i) {
        ssize_t n = ::read(peer, buf, sizeof buf);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
    }
    REQUIRE(run_until(c.loop, [&] { return c.ev.lost == 1; }));
    bool eof = false;
    REQUIRE(read_while_running(
        c.loop, peer, got, [&](const std::string&) { return eof; }, &eof));
    const std::size_t dropped_arrived =
        static_cast<std::size_t>(std::count(got.begin(), got.end(), 'D'));
    CHECK(got.size() <= accepted);
    CHECK(dropped_arrived <= sent + (accepted - filled));
    const bool in_order =
        got.find('D') == std::string::npos || got.find('P', got.find('D')) == std::string::npos;
    CHECK(in_order);
    CHECK(c.ev.lost == 1);
}

}  // namespace

TEST_SUITE("transport guarantees") {
    TEST_CASE(
        "abort: a Unix stream peer that reads at once gets nothing the kernel had not accepted") {
        AbortCase c;
        SocketPair sp;
        const std::size_t filled = prefill(sp.a);
        REQUIRE(filled > 0);
        const int ours = sp.a;
        auto conn = run(
            c.loop, c.loop.connect_accepted_socket(
                        [&] { return std::make_unique<RecordingProtocol>(c.ev); }, sp.take_a()));
        c.t = conn.transport.get();
        check_abort_drops(c, ours, sp.b, false, filled);
    }

    TEST_CASE("abort: a TCP peer that reads at once gets nothing the kernel had not accepted") {
        AbortCase c;
        TcpListener l;
        const int ours = tcp_connect(l.port);
        REQUIRE(ours >= 0);
        const int peer = l.accept();
        REQUIRE(peer >= 0);
        const std::size_t filled = prefill(ours);
        REQUIRE(filled > 0);
        auto conn =
            run(c.loop, c.loop.connect_accepted_socket(
                            [&] { return std::make_unique<RecordingProtocol>(c.ev); }, ours));
        c.t = conn.transport.get();
        check_abort_drops(c, ours, peer, true, filled);
        ::close(peer);
    }

    TEST_CASE("abort: a pipe reader that reads at once gets nothing the kernel had not accepted") {
        AbortCase c;
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        const std::size_t filled = prefill(fds[1]);
        REQUIRE(filled > 0);
        auto conn =
            run(c.loop, c.loop.connect_write_pipe(
                            [&] { return std::make_unique<RecordingProtocol>(c.ev); }, fds[1]));
        c.t = conn.transport.get();
        check_abort_drops(c, fds[1], fds[0], false, filled);
        ::close(fds[0]);
    }
}

// ---- the kinds the rig does not cover: read pipes and subprocesses -----------------------------

TEST_CASE(
    "read pipes and subprocesses: kept handles stay safe after connection_lost and after "
    "loop.close()") {
    Events done_ev, open_ev;
    struct Child : SubprocessProtocol {
        int lost = 0;
        void connection_lost(std::error_code) override { ++lost; }
    };
    Child* done_child = nullptr;
    EventLoop loop;
    ExceptionGuard guard(loop);
    // A read pipe whose writer went away: EOF, connection_lost, and the handle is kept.
    int a[2], b[2];
    REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
    auto done = run(loop, loop.connect_read_pipe(
                              [&] { return std::make_unique<RecordingProtocol>(done_ev); }, a[0]));
    REQUIRE(::write(a[1], "hi", 2) == 2);
    ::close(a[1]);
    REQUIRE(run_until_polling(loop, [&] { return done_ev.lost == 1; }));
    CHECK(done_ev.data == "hi");
    CHECK(done_ev.order_ok);
    // One still open when the loop closes.
    auto open = run(loop, loop.connect_read_pipe(
                              [&] { return std::make_unique<RecordingProtocol>(open_ev); }, b[0]));
    // A child that has exited (connection_lost came), and one still running at loop.close().
    auto exited = run(loop, loop.subprocess_exec(
                                [&] {
                                    auto p = std::make_unique<Child>();
                                    done_child = p.get();
                                    return p;
                                },
                                {"true"}));
    REQUIRE(run_until_polling(loop, [&] { return done_child->lost == 1; }));
    auto running =
        run(loop, loop.subprocess_exec([] { return std::make_unique<Child>(); }, {"sleep", "30"}));
    loop.close();
    CHECK(open_ev.lost == 0);  // asyncio: no callback once the loop is closed
    for (ReadTransport* h : {done.transport.get(), open.transport.get()}) {
        CHECK(h->is_closing());
        h->pause_reading();
        h->resume_reading();
        CHECK_FALSE(h->is_reading());
        (void)h->get_extra_info("pipe");
        h->close();
    }
    for (SubprocessTransport* h : {exited.transport.get(), running.transport.get()}) {
        CHECK(h->is_closing());
        CHECK(h->get_returncode().has_value());  // the running one was killed and reaped
        h->send_signal(SIGTERM);
        h->terminate();
        h->kill();
        if (auto* in = h->pipe_transport<WriteTransport>(0)) in->write("after close");
        h->close();
    }
    ::close(b[1]);
}
