// SPDX-License-Identifier: Apache-2.0
// create_datagram_endpoint: a UDP or Unix datagram socket (resolved, bound and connected as
// asyncio does) wrapped in the datagram transport of src/datagram_transport.cpp.
#include <aioring/loop.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>

#include "src/datagram_transport.hpp"
#include "src/op_awaiter.hpp"
#include "src/socket_util.hpp"

namespace aioring::detail {

// ---- create_datagram_endpoint ---------------------------------------------------------------

namespace {

// Wraps `fd` in a transport and completes once connection_made has run.
Future<DatagramConnection<>> wrap_datagram(LoopCore& core, int fd, ProtocolFactory& factory) {
    auto fut = Future<DatagramConnection<>>(core.loop);
    try {
        std::unique_ptr<BaseProtocol> protocol = factory();
        auto* p = dynamic_cast<DatagramProtocol*>(protocol.get());
        auto t = std::make_shared<DatagramSocketTransport>(core, fd, std::move(protocol));
        fd = -1;  // the transport owns it now
        t->start([fut, t, p] {
            if (!fut.done()) fut.set_result(DatagramConnection<>{t, p});
        });
    } catch (...) {
        if (fd >= 0) ::close(fd);
        fut.set_exception(std::current_exception());
    }
    return fut;
}

int unix_endpoint(const DatagramEndpointOptions& o) {
    FdGuard fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) throw_errno("socket()");
    if (o.local_path) {
        const SocketAddress local = SocketAddress::from_unix(*o.local_path);
        // A stale socket file from an earlier run would make bind fail (asyncio removes it).
        struct stat st {};
        if ((*o.local_path)[0] != '@' && ::stat(o.local_path->c_str(), &st) == 0 &&
            S_ISSOCK(st.st_mode))
            ::unlink(o.local_path->c_str());
        if (::bind(fd.fd, local.get(), local.length) != 0)
            throw_errno("error while attempting to bind on address '" + *o.local_path + "'");
    }
    if (o.remote_path) {
        const SocketAddress remote = SocketAddress::from_unix(*o.remote_path);
        if (::connect(fd.fd, remote.get(), remote.length) != 0)
            throw_errno("connect to '" + *o.remote_path + "' failed");
    }
    return fd.release();
}

Task<int> inet_endpoint(EventLoop& loop, DatagramEndpointOptions o) {
    std::vector<AddrInfo> locals, remotes;
    if (o.local_addr)
        locals = co_await resolve(loop, o.local_addr->first, o.local_addr->second, o.family,
                                  SOCK_DGRAM, o.flags | AI_PASSIVE);
    if (o.remote_addr)
        remotes = co_await resolve(loop, o.remote_addr->first, o.remote_addr->second, o.family,
                                   SOCK_DGRAM, o.flags);
    // asyncio's pairing: one (local, remote) per family, the first address of each, local
    // families first; a family that lacks a side that was asked for is skipped.
    struct Pair {
        int family;
        const SocketAddress* local = nullptr;
        const SocketAddress* remote = nullptr;
    };
    std::vector<Pair> pairs;
    auto slot = [&](int family) -> Pair& {
        for (Pair& p : pairs)
            if (p.family == family) return p;
        return pairs.emplace_back(Pair{family});
    };
    for (const AddrInfo& a : locals) {
        Pair& p = slot(a.family);
        if (!p.local) p.local = &a.address;
    }
    for (const AddrInfo& a : remotes) {
        Pair& p = slot(a.family);
        if (!p.remote) p.remote = &a.address;
    }
    if (!o.local_addr && !o.remote_addr) {
        if (o.family == AF_UNSPEC) throw std::invalid_argument("unexpected address family");
        pairs.push_back(Pair{o.family});
    }
    std::erase_if(pairs, [&](const Pair& p) {
        return (o.local_addr && !p.local) || (o.remote_addr && !p.remote);
    });
    if (pairs.empty()) throw std::invalid_argument("can not get address information");

    std::exception_ptr last;
    for (const Pair& p : pairs) {
        try {
            FdGuard fd(::socket(p.family, SOCK_DGRAM | SOCK_CLOEXEC, o.proto));
            if (fd.fd < 0) throw_errno("socket()");
            const int one = 1;
            if (o.reuse_port &&
                ::setsockopt(fd.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
                throw_errno("setsockopt(SO_REUSEPORT)");
            if (o.allow_broadcast &&
                ::setsockopt(fd.fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0)
                throw_errno("setsockopt(SO_BROADCAST)");
            if (p.local && ::bind(fd.fd, p.local->get(), p.local->length) != 0)
                throw_errno("error while attempting to bind on address " + p.local->to_string());
            // Connecting a datagram socket only records the peer: it does not block.
            if (p.remote && ::connect(fd.fd, p.remote->get(), p.remote->length) != 0)
                throw_errno("connect to " + p.remote->to_string() + " failed");
            co_return fd.release();
        } catch (const std::system_error&) {
            last = std::current_exception();
        }
    }
    std::rethrow_exception(last);
}

Task<DatagramConnection<>> endpoint_task(EventLoop& loop, ProtocolFactory factory,
                                         DatagramEndpointOptions o) {
    int fd;
    if (o.family == AF_UNIX || o.local_path || o.remote_path)
        fd = unix_endpoint(o);
    else
        fd = co_await inet_endpoint(loop, o);
    co_return co_await wrap_datagram(loop.core(), fd, factory);
}

}  // namespace
}  // namespace aioring::detail

namespace aioring {

Future<DatagramConnection<>> EventLoop::create_datagram_endpoint(ProtocolFactory factory,
                                                                 DatagramEndpointOptions o) {
    if (o.sock >= 0) {
        if (o.local_addr || o.remote_addr || o.local_path || o.remote_path ||
            o.family != AF_UNSPEC || o.proto != 0 || o.flags != 0 || o.reuse_port ||
            o.allow_broadcast)
            throw std::invalid_argument(
                "socket modifier keyword arguments can not be used when sock is specified");
        int type = 0;
        socklen_t len = sizeof type;
        if (getsockopt(o.sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM)
            throw std::invalid_argument("create_datagram_endpoint needs a SOCK_DGRAM socket");
        return detail::wrap_datagram(*core_, o.sock, factory);
    }
    if ((o.local_path || o.remote_path) && (o.local_addr || o.remote_addr))
        throw std::invalid_argument("Unix paths and IP addresses cannot be mixed");
    if ((o.local_path || o.remote_path) && o.family != AF_UNSPEC && o.family != AF_UNIX)
        throw std::invalid_argument("Unix paths need family AF_UNIX");
    if (o.family == AF_UNIX && (o.local_addr || o.remote_addr))
        throw std::invalid_argument("AF_UNIX takes local_path / remote_path, not host and port");
    return create_task(detail::endpoint_task(*this, std::move(factory), std::move(o)));
}

}  // namespace aioring
