// SPDX-License-Identifier: Apache-2.0
// Faults from outside on real loopback sockets: a peer that resets the connection while the
// server writes, a peer that never reads, and connection churn, each with the process's open
// fds counted before and after. (EMFILE on accept, CQ overflow and ENOBUFS have their own
// cases in fdlimit_accept.cpp, test_uring_setup.cpp and test_buffer_ring.cpp.)
#include "support.hpp"

#include <dirent.h>
#include <netinet/tcp.h>

#include <atomic>
#include <cstdio>
#include <fstream>

using namespace testing;

namespace {

int open_fds() {
    int n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n - 1;  // the directory's own fd
}

long rss_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

// What a Writer counts, kept by the test: the transport frees its protocol once the connection
// is lost and idle, so the counts must outlive the Writer.
struct WriteCounts {
    std::size_t written = 0, max_buffered = 0;
};

// Writes `chunk`-byte pieces (bytes counting up mod 251) while writing is not paused, `total`
// bytes in all, and records the largest write-buffer size it saw.
class Writer : public RecordingProtocol {
public:
    Writer(Events& e, WriteCounts& c, std::size_t total, std::size_t chunk)
        : RecordingProtocol(e),
          written(c.written),
          max_buffered(c.max_buffered),
          total_(total),
          chunk_(chunk) {}
    void connection_made(Transport& t) override {
        RecordingProtocol::connection_made(t);
        t_ = &t;
        fill();
    }
    void resume_writing() override {
        RecordingProtocol::resume_writing();
        fill();
    }
    void pause_writing() override {
        RecordingProtocol::pause_writing();
        paused_ = true;
    }
    std::size_t& written;
    std::size_t& max_buffered;

private:
    void fill() {
        paused_ = false;
        std::string piece(chunk_, '\0');
        while (!paused_ && written < total_ && !t_->is_closing()) {
            const std::size_t n = std::min(chunk_, total_ - written);
            for (std::size_t i = 0; i < n; ++i) piece[i] = static_cast<char>((written + i) % 251);
            t_->write(std::string_view(piece.data(), n));
            written += n;
            max_buffered = std::max(max_buffered, t_->get_write_buffer_size());
        }
    }
    Transport* t_ = nullptr;
    std::size_t total_, chunk_;
    bool paused_ = false;
};

}  // namespace

TEST_SUITE("faults") {
    TEST_CASE(
        "a peer that resets (SO_LINGER 0) while the server writes 32 MiB: connection_lost with an "
        "error, fds released") {
        Events ev;
        WriteCounts counts;
        WriteCounts* writer = &counts;
        const int fds_before = open_fds();
        {
            EventLoop loop;
            ExceptionLog log(loop);
            auto server = run(loop, loop.create_server(
                                        [&] {
                                            return std::make_unique<Writer>(
                                                ev, counts, std::size_t{32} << 20, 256 * 1024);
                                        },
                                        "127.0.0.1", 0));
            const int peer = tcp_connect(server->addresses().front().port());
            REQUIRE(peer >= 0);
            set_nonblocking(peer);
            // Read the first 1 MiB, so the server is in the middle of its writes, then reset.
            std::string got;
            char buf[65536];
            REQUIRE(run_until_polling(loop, [&] {
                for (ssize_t r; (r = ::read(peer, buf, sizeof buf)) > 0;)
                    got.append(buf, static_cast<std::size_t>(r));
                return got.size() >= (1u << 20);
            }));
            for (std::size_t i = 0; i < got.size(); ++i)
                if (got[i] != static_cast<char>(i % 251)) FAIL("byte " << i << " is wrong");
            REQUIRE(ev.made == 1);
            CHECK(ev.lost == 0);
            linger lg{1, 0};
            REQUIRE(::setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
            ::close(peer);
            REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
            CAPTURE(ev.lost_error.message());
            CHECK(ev.lost_error);  // not a clean close
            CHECK((ev.lost_error == std::errc::connection_reset ||
                   ev.lost_error == std::errc::broken_pipe));
            CHECK(writer->written <
                  (std::size_t{32} << 20));  // it stopped writing: it was still going
            MESSAGE("reset after " << got.size() << " bytes read, " << writer->written
                                   << " written: connection_lost(" << ev.lost_error.message()
                                   << ")");
            CHECK(ev.order_ok);
            CHECK(log.count == 0);
            server->close();
            run(loop, server->wait_closed());
            REQUIRE(run_until(loop, [&] { return ev.destroyed == 1; }));
        }
        CHECK(open_fds() == fds_before);
    }

    TEST_CASE(
        "a peer that never reads: pause_writing holds the buffer at the high-water mark; RSS stays "
        "bounded; nothing lost once it reads") {
        Events ev;
        WriteCounts counts;
        WriteCounts* writer = &counts;
        constexpr std::size_t total = std::size_t{256} << 20, chunk = 16 * 1024;
        EventLoop loop;
        ExceptionLog log(loop);
        auto server = run(
            loop,
            loop.create_server([&] { return std::make_unique<Writer>(ev, counts, total, chunk); },
                               "127.0.0.1", 0));
        const int peer = tcp_connect(server->addresses().front().port());
        REQUIRE(peer >= 0);
        const long rss_before = rss_kib();
        REQUIRE(run_until(loop, [&] { return ev.pauses == 1; }));
        // The kernel takes more while its socket buffers grow; wait until it takes nothing for 200
        // polls in a row: paused, and the send in flight stays so.
        std::size_t last = 0;
        int still = 0;
        REQUIRE(run_until_polling(
            loop,
            [&] {
                still = writer->written == last && ev.pauses == ev.resumes + 1 ? still + 1 : 0;
                last = writer->written;
                return still >= 200;
            },
            60));
        const int pauses = ev.pauses;
        run_iterations(loop, 500);
        CHECK(ev.pauses == pauses);
        CHECK(ev.resumes == pauses - 1);
        const auto [low, high] = ev.transport->get_write_buffer_limits();
        CHECK(low == 16 * 1024);
        CHECK(high == 64 * 1024);
        // pause_writing came during the write that went over the mark, before the next one.
        CHECK(writer->max_buffered <= high + chunk);
        // Still paused: sends may have drained part of it, but never to the low-water mark.
        CHECK(ev.transport->get_write_buffer_size() > low);
        // What left user space sits in the kernel's socket buffers (a few MiB at most on loopback),
        // not in ours: 256 MiB written without flow control would show here.
        CHECK(writer->written < total / 8);
        CHECK(rss_kib() - rss_before < 16 * 1024);
        MESSAGE("never read: " << writer->written << " bytes written in " << ev.pauses
                               << " pauses, at most " << writer->max_buffered << " buffered, RSS +"
                               << rss_kib() - rss_before << " KiB");
        // The peer reads everything: resume_writing, more writes, and every byte arrives in order.
        set_nonblocking(peer);
        std::size_t got = 0;
        bool intact = true;
        char buf[65536];
        const std::size_t want = std::size_t{8} << 20;
        REQUIRE(run_until_polling(
            loop,
            [&] {
                for (ssize_t r; (r = ::read(peer, buf, sizeof buf)) > 0;) {
                    for (ssize_t i = 0; i < r; ++i)
                        intact = intact && buf[i] == static_cast<char>(
                                                         (got + static_cast<std::size_t>(i)) % 251);
                    got += static_cast<std::size_t>(r);
                }
                return got >= want;
            },
            60));
        CHECK(intact);
        CHECK(ev.resumes >= 1);
        CHECK(ev.pauses >= ev.resumes);
        CHECK(ev.order_ok);
        ev.transport->abort();
        ::close(peer);
        REQUIRE(run_until(loop, [&] { return ev.lost == 1; }));
        CHECK(log.count == 0);
        server->close();
        run(loop, server->wait_closed());
    }

    TEST_CASE(
        "2,000 connections churned (half closed with FIN, half with RST) leave the open fds as "
        "they were") {
        const int fds_before = open_fds();
        {
            EventLoop loop;
            ExceptionLog log(loop);
            std::atomic<int> lost{0};
            struct Echo : EchoProtocol {
                std::atomic<int>* lost;
                void connection_lost(std::error_code) override { ++*lost; }
            };
            auto server = run(loop, loop.create_server(
                                        [&] {
                                            auto p = std::make_unique<Echo>();
                                            p->lost = &lost;
                                            return p;
                                        },
                                        "127.0.0.1", 0));
            const int fds_serving = open_fds();
            const std::uint16_t port = server->addresses().front().port();
            constexpr int threads = 4, per_thread = 500;
            std::atomic<int> done{0}, echoed{0};
            std::vector<std::thread> clients;
            for (int t = 0; t < threads; ++t) {
                clients.emplace_back([&, t] {
                    for (int i = 0; i < per_thread; ++i) {
                        const int fd = tcp_connect(port);
                        if (fd < 0) continue;
                        const char msg[] = "churn";
                        if (::send(fd, msg, 5, MSG_NOSIGNAL) == 5 && read_n(fd, 5) == "churn")
                            ++echoed;
                        if ((t + i) % 2) {
                            linger lg{1, 0};
                            ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                        }
                        ::close(fd);
                    }
                    ++done;
                });
            }
            REQUIRE(run_until_polling(
                loop, [&] { return done == threads && lost == threads * per_thread; }, 120));
            for (auto& c : clients) c.join();
            CHECK(echoed == threads * per_thread);
            CHECK(open_fds() == fds_serving);
            CHECK(log.count == 0);
            server->close();
            run(loop, server->wait_closed());
        }
        CHECK(open_fds() == fds_before);
    }
}
