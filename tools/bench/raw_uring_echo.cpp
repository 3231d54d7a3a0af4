// SPDX-License-Identifier: Apache-2.0
// The bench's floor: a minimal raw liburing TCP echo server. Multishot accept, multishot recv
// into a provided-buffer ring, each received buffer sent straight back (one send in flight per
// connection, so echoes stay in order), the buffer returned to the ring when its send is done.
// usage: raw_uring_echo [--host 127.0.0.1] [--port 8888]; prints "Serving on HOST:PORT".
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr unsigned buf_count = 1024;  // as aioring's default loop
constexpr unsigned buf_size = 16 * 1024;
constexpr int buf_group = 0;

enum Kind : unsigned { k_accept = 1, k_recv = 2, k_send = 3 };

std::uint64_t tag(Kind k, int fd) { return (std::uint64_t{k} << 32) | static_cast<unsigned>(fd); }

struct Pending {
    unsigned short bid;
    unsigned off, len;
};

struct Conn {
    bool open = false;
    bool recv_armed = false;
    bool send_inflight = false;
    bool eof = false;
    std::vector<Pending> queue;  // buffers waiting to be sent, in order
    std::size_t head = 0;
};

io_uring ring;
io_uring_buf_ring* br = nullptr;
char* bufs = nullptr;
std::vector<Conn> conns;
std::vector<int> starved;  // connections whose multishot recv ended for lack of buffers
volatile std::sig_atomic_t stop_flag = 0;

io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    while (!s) {
        io_uring_submit(&ring);
        s = io_uring_get_sqe(&ring);
    }
    return s;
}

void arm_recv(int fd) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = buf_group;
    io_uring_sqe_set_data64(s, tag(k_recv, fd));
    conns[fd].recv_armed = true;
}

void give_back(unsigned short bid) {
    io_uring_buf_ring_add(br, bufs + std::size_t{bid} * buf_size, buf_size, bid,
                          io_uring_buf_ring_mask(buf_count), 0);
    io_uring_buf_ring_advance(br, 1);
}

void send_next(int fd) {
    Conn& c = conns[fd];
    if (c.send_inflight || c.head == c.queue.size()) return;
    const Pending& p = c.queue[c.head];
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, fd, bufs + std::size_t{p.bid} * buf_size + p.off, p.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(k_send, fd));
    c.send_inflight = true;
}

void maybe_close(int fd) {
    Conn& c = conns[fd];
    if (c.open && c.eof && !c.recv_armed && !c.send_inflight && c.head == c.queue.size()) {
        c.open = false;
        ::close(fd);
    }
}

// Not inlined: bench --instructions counts receive completions by the calls to it.
[[gnu::noinline]] void on_recv(int fd, int res, unsigned flags) {
    Conn& c = conns[fd];
    if (!(flags & IORING_CQE_F_MORE)) c.recv_armed = false;
    if (res > 0) {
        const auto bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
        if (c.head == c.queue.size()) {
            c.queue.clear();
            c.head = 0;
        }
        c.queue.push_back(Pending{bid, 0, static_cast<unsigned>(res)});
        send_next(fd);
        if (!c.recv_armed) arm_recv(fd);
        return;
    }
    if (res == -ENOBUFS) {
        starved.push_back(fd);  // re-armed once a send gives a buffer back
        return;
    }
    c.eof = true;  // EOF or error: flush what we owe, then close
    maybe_close(fd);
}

void on_send(int fd, int res) {
    Conn& c = conns[fd];
    c.send_inflight = false;
    Pending& p = c.queue[c.head];
    if (res > 0 && static_cast<unsigned>(res) < p.len) {
        p.off += static_cast<unsigned>(res);  // short send: the rest goes first
        p.len -= static_cast<unsigned>(res);
    } else {
        give_back(p.bid);
        ++c.head;
        if (res < 0) {
            c.eof = true;
            while (c.head < c.queue.size()) give_back(c.queue[c.head++].bid);
        }
    }
    send_next(fd);
    if (!starved.empty()) {
        for (int s : starved)
            if (conns[s].open && !conns[s].eof && !conns[s].recv_armed) arm_recv(s);
        starved.clear();
    }
    maybe_close(fd);
}

}  // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1";
    int port = 8888;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help") {
            std::puts("usage: raw_uring_echo [--host 127.0.0.1] [--port 8888]");
            return 0;
        }
        if (a == "--host" && i + 1 < argc) {
            host = argv[++i];
            continue;
        }
        if (a == "--port" && i + 1 < argc) {
            port = std::atoi(argv[++i]);
            continue;
        }
        std::fprintf(stderr,
                     "error: unknown argument '%s'\nusage: raw_uring_echo [--host H] [--port P]\n",
                     argv[i]);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = [](int) { stop_flag = 1; };
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
        ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(lfd, 512) != 0) {
        std::fprintf(stderr, "%s\n", std::strerror(errno));
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);

    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    params.cq_entries = 16384;
    if (io_uring_queue_init_params(256, &ring, &params) < 0) {
        params = {};
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = 16384;
        if (int r = io_uring_queue_init_params(256, &ring, &params); r < 0) {
            std::fprintf(stderr, "io_uring_queue_init: %s\n", std::strerror(-r));
            return 1;
        }
    }
    // liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves and register it.
    const std::size_t ring_bytes = buf_count * sizeof(io_uring_buf);
    void* mem =
        mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return 1;
    br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<unsigned long>(br);
    reg.ring_entries = buf_count;
    reg.bgid = buf_group;
    if (int r = io_uring_register_buf_ring(&ring, &reg, 0); r < 0) {
        std::fprintf(stderr, "io_uring_register_buf_ring: %s\n", std::strerror(-r));
        return 1;
    }
    bufs = static_cast<char*>(std::aligned_alloc(4096, std::size_t{buf_count} * buf_size));
    for (unsigned i = 0; i < buf_count; ++i)
        io_uring_buf_ring_add(br, bufs + std::size_t{i} * buf_size, buf_size,
                              static_cast<unsigned short>(i), io_uring_buf_ring_mask(buf_count),
                              static_cast<int>(i));
    io_uring_buf_ring_advance(br, buf_count);
    conns.resize(65536);

    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, lfd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, tag(k_accept, lfd));
    std::printf("Serving on %s:%u\n", host.c_str(), ntohs(addr.sin_port));
    std::fflush(stdout);

    io_uring_cqe* cqes[256];
    while (!stop_flag) {
        int r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR) break;
        unsigned n = io_uring_peek_batch_cqe(&ring, cqes, 256);
        for (unsigned i = 0; i < n; ++i) {
            const std::uint64_t d = io_uring_cqe_get_data64(cqes[i]);
            const int fd = static_cast<int>(d & 0xffffffffu);
            const int res = cqes[i]->res;
            const unsigned flags = cqes[i]->flags;
            switch (static_cast<Kind>(d >> 32)) {
                case k_accept:
                    if (res >= 0 && static_cast<std::size_t>(res) < conns.size()) {
                        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                        conns[res] = Conn{};
                        conns[res].open = true;
                        arm_recv(res);
                    } else if (res >= 0) {
                        ::close(res);
                    }
                    if (!(flags & IORING_CQE_F_MORE)) {
                        io_uring_sqe* a = sqe();
                        io_uring_prep_multishot_accept(a, lfd, nullptr, nullptr, SOCK_CLOEXEC);
                        io_uring_sqe_set_data64(a, tag(k_accept, lfd));
                    }
                    break;
                case k_recv:
                    on_recv(fd, res, flags);
                    break;
                case k_send:
                    on_send(fd, res);
                    break;
            }
        }
        io_uring_cq_advance(&ring, n);
    }
    ::close(lfd);
    return 0;
}
