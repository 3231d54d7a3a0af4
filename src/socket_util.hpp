// SPDX-License-Identifier: Apache-2.0
// The socket helpers the entry points share (connect, server, datagram endpoint, TLS, pipes,
// subprocesses): name resolution without a thread for numeric hosts, and errno to exception.
#pragma once

#include <aioring/loop.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace aioring::detail {

// True for an IPv4 or IPv6 address literal (no brackets, no scope).
bool is_numeric_host(const std::string& host);

// Resolves host:port, without a thread for numeric addresses.
Task<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, std::uint16_t port,
                                    int family, int type, int flags);

// Throws std::system_error(err) with `what` as its message.
[[noreturn]] void throw_errno(int err, const std::string& what);
// Throws std::system_error(errno) with `what` as its message.
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace aioring::detail
