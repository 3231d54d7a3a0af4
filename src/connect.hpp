// SPDX-License-Identifier: Apache-2.0
// create_connection's internals after name resolution: the address order (RFC 8305
// interleaving) and the connection race over a given list of addresses.
#pragma once

#include <aioring/loop.hpp>

#include <string>
#include <vector>

namespace aioring::detail {

// Groups the addresses by family (in the order the families first appear) and alternates
// between the groups, the first group giving `first_family_count` addresses before the first
// of the next; within a family the order is kept. 0 (or a single family) changes nothing.
std::vector<AddrInfo> interleave_addrinfos(std::vector<AddrInfo> infos, int first_family_count);

// create_connection to already resolved `addresses` (reordered by options.interleave), as if
// getaddrinfo had returned them; local_addr, ssl and happy_eyeballs_delay apply. `host` is the
// TLS server name when options.server_hostname is empty.
Future<Connection<>> connect_to_addresses(EventLoop& loop, ProtocolFactory factory,
                                          std::vector<AddrInfo> addresses, std::string host,
                                          ConnectOptions options);

}  // namespace aioring::detail
