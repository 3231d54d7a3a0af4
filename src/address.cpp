// SPDX-License-Identifier: Apache-2.0
// SocketAddress: formatting and parsing of IPv4, IPv6 and Unix addresses.
#include <aioring/address.hpp>

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace aioring {

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) {
    if (len > sizeof storage) len = sizeof storage;
    std::memcpy(&storage, sa, len);
    length = len;
}

SocketAddress SocketAddress::from_ip(std::string_view host, std::uint16_t port) {
    SocketAddress a;
    std::string h(host);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        a.length = sizeof(sockaddr_in);
        return a;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    std::memset(&a.storage, 0, sizeof a.storage);
    if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        a.length = sizeof(sockaddr_in6);
        return a;
    }
    throw std::invalid_argument("not a numeric IP address: '" + std::string(host) + "'");
}

SocketAddress SocketAddress::from_unix(std::string_view path) {
    SocketAddress a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    std::string p(path);
    if (!p.empty() && p[0] == '@') p[0] = '\0';
    if (p.empty() || p.size() >= sizeof un->sun_path)
        throw std::invalid_argument("bad Unix socket path length: " + std::to_string(p.size()));
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, p.data(), p.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + p.size() + (p[0] ? 1 : 0));
    return a;
}

std::string SocketAddress::host() const {
    char buf[INET6_ADDRSTRLEN] = {};
    switch (storage.ss_family) {
        case AF_INET:
            inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf,
                      sizeof buf);
            return buf;
        case AF_INET6:
            inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf,
                      sizeof buf);
            return buf;
        case AF_UNIX: {
            auto* un = reinterpret_cast<const sockaddr_un*>(&storage);
            std::size_t n = length > offsetof(sockaddr_un, sun_path)
                                ? length - offsetof(sockaddr_un, sun_path)
                                : 0;
            if (n == 0) return "";
            if (un->sun_path[0] == '\0') return "@" + std::string(un->sun_path + 1, n - 1);
            return std::string(un->sun_path, strnlen(un->sun_path, n));
        }
    }
    return "";
}

std::uint16_t SocketAddress::port() const {
    switch (storage.ss_family) {
        case AF_INET:
            return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
        case AF_INET6:
            return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    }
    return 0;
}

std::string SocketAddress::to_string() const {
    switch (storage.ss_family) {
        case AF_INET:
            return host() + ":" + std::to_string(port());
        case AF_INET6:
            return "[" + host() + "]:" + std::to_string(port());
    }
    return host();
}

bool SocketAddress::operator==(const SocketAddress& o) const {
    return length == o.length && std::memcmp(&storage, &o.storage, length) == 0;
}

SocketAddress sockname_of(int fd) {
    SocketAddress a;
    a.length = sizeof a.storage;
    if (getsockname(fd, a.get(), &a.length) != 0) a.length = 0;
    return a;
}

SocketAddress peername_of(int fd) {
    SocketAddress a;
    a.length = sizeof a.storage;
    if (getpeername(fd, a.get(), &a.length) != 0) a.length = 0;
    return a;
}

}  // namespace aioring
