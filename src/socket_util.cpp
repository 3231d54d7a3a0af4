// SPDX-License-Identifier: Apache-2.0
// The socket helpers the entry points share (src/socket_util.hpp).
#include "src/socket_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <system_error>

namespace aioring::detail {

bool is_numeric_host(const std::string& host) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
           inet_pton(AF_INET6, host.c_str(), buf) == 1;
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

[[noreturn]] void throw_errno(int err, const std::string& what) {
    throw std::system_error(err, std::system_category(), what);
}

[[noreturn]] void throw_errno(const std::string& what) { throw_errno(errno, what); }

}  // namespace aioring::detail
