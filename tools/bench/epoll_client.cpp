// SPDX-License-Identifier: Apache-2.0
// The bench's yardstick for aioring-load: a minimal epoll ping-pong client (one thread, level-
// triggered, nonblocking sockets, each connection sends --size bytes and waits for them back).
// It checks nothing; it only counts. Prints one JSON object: messages and msgs_per_s.
// usage: epoll_client --port P [--host 127.0.0.1] [--connections 50] [--size 64]
//                     [--duration 5] [--warmup 1]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Conn {
    int fd = -1;
    std::size_t got = 0;
};

}  // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1";
    int port = 0, connections = 50;
    std::size_t size = 64;
    double duration = 5, warmup = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i], v = argv[i + 1];
        if (a == "--host")
            host = v;
        else if (a == "--port")
            port = std::atoi(v.c_str());
        else if (a == "--connections")
            connections = std::atoi(v.c_str());
        else if (a == "--size")
            size = std::strtoul(v.c_str(), nullptr, 10);
        else if (a == "--duration")
            duration = std::atof(v.c_str());
        else if (a == "--warmup")
            warmup = std::atof(v.c_str());
        else {
            std::fprintf(stderr, "error: unknown argument '%s'\n", a.c_str());
            return 2;
        }
    }
    if (port <= 0 || connections <= 0 || size == 0) {
        std::fprintf(stderr,
                     "usage: epoll_client --port P [--connections N] [--size S] [--duration D]\n");
        return 2;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    std::vector<Conn> conns(static_cast<std::size_t>(connections));
    std::vector<char> out(size, 'x'), in(size > 65536 ? size : 65536);
    int one = 1;
    for (int i = 0; i < connections; ++i) {
        Conn& c = conns[static_cast<std::size_t>(i)];
        c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            std::fprintf(stderr, "%s\n", std::strerror(errno));
            return 1;
        }
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = static_cast<unsigned>(i);
        epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
        if (send(c.fd, out.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) return 1;
    }
    const double start = now(), warm = start + warmup, end = warm + duration;
    unsigned long long messages = 0;
    epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, 100);
        const double t = now();
        if (t >= end) break;
        for (int i = 0; i < n; ++i) {
            Conn& c = conns[events[i].data.u32];
            ssize_t r = recv(c.fd, in.data(), size - c.got, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                std::fprintf(stderr, "connection lost\n");
                return 1;
            }
            c.got += static_cast<std::size_t>(r);
            if (c.got == size) {
                c.got = 0;
                if (t >= warm) ++messages;
                if (send(c.fd, out.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size))
                    return 1;
            }
        }
    }
    std::printf("{\"messages\": %llu, \"duration_s\": %.3f, \"msgs_per_s\": %.1f}\n", messages,
                duration, static_cast<double>(messages) / duration);
    for (Conn& c : conns) close(c.fd);
    return 0;
}
