// SPDX-License-Identifier: Apache-2.0
// A socket address (IPv4, IPv6 or Unix) as transports report it: `peername`, `sockname`,
// datagram sources. Prints as HOST:PORT, [HOST]:PORT, or the Unix path.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace aioring {

struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;

    SocketAddress() = default;
    SocketAddress(const sockaddr* sa, socklen_t len);
    // A numeric IPv4 or IPv6 address; throws std::invalid_argument for anything else.
    static SocketAddress from_ip(std::string_view host, std::uint16_t port);
    // A Unix path; a leading '\0' (or '@') names the abstract namespace.
    static SocketAddress from_unix(std::string_view path);

    int family() const { return storage.ss_family; }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
    bool empty() const { return length == 0; }
    std::string host() const;       // numeric host, or the Unix path
    std::uint16_t port() const;     // 0 for Unix
    std::string to_string() const;  // HOST:PORT, [HOST]:PORT, or the path
    bool operator==(const SocketAddress& o) const;
};

// Local and peer addresses of a socket; empty on error.
SocketAddress sockname_of(int fd);
SocketAddress peername_of(int fd);

}  // namespace aioring
