// create_connection, create_unix_connection, connect_accepted_socket: resolve without blocking
// the loop, connect through the ring trying each address in turn, then wrap in a transport.
#include <aioring/loop.hpp>

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <system_error>

#include "src/op_awaiter.hpp"
#include "src/socket_transport.hpp"
#include "src/ssl_transport.hpp"

namespace aioring {
namespace detail {

FdGuard::~FdGuard() {
    if (fd >= 0) ::close(fd);
}

bool is_numeric_host(const std::string& host) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Resolves host:port, without a thread for numeric addresses.
Task<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, std::uint16_t port,
                                    int family, int type, int flags) {
    if (!host.empty() && is_numeric_host(host)) {
        SocketAddress a = SocketAddress::from_ip(host, port);
        if (family != AF_UNSPEC && family != a.family())
            throw std::system_error(std::make_error_code(std::errc::address_family_not_supported),
                                    "address family mismatch for " + host);
        co_return std::vector<AddrInfo>{AddrInfo{a.family(), type, 0, "", a}};
    }
    co_return co_await loop.getaddrinfo(host, std::to_string(port), family, type, 0, flags);
}

namespace {

// Wraps `fd` in a transport and completes once connection_made has run.
Future<Connection<>> wrap(LoopCore& core, int fd, ProtocolFactory& factory) {
    auto fut = Future<Connection<>>(core.loop);
    std::unique_ptr<BaseProtocol> protocol;
    try {
        protocol = factory();
    } catch (...) {
        ::close(fd);
        fut.set_exception(std::current_exception());
        return fut;
    }
    BaseProtocol* p = protocol.get();
    auto holder = std::make_shared<std::shared_ptr<SocketTransport>>();
    try {
        *holder = make_socket_transport(core, fd, std::move(protocol), [fut, holder, p] {
            if (!fut.done()) fut.set_result(Connection<>{std::move(*holder), p});
            else if (*holder) (*holder)->abort();  // cancelled meanwhile: nobody will use it
        });
    } catch (...) {
        ::close(fd);
        fut.set_exception(std::current_exception());
    }
    return fut;
}

Task<Connection<>> connect_task(EventLoop& loop, ProtocolFactory factory, std::string host,
                                 std::uint16_t port, ConnectOptions options) {
    LoopCore& core = loop.core();
    auto infos = co_await resolve(loop, host, port, options.family, SOCK_STREAM, options.flags);
    std::vector<AddrInfo> locals;
    if (options.local_addr)
        locals = co_await resolve(loop, options.local_addr->first, options.local_addr->second,
                                  options.family, SOCK_STREAM, AI_PASSIVE);
    if (infos.empty())
        throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                "getaddrinfo() returned an empty list for " + host);
    std::error_code last;
    std::string last_what;
    for (const AddrInfo& ai : infos) {
        FdGuard fd(::socket(ai.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (fd.fd < 0) {
            last = std::error_code(errno, std::system_category());
            last_what = "socket()";
            continue;
        }
        if (options.local_addr) {
            bool bound = false;
            for (const AddrInfo& l : locals) {
                if (l.family != ai.family) continue;
                if (::bind(fd.fd, l.address.get(), l.address.length) == 0) {
                    bound = true;
                    break;
                }
                last = std::error_code(errno, std::system_category());
                last_what = "error while attempting to bind on address " + l.address.to_string();
            }
            if (!bound) {
                if (!last) last = std::make_error_code(std::errc::address_not_available);
                continue;
            }
        }
        const SocketAddress addr = ai.address;
        int res = co_await await_op(core, [&](io_uring_sqe* s) {
            io_uring_prep_connect(s, fd.fd, addr.get(), addr.length);
        });
        if (res == 0) {
            if (options.ssl) co_return co_await ssl_connect(core, fd.release(), factory, options, host);
            const int sock = fd.release();
            auto conn = co_await wrap(core, sock, factory);
            if (!options.nodelay && !conn.transport->is_closing()) {
                // The transport turned TCP_NODELAY on, as asyncio does; the option turns it off.
                int zero = 0;
                ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero);
            }
            co_return conn;
        }
        last = std::error_code(-res, std::system_category());
        last_what = "connect to " + addr.to_string() + " failed";
    }
    throw std::system_error(last, last_what);
}

Task<Connection<>> unix_connect_task(EventLoop& loop, ProtocolFactory factory, std::string path) {
    LoopCore& core = loop.core();
    const SocketAddress addr = SocketAddress::from_unix(path);
    FdGuard fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) throw std::system_error(errno, std::system_category(), "socket()");
    int res = co_await await_op(core, [&](io_uring_sqe* s) {
        io_uring_prep_connect(s, fd.fd, addr.get(), addr.length);
    });
    if (res != 0)
        throw std::system_error(-res, std::system_category(), "connect to " + path + " failed");
    co_return co_await wrap(core, fd.release(), factory);
}

}  // namespace
}  // namespace detail

Future<Connection<>> EventLoop::create_connection(ProtocolFactory factory, std::string host,
                                                  std::uint16_t port, ConnectOptions options) {
    if (options.sock >= 0) {
        if (!host.empty()) throw std::invalid_argument("host and sock cannot both be given");
        if (options.ssl) return detail::ssl_connect(*core_, options.sock, factory, options, {});
        return connect_accepted_socket(std::move(factory), options.sock);
    }
    return create_task(detail::connect_task(*this, std::move(factory), std::move(host), port,
                                            std::move(options)));
}

Future<Connection<>> EventLoop::create_unix_connection(ProtocolFactory factory, std::string path) {
    return create_task(detail::unix_connect_task(*this, std::move(factory), std::move(path)));
}

Future<Connection<>> EventLoop::connect_accepted_socket(ProtocolFactory factory, int fd) {
    if (fd < 0) throw std::invalid_argument("connect_accepted_socket: bad file descriptor");
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        throw std::invalid_argument("connect_accepted_socket needs a SOCK_STREAM socket");
    return detail::wrap(*core_, fd, factory);
}

}  // namespace aioring
