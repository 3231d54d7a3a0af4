// SPDX-License-Identifier: Apache-2.0
// loop.sendfile and StreamWriter::sendfile on real sockets and files: byte-exact transfers
// larger than the socket buffers, the transport's write order, flow control with a slow
// reader, reset and abort mid-transfer, the read-and-write fallback (TLS, refused splice) and
// the argument errors.
#include "support.hpp"
#include "tls_certs.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

using namespace testing;

namespace {

// A temporary regular file of `size` pseudo-random bytes, open for reading.
struct TempFile {
    int fd = -1;
    std::string bytes;
    explicit TempFile(std::size_t size) {
        char name[] = "/tmp/aioring-sendfile-XXXXXX";
        fd = ::mkstemp(name);
        REQUIRE(fd >= 0);
        ::unlink(name);
        bytes.resize(size);
        std::uint64_t x = 0x9e3779b97f4a7c15ull ^ size;
        for (std::size_t i = 0; i < size; ++i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes[i] = static_cast<char>(x);
        }
        for (std::size_t off = 0; off < size;) {
            ssize_t n = ::write(fd, bytes.data() + off, size - off);
            REQUIRE(n > 0);
            off += static_cast<std::size_t>(n);
        }
        ::lseek(fd, 0, SEEK_SET);
    }
    ~TempFile() { ::close(fd); }
    std::string slice(std::size_t off, std::size_t n) const { return bytes.substr(off, n); }
    off_t position() const { return ::lseek(fd, 0, SEEK_CUR); }
};

int open_fds() {
    int n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d)) ++n;
        ::closedir(d);
    }
    return n;
}

// A TCP connection: our client transport (RecordingProtocol on `ev`) and the blocking peer.
struct TcpRig {
    TcpListener listener;
    Connection<> conn;
    int peer = -1;
    TcpRig(EventLoop& loop, Events& ev, int peer_rcvbuf = 0) {
        if (peer_rcvbuf)  // inherited by the accepted socket
            ::setsockopt(listener.fd, SOL_SOCKET, SO_RCVBUF, &peer_rcvbuf, sizeof peer_rcvbuf);
        conn = run(loop,
                   loop.create_connection([&ev] { return std::make_unique<RecordingProtocol>(ev); },
                                          "127.0.0.1", listener.port));
        peer = listener.accept();
        REQUIRE(peer >= 0);
    }
    ~TcpRig() {
        if (peer >= 0) ::close(peer);
    }
    int sock() const { return *conn.transport->extra<int>("socket"); }
};

std::string error_of(EventLoop& loop, Future<std::size_t> f) {
    REQUIRE(run_until(loop, [&] { return f.done(); }));
    try {
        f.result();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_SUITE("sendfile") {
    TEST_CASE("sendfile sends a file larger than the socket buffers byte-exact from an offset") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(8 << 20);
        TcpRig rig(loop, ev);
        const std::size_t offset = 12345, count = (8 << 20) - 20000;
        auto f = loop.sendfile(rig.conn.transport, file.fd, offset, count);
        std::string got = peer_read(loop, rig.peer, count);
        CHECK(run(loop, f) == count);
        CHECK(got.size() == count);
        CHECK(got == file.slice(offset, count));
        // asyncio: the file position ends just past the bytes sent.
        CHECK(file.position() == static_cast<off_t>(offset + count));
        CHECK(!rig.conn.transport->is_closing());
        // The transport writes as before once it is done.
        rig.conn.transport->write("after");
        CHECK(peer_read(loop, rig.peer, 5) == "after");
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "sendfile without a count (or count 0) sends to the end of the file, over a Unix socket") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(3 << 20);
        SocketPair sp;
        auto conn =
            run(loop, loop.connect_accepted_socket(
                          [&ev] { return std::make_unique<RecordingProtocol>(ev); }, sp.take_a()));
        auto f = loop.sendfile(conn.transport, file.fd, 100);
        std::string got = peer_read(loop, sp.b, file.bytes.size() - 100);
        CHECK(run(loop, f) == file.bytes.size() - 100);
        CHECK(got == file.slice(100, std::string::npos));
        auto g = loop.sendfile(conn.transport, file.fd, 1000, 0);
        got = peer_read(loop, sp.b, file.bytes.size() - 1000);
        CHECK(run(loop, g) == file.bytes.size() - 1000);
        CHECK(got == file.slice(1000, std::string::npos));
        // Past the end: nothing to send.
        CHECK(run(loop, loop.sendfile(conn.transport, file.fd, 10 << 20)) == 0);
        CHECK(log.count == 0);
    }

    TEST_CASE("writes made before sendfile go first, writes made while it runs go after it") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(8 << 20);
        TcpRig rig(loop, ev);
        auto& t = *rig.conn.transport;
        const std::string head(1 << 20, 'h');  // more than the kernel takes at once
        t.write(head);
        auto f = loop.sendfile(rig.conn.transport, file.fd);
        t.write("tail-1");
        bool wrote_during = false;
        loop.call_soon([&] {
            t.write("tail-2");
            wrote_during = !f.done();
            t.close();  // waits for the sendfile, then flushes, then closes
        });
        std::string got = peer_read_to_eof(loop, rig.peer);
        CHECK(wrote_during);
        REQUIRE(f.done());
        CHECK(f.result() == file.bytes.size());
        CHECK(got.size() == head.size() + file.bytes.size() + 12);
        CHECK(got == head + file.bytes + "tail-1tail-2");
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(!ev.lost_error);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("write_eof() during sendfile half-closes once the file has been sent") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(2 << 20);
        TcpRig rig(loop, ev);
        auto& t = *rig.conn.transport;
        auto f = loop.sendfile(rig.conn.transport, file.fd);
        t.write("tail");
        t.write_eof();
        std::string got = peer_read_to_eof(loop, rig.peer);
        REQUIRE(f.done());
        CHECK(f.result() == file.bytes.size());
        CHECK(got == file.bytes + "tail");
        // Half-closed, not closed: the peer can still talk to us.
        CHECK(!t.is_closing());
        REQUIRE(::write(rig.peer, "hi", 2) == 2);
        REQUIRE(run_until(loop, [&] { return ev.data == "hi"; }));
        CHECK(log.count == 0);
    }

    TEST_CASE(
        "a slow reader: sendfile waits, writes made meanwhile are buffered and pause the writer") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(8 << 20);
        TcpRig rig(loop, ev, 64 * 1024);
        int small = 64 * 1024;
        ::setsockopt(rig.sock(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        auto& t = *rig.conn.transport;
        auto f = loop.sendfile(rig.conn.transport, file.fd);
        // The peer does not read: the kernel cannot hold 8 MiB, so the sendfile waits.
        run_iterations(loop, 50);
        CHECK(!f.done());
        // The file's bytes in flight are not in the write buffer; later writes are, and pause.
        CHECK(t.get_write_buffer_size() == 0);
        const std::string more(256 * 1024, 'm');
        t.write(more);
        CHECK(t.get_write_buffer_size() == more.size());
        CHECK(ev.pauses == 1);
        // Now the peer reads, in small pieces.
        std::string got;
        int resumes_at_done = -1;
        f.add_done_callback([&] { resumes_at_done = ev.resumes; });
        CHECK(read_while_running(loop, rig.peer, got, [&](const std::string& s) {
            return s.size() >= file.bytes.size() + more.size();
        }));
        REQUIRE(f.done());
        CHECK(f.result() == file.bytes.size());
        CHECK(resumes_at_done == 0);  // the writes behind it were still buffered when it finished
        CHECK(got == file.bytes + more);
        REQUIRE(run_until(loop, [&] { return ev.resumes == 1; }));
        CHECK(t.get_write_buffer_size() == 0);
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("a peer reset mid-transfer fails the sendfile and the connection, leaking no fd") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(16 << 20);
        const int fds_before = open_fds();
        {
            TcpRig rig(loop, ev, 64 * 1024);
            auto f = loop.sendfile(rig.conn.transport, file.fd);
            std::string got = peer_read(loop, rig.peer, 256 * 1024);
            CHECK(got.substr(0, 256 * 1024) == file.slice(0, 256 * 1024));
            linger lg{1, 0};
            REQUIRE(::setsockopt(rig.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
            ::close(std::exchange(rig.peer, -1));  // RST
            const std::string what = error_of(loop, f);
            CHECK(!what.empty());
            INFO(what);
            REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
            CHECK(ev.lost_error);
            // The file position tells how far it got.
            CHECK(file.position() >= 256 * 1024);
            CHECK(file.position() < static_cast<off_t>(file.bytes.size()));
            rig.conn.transport.reset();
        }
        run_iterations(loop, 5);
        CHECK(open_fds() == fds_before);  // socket, pipe and listener all closed
        CHECK(ev.order_ok);
        CHECK(log.count == 0);
    }

    TEST_CASE("abort() during sendfile fails it at once and frees the transport") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(16 << 20);
        const int fds_before = open_fds();
        std::weak_ptr<Transport> weak;
        {
            TcpRig rig(loop, ev, 64 * 1024);
            auto f = loop.sendfile(rig.conn.transport, file.fd);
            run_iterations(loop, 20);  // the peer does not read: the splice waits for room
            REQUIRE(!f.done());
            rig.conn.transport->abort();
            const std::string what = error_of(loop, f);
            CHECK(what.find("aborted") != std::string::npos);
            REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
            CHECK(!ev.lost_error);
            weak = rig.conn.transport;
            rig.conn.transport.reset();
        }
        REQUIRE(run_until(loop, [&] { return weak.expired(); }));
        CHECK(open_fds() == fds_before);
        CHECK(log.count == 0);
    }

    TEST_CASE("cancelling the awaiting task stops the sendfile; the transport stays usable") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(16 << 20);
        TcpRig rig(loop, ev, 64 * 1024);
        auto f = loop.sendfile(rig.conn.transport, file.fd);
        run_iterations(loop, 20);
        REQUIRE(!f.done());
        f.cancel();
        // The transport writes again once the splice in flight has stopped.
        rig.conn.transport->write("after");
        std::string got;
        CHECK(read_while_running(loop, rig.peer, got, [](const std::string& s) {
            return s.size() >= 5 && s.compare(s.size() - 5, 5, "after") == 0;
        }));
        // What came before "after" is a prefix of the file, as long as the file position says.
        const std::size_t prefix = got.size() - 5;
        CHECK(prefix < file.bytes.size());
        CHECK(got.substr(0, prefix) == file.slice(0, prefix));
        CHECK(file.position() == static_cast<off_t>(prefix));
        CHECK(!rig.conn.transport->is_closing());
        CHECK(log.count == 0);
    }

    TEST_CASE("with splice refused, sendfile reads and sends in order; without fallback it fails") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(4 << 20);
        TcpRig rig(loop, ev);
        ScopedEnv no_splice("AIORING_SENDFILE_NO_SPLICE", "1");
        auto& t = *rig.conn.transport;
        t.write("head");
        auto f = loop.sendfile(rig.conn.transport, file.fd, 7, (4 << 20) - 7);
        t.write("tail");
        std::string got = peer_read(loop, rig.peer, 4 + (4 << 20) - 7 + 4);
        CHECK(run(loop, f) == (4u << 20) - 7);
        CHECK(got == "head" + file.slice(7, std::string::npos) + "tail");
        CHECK(file.position() == static_cast<off_t>(4 << 20));
        auto g = loop.sendfile(rig.conn.transport, file.fd, 0, std::nullopt, /*fallback=*/false);
        REQUIRE(run_until(loop, [&] { return g.done(); }));
        CHECK_THROWS_AS(g.result(), SendfileNotAvailableError);
        t.write("still");
        CHECK(peer_read(loop, rig.peer, 5) == "still");
        CHECK(log.count == 0);
    }

    TEST_CASE("TLS: the fallback sends the file byte-exact through the TLS transport") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(4 << 20);
        std::string received;
        Events sev;
        struct Collect : Protocol {
            std::string* out;
            Events* ev;
            void connection_made(Transport&) override { ++ev->made; }
            void data_received(std::string_view d) override { out->append(d); }
            bool eof_received() override { return false; }
            void connection_lost(std::error_code ec) override {
                ++ev->lost;
                ev->lost_error = ec;
            }
        };
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, loop.create_server(
                                    [&] {
                                        auto p = std::make_unique<Collect>();
                                        p->out = &received;
                                        p->ev = &sev;
                                        return p;
                                    },
                                    "127.0.0.1", 0, so));
        Events ev;
        ConnectOptions co;
        co.ssl = client_ctx();
        co.server_hostname = "localhost";
        auto conn = run(
            loop, loop.create_connection([&ev] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", server->addresses()[0].port(), co));
        auto& t = *conn.transport;
        t.write("head");
        auto f = loop.sendfile(conn.transport, file.fd, 3, (4 << 20) - 10);
        t.write("tail");
        CHECK(run(loop, f) == (4u << 20) - 10);
        CHECK(file.position() == static_cast<off_t>((4 << 20) - 7));
        t.close();
        REQUIRE(run_until(loop, [&] { return sev.lost == 1 && ev.lost == 1; }));
        CHECK(received.size() == 4 + (4u << 20) - 10 + 4);
        CHECK(received.substr(0, 4) == "head");
        CHECK(received.substr(4, (4 << 20) - 10) == file.slice(3, (4 << 20) - 10));
        CHECK(ev.order_ok);
        // fallback=false: TLS has no native sendfile (asyncio's SendfileNotAvailableError).
        CHECK(log.count == 0);
        server->close();
        run(loop, server->wait_closed());
    }

    TEST_CASE("TLS with fallback disabled throws SendfileNotAvailableError") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(1000);
        ServerOptions so;
        so.ssl = server_ctx();
        auto server = run(loop, loop.create_server([] { return std::make_unique<EchoProtocol>(); },
                                                   "127.0.0.1", 0, so));
        Events ev;
        ConnectOptions co;
        co.ssl = client_ctx();
        co.server_hostname = "localhost";
        auto conn = run(
            loop, loop.create_connection([&ev] { return std::make_unique<RecordingProtocol>(ev); },
                                         "127.0.0.1", server->addresses()[0].port(), co));
        CHECK_THROWS_AS(loop.sendfile(conn.transport, file.fd, 0, std::nullopt, false),
                        SendfileNotAvailableError);
        CHECK(file.position() == 0);
        conn.transport->close();
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        server->close();
        run(loop, server->wait_closed());
        CHECK(log.count == 0);
    }

    TEST_CASE("bad arguments raise clear exceptions at the call") {
        Events ev;
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(1000);
        TcpRig rig(loop, ev);
        auto& tr = rig.conn.transport;
        auto message = [&](auto&& call) -> std::string {
            try {
                call();
            } catch (const std::invalid_argument& e) {
                return std::string("invalid_argument: ") + e.what();
            } catch (const std::runtime_error& e) {
                return std::string("runtime_error: ") + e.what();
            }
            return "";
        };
        CHECK(message([&] { (void)loop.sendfile(tr, file.fd, -1); }) ==
              "invalid_argument: sendfile: offset must be a non-negative integer (got -1)");
        CHECK(message([&] { (void)loop.sendfile(tr, file.fd, 0, -5); }) ==
              "invalid_argument: sendfile: count must be a non-negative integer (got -5)");
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        CHECK(message([&] { (void)loop.sendfile(tr, p[0]); }) ==
              "invalid_argument: sendfile: the file must be a regular file");
        ::close(p[0]);
        ::close(p[1]);
        int dir = ::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(message([&] { (void)loop.sendfile(tr, dir); }) ==
              "invalid_argument: sendfile: the file must be a regular file");
        ::close(dir);
        char name[] = "/tmp/aioring-sendfile-wo-XXXXXX";
        int wo = ::mkstemp(name);
        ::close(wo);
        wo = ::open(name, O_WRONLY | O_CLOEXEC);
        ::unlink(name);
        CHECK(message([&] { (void)loop.sendfile(tr, wo); }) ==
              "invalid_argument: sendfile: the file is not open for reading");
        ::close(wo);
        CHECK_THROWS_AS((void)loop.sendfile(tr, 12345), std::system_error);  // EBADF
        CHECK_THROWS_AS((void)loop.sendfile(nullptr, file.fd), std::invalid_argument);
        // A second sendfile while one runs.
        auto f = loop.sendfile(tr, file.fd);
        CHECK(message([&] { (void)loop.sendfile(tr, file.fd); }) ==
              "runtime_error: sendfile: another sendfile is in progress on this transport");
        CHECK(run(loop, f) == 1000);
        CHECK(peer_read(loop, rig.peer, 1000) == file.bytes);
        // A closing transport, and a pipe transport (asyncio: not supported).
        tr->close();
        CHECK(message([&] { (void)loop.sendfile(tr, file.fd); }) ==
              "runtime_error: sendfile: the transport is closing");
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        auto wp =
            run(loop, loop.connect_write_pipe([] { return std::make_unique<Protocol>(); }, p[1]));
        // A write pipe is only a WriteTransport; behind it is the same class as a socket's.
        auto as_transport = std::dynamic_pointer_cast<Transport>(wp.transport);
        REQUIRE(as_transport);
        CHECK(message([&] {
                  (void)loop.sendfile(as_transport, file.fd);
              }).rfind("runtime_error: sendfile: not supported for this transport", 0) == 0);
        wp.transport->close();
        ::close(p[0]);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 0);
    }

    TEST_CASE("StreamWriter::sendfile keeps the writer's order") {
        EventLoop loop;
        ExceptionLog log(loop);
        TempFile file(2 << 20);
        TcpListener listener;
        auto client = [](std::uint16_t port, int fd) -> Task<std::size_t> {
            auto [reader, writer] = co_await open_connection("127.0.0.1", port);
            writer.write("GET\n");
            std::size_t n = co_await writer.sendfile(fd, 5);
            writer.write("END\n");
            co_await writer.drain();
            writer.close();
            co_await writer.wait_closed();
            co_return n;
        };
        auto f = loop.create_task(client(listener.port, file.fd));
        int peer = -1;
        REQUIRE(run_until_polling(loop, [&] {
            pollfd p{listener.fd, POLLIN, 0};
            if (::poll(&p, 1, 0) == 1) peer = listener.accept();
            return peer >= 0;
        }));
        std::string got = peer_read_to_eof(loop, peer);
        ::close(peer);
        CHECK(run(loop, f) == file.bytes.size() - 5);
        CHECK(got == "GET\n" + file.slice(5, std::string::npos) + "END\n");
        CHECK(log.count == 0);
    }

}  // TEST_SUITE
